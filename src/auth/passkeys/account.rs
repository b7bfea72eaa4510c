//! The account's passkeys: register (two steps), list, remove.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential};

use super::store::{self, Kind};
use crate::accounts::routes::no_store;
use crate::accounts::service as account_service;
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::auth::Caller;
use crate::auth::mfa::{self, PasswordRequest};
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::{AuthRateLimit, ClientInfo, Json};
use crate::store::{now_micros, rfc3339};

/// Passkeys one account may hold. Enough for every device a person owns; bounds the
/// options every login hands out.
const MAX_PASSKEYS: usize = 20;
const MAX_NAME_CHARS: usize = 64;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(start_registration, register, list, remove))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/users/me/passkeys/registration",
            post(start_registration),
        )
        .route("/api/v1/users/me/passkeys", post(register).get(list))
        .route("/api/v1/users/me/passkeys/{id}", delete(remove))
}

#[derive(Serialize, utoipa::ToSchema)]
struct RegistrationOptions {
    /// Give it back with the authenticator's answer to `POST /users/me/passkeys` within 5
    /// minutes; it works once.
    registration_token: String,
    /// `{"publicKey": PublicKeyCredentialCreationOptionsJSON}` (WebAuthn Level 3): pass
    /// `publicKey` through `PublicKeyCredential.parseCreationOptionsFromJSON()` to
    /// `navigator.credentials.create()`.
    #[schema(value_type = Object)]
    options: serde_json::Value,
}

/// Start registering a passkey, after re-checking the password: a stolen access token alone
/// cannot plant a passkey on the account.
///
/// The options ask for user verification and, where the authenticator can, a discoverable
/// credential (so the passkey also works without a password).
#[utoipa::path(post, path = "/api/v1/users/me/passkeys/registration", tag = "mfa",
    security(("bearer" = [])),
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "Creation options for the authenticator, and the token that finishes the registration.", body = RegistrationOptions),
        (status = 403, description = "Wrong password (slug `wrong-password`), or the account has a second factor and this session passed none (slug `mfa-required`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The account holds the most passkeys it may (20; slug `too-many-passkeys`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn start_registration(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(req): Json<PasswordRequest>,
) -> Result<impl IntoResponse, AppError> {
    let user = caller.account(&app).await?;
    account_service::reauthenticate(
        &app,
        &user,
        SecretString::from(req.password),
        Action::PasskeyRegisterFailed,
        &client,
    )
    .await?;
    let mut tx = app.store.begin_write().await?;
    mfa::begin_factor_change(&mut tx, &caller).await?;
    let existing = store::of_user(&mut tx, user.id).await?;
    if existing.len() >= MAX_PASSKEYS {
        return Err(too_many());
    }
    let exclude = existing
        .iter()
        .map(|p| p.passkey.cred_id().clone())
        .collect();
    let display = user.name.as_deref().unwrap_or(&user.email);
    let (options, state) = app
        .webauthn
        .start_passkey_registration(user.id.0, &user.email, display, Some(exclude))
        .map_err(|e| AppError::Internal(anyhow::anyhow!("starting a registration: {e}")))?;
    let token = store::put_ceremony(&mut tx, Kind::Register, Some(user.id), &state).await?;
    tx.commit().await?;
    let mut options = serde_json::to_value(options)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("creation options: {e}")))?;
    // webauthn-rs asks for a non-discoverable credential; asking for a discoverable one
    // where possible is what lets the passkey log in without a password. The server's
    // checks of the answer do not depend on it.
    if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection") {
        selection["residentKey"] = "preferred".into();
        selection["requireResidentKey"] = false.into();
    }
    Ok((
        no_store(),
        Json(RegistrationOptions {
            registration_token: token,
            options,
        }),
    ))
}

fn too_many() -> AppError {
    AppError::Conflict {
        slug: "too-many-passkeys",
        detail: format!("An account holds at most {MAX_PASSKEYS} passkeys; remove one first."),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    registration_token: String,
    /// What the user calls this passkey ("Laptop"); defaults to "Passkey".
    #[schema(max_length = 64)]
    name: Option<String>,
    /// The authenticator's answer: `RegistrationResponseJSON` (what
    /// `PublicKeyCredential.toJSON()` gives).
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

/// A registered passkey.
#[derive(Serialize, utoipa::ToSchema)]
struct PasskeyView {
    id: String,
    name: String,
    created_at: String,
    last_used_at: Option<String>,
}

impl From<&store::Stored> for PasskeyView {
    fn from(p: &store::Stored) -> Self {
        PasskeyView {
            id: p.id.to_string(),
            name: p.name.clone(),
            created_at: rfc3339(p.created_at),
            last_used_at: p.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Registered {
    #[serde(flatten)]
    passkey: PasskeyView,
    /// Present only when this passkey turned MFA on for an account without recovery codes:
    /// ten single-use codes, shown only now.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

fn invalid_token() -> AppError {
    AppError::BadRequest {
        slug: "invalid-token",
        detail: "The registration token is invalid, expired or used; start again.",
    }
}

fn parse_name(name: Option<&str>) -> Result<String, AppError> {
    let Some(name) = name.map(str::trim) else {
        return Ok("Passkey".to_owned());
    };
    let problem = if name.is_empty() {
        Some("must not be empty")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some("is longer than 64 characters")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match problem {
        Some(m) => Err(AppError::Invalid(vec![FieldError::new("name", m)])),
        None => Ok(name.to_owned()),
    }
}

/// Finish registering a passkey with the authenticator's answer.
///
/// From now on the account needs a second factor at login (`methods` includes `webauthn`),
/// and the passkey also logs in alone (`/auth/passkey`) where the authenticator made it
/// discoverable.
#[utoipa::path(post, path = "/api/v1/users/me/passkeys", tag = "mfa",
    security(("bearer" = [])),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The passkey; `recovery_codes` when they were made now.", body = Registered),
        (status = 400, description = "The token is invalid, expired or used (slug `invalid-token`), the answer does not verify (slug `invalid-credential`), or the name or credential is malformed (slug `validation-failed`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The account has a second factor and this session passed none (slug `mfa-required`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "That authenticator is registered already (slug `passkey-exists`), or the account holds 20 passkeys (`too-many-passkeys`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn register(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(req): Json<RegisterRequest>,
) -> Result<impl IntoResponse, AppError> {
    let name = parse_name(req.name.as_deref())?;
    let credential: RegisterPublicKeyCredential = serde_json::from_value(req.credential)
        .map_err(|e| AppError::Invalid(vec![FieldError::new("credential", e.to_string())]))?;
    let user = caller.account(&app).await?;
    // The token is spent whatever follows.
    let mut tx = app.store.begin_write().await?;
    let taken = store::take_ceremony::<PasskeyRegistration>(
        &mut tx,
        Kind::Register,
        &req.registration_token,
    )
    .await?;
    tx.commit().await?;
    let (owner, state) = taken.ok_or_else(invalid_token)?;
    if owner != Some(user.id) {
        return Err(invalid_token());
    }
    let passkey = match app
        .webauthn
        .finish_passkey_registration(&credential, &state)
    {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(user_id = %user.id, reason = %e, "passkey registration refused");
            return Err(AppError::BadRequest {
                slug: "invalid-credential",
                detail: "The authenticator's answer does not verify for this registration.",
            });
        }
    };
    let mut tx = app.store.begin_write().await?;
    mfa::begin_factor_change(&mut tx, &caller).await?;
    let held = store::count_of_user(&mut tx, user.id).await?;
    if held >= MAX_PASSKEYS as i64 {
        return Err(too_many());
    }
    let had_mfa = held > 0 || mfa::totp_enabled(&mut tx, user.id).await?;
    let id = Uuid::now_v7();
    let now = now_micros();
    if !store::insert(&mut tx, id, user.id, &name, &passkey, now).await? {
        return Err(AppError::Conflict {
            slug: "passkey-exists",
            detail: "This authenticator is registered already.".into(),
        });
    }
    let recovery_codes = if !had_mfa && mfa::unused_recovery_codes(&mut tx, user.id).await? == 0 {
        Some(mfa::replace_recovery_codes(&mut tx, user.id).await?)
    } else {
        None
    };
    if !had_mfa {
        mfa::first_factor_enrolled(&mut tx, &caller, "webauthn").await?;
        // API.md's name for MFA coming on, as TOTP confirmation records it.
        let entry =
            Entry::by_owner(Action::MfaEnabled, user.id, &client).detail("method", "webauthn");
        app.audit.record(&mut tx, entry).await?;
    }
    mfa::announce_profile(&app, &mut tx, user.id).await?;
    let entry = Entry::by_owner(Action::PasskeyRegistered, user.id, &client)
        .detail("passkey_id", id.to_string());
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    app.profiles.invalidate(user.id);
    tracing::info!(user_id = %user.id, passkey_id = %id, "passkey registered");
    let stored = store::Stored {
        id,
        user_id: user.id,
        name,
        passkey,
        created_at: now,
        last_used_at: None,
    };
    Ok((
        StatusCode::CREATED,
        [(
            axum::http::header::LOCATION,
            format!("/api/v1/users/me/passkeys/{id}"),
        )],
        no_store(),
        Json(Registered {
            passkey: PasskeyView::from(&stored),
            recovery_codes,
        }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PasskeyList)]
struct Items {
    items: Vec<PasskeyView>,
}

/// The account's passkeys, oldest first.
#[utoipa::path(get, path = "/api/v1/users/me/passkeys", tag = "mfa",
    security(("bearer" = [])),
    responses((status = 200, description = "The passkeys.", body = Items)))]
async fn list(State(app): State<AppState>, caller: Caller) -> Result<impl IntoResponse, AppError> {
    let mut conn = app.store.pool().acquire().await?;
    let items = store::of_user(&mut conn, caller.user_id)
        .await?
        .iter()
        .map(PasskeyView::from)
        .collect();
    Ok((no_store(), Json(Items { items })))
}

/// Remove a passkey, after re-checking the password. Removing the last second factor turns
/// MFA off and drops the recovery codes.
#[utoipa::path(delete, path = "/api/v1/users/me/passkeys/{id}", tag = "mfa",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The passkey id.")),
    request_body = PasswordRequest,
    responses(
        (status = 204, description = "Removed."),
        (status = 403, description = "Wrong password (slug `wrong-password`), or the account has a second factor and this session passed none (slug `mfa-required`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such passkey on this account.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    Json(req): Json<PasswordRequest>,
) -> Result<StatusCode, AppError> {
    let id = id
        .ok()
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .ok_or(AppError::NotFound)?;
    let user = caller.account(&app).await?;
    account_service::reauthenticate(
        &app,
        &user,
        SecretString::from(req.password),
        Action::PasskeyRemoveFailed,
        &client,
    )
    .await?;
    let mut tx = app.store.begin_write().await?;
    mfa::begin_factor_change(&mut tx, &caller).await?;
    if !store::delete(&mut tx, user.id, id).await? {
        return Err(AppError::NotFound);
    }
    if mfa::forget_codes_without_factor(&mut tx, user.id).await? {
        let entry =
            Entry::by_owner(Action::MfaDisabled, user.id, &client).detail("method", "webauthn");
        app.audit.record(&mut tx, entry).await?;
    }
    mfa::announce_profile(&app, &mut tx, user.id).await?;
    let entry = Entry::by_owner(Action::PasskeyRemoved, user.id, &client)
        .detail("passkey_id", id.to_string());
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    app.profiles.invalidate(user.id);
    tracing::info!(user_id = %user.id, passkey_id = %id, "passkey removed");
    Ok(StatusCode::NO_CONTENT)
}
