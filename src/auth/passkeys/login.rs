//! Logging in with a passkey: alone (passwordless, the passkey verifies the user), or as
//! the second factor of a password login (`/auth/mfa` with a `credential`).

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PasskeyAuthentication, PublicKeyCredential,
};

use super::store::{self, Kind};
use crate::accounts::routes::no_store;
use crate::accounts::{User, UserId, store as accounts};
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::auth::service::{self, TokenPair};
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::{AuthRateLimit, ClientInfo, Json};
use crate::store::now_micros;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(start, finish))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/passkey/options", post(start))
        .route("/api/v1/auth/passkey", post(finish))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StartRequest {}

#[derive(Serialize, utoipa::ToSchema)]
struct LoginOptions {
    /// Give it back with the authenticator's answer to `POST /auth/passkey` within 5
    /// minutes; it works once.
    passkey_token: String,
    /// `{"publicKey": PublicKeyCredentialRequestOptionsJSON, "mediation": "conditional"}`:
    /// pass `publicKey` through `PublicKeyCredential.parseRequestOptionsFromJSON()` to
    /// `navigator.credentials.get()`, with `mediation` for autofill or without it for a
    /// button. `allowCredentials` is empty: the authenticator offers the user's passkeys.
    #[schema(value_type = Object)]
    options: serde_json::Value,
}

/// Start a passwordless login: a challenge for any passkey of this service.
#[utoipa::path(post, path = "/api/v1/auth/passkey/options", tag = "auth",
    request_body = StartRequest,
    responses(
        (status = 200, description = "Request options for the authenticator, and the token that finishes the login.", body = LoginOptions),
    ))]
async fn start(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    Json(_): Json<StartRequest>,
) -> Result<impl IntoResponse, AppError> {
    let (options, state) = app
        .webauthn
        .start_discoverable_authentication()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("starting a passkey login: {e}")))?;
    let mut tx = app.store.begin_write().await?;
    let token = store::put_ceremony(&mut tx, Kind::Login, None, &state).await?;
    tx.commit().await?;
    let options = serde_json::to_value(options)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("request options: {e}")))?;
    Ok((
        no_store(),
        Json(LoginOptions {
            passkey_token: token,
            options,
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FinishRequest {
    passkey_token: String,
    /// The authenticator's answer: `AuthenticationResponseJSON` (what
    /// `PublicKeyCredential.toJSON()` gives), with its `userHandle`.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

/// Parses an assertion as sent by a client; a malformed one is a 400 naming the field.
pub fn parse_assertion(value: serde_json::Value) -> Result<PublicKeyCredential, AppError> {
    serde_json::from_value(value)
        .map_err(|e| AppError::Invalid(vec![FieldError::new("credential", e.to_string())]))
}

fn invalid_token() -> AppError {
    AppError::BadRequest {
        slug: "invalid-token",
        detail: "The passkey token is invalid, expired or used; start again.",
    }
}

/// Finish a passwordless login with the authenticator's answer.
///
/// Every failure (unknown passkey, a signature that does not verify, a disabled or locked
/// account) is the login's 401. The passkey verified the user (user verification is
/// required), so the session counts as multi-factor.
#[utoipa::path(post, path = "/api/v1/auth/passkey", tag = "auth",
    request_body = FinishRequest,
    responses(
        (status = 200, description = "A new session.", body = TokenPair),
        (status = 400, description = "The passkey token is invalid, expired or used (slug `invalid-token`), or the credential is not an assertion (slug `validation-failed`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "The answer does not log anyone in (slug `invalid-credentials`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The email is not verified and the service requires it (slug `email-not-verified`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn finish(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<FinishRequest>,
) -> Result<impl IntoResponse, AppError> {
    let credential = parse_assertion(req.credential)?;
    let token = req.passkey_token;
    let pair = app
        .to_completion(
            move |app| async move { passwordless(&app, &token, &credential, &client).await },
        )
        .await?;
    Ok((no_store(), Json(pair)))
}

async fn passwordless(
    app: &AppState,
    token: &str,
    credential: &PublicKeyCredential,
    client: &ClientInfo,
) -> Result<TokenPair, AppError> {
    let mut tx = app.store.begin_write().await?;
    let (_, state) =
        store::take_ceremony::<DiscoverableAuthentication>(&mut tx, Kind::Login, token)
            .await?
            .ok_or_else(invalid_token)?;
    // The token is spent whatever follows.
    tx.commit().await?;

    let refused = |reason: &'static str, user: Option<UserId>| async move {
        let mut tx = app.store.begin_write().await?;
        let mut entry = Entry::new(Action::PasskeyLoginFailed)
            .failure()
            .detail("reason", reason)
            .client(client);
        if let Some(user) = user {
            entry = entry.target("user", user);
        }
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        tracing::info!(reason, ip = %client.ip, "passkey login refused");
        Ok::<AppError, AppError>(AppError::InvalidCredentials)
    };

    let Ok((handle, raw_id)) = app
        .webauthn
        .identify_discoverable_authentication(credential)
    else {
        return Err(refused("no_user_handle", None).await?);
    };
    let mut conn = app.store.pool().acquire().await?;
    let found = store::by_credential(&mut conn, raw_id).await?;
    drop(conn);
    let Some(stored) = found.filter(|p| p.user_id.0 == handle) else {
        return Err(refused("unknown_passkey", None).await?);
    };
    let Some(user) = accounts::find_by_id(app.store.pool(), stored.user_id).await? else {
        return Err(refused("unknown_passkey", None).await?);
    };
    // Its own backoff: wrong passwords typed by anyone who knows the email must not lock
    // the owner out of the passkey.
    let attempt = app
        .backoff
        .admit_or_refuse(
            &format!("passkey:{}", user.id),
            "Too many failed passkey logins for this account; see Retry-After.",
        )
        .await?;
    let result =
        match app
            .webauthn
            .finish_discoverable_authentication_v2(credential, state, &stored.passkey)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(reason = %e, "passkey assertion refused");
                let error = refused("invalid_assertion", Some(user.id)).await?;
                attempt.failed().await;
                return Err(error);
            }
        };
    if user.disabled_at.is_some() || user.locked_at.is_some() {
        return Err(refused("disabled_or_locked", Some(user.id)).await?);
    }
    if app.config.require_verified_email && user.email_verified_at.is_none() {
        return Err(AppError::Refused {
            slug: "email-not-verified",
            detail: "Verify your email address before logging in.",
        });
    }
    let mut tx = app.store.begin_write().await?;
    accounts::lock(&mut tx, user.id).await?;
    if !store::record_verified_use(&mut tx, stored.id, &result, now_micros()).await? {
        tx.rollback().await?;
        let error = refused("counter_not_advanced", Some(user.id)).await?;
        attempt.failed().await;
        return Err(error);
    }
    if !accounts::record_login(&mut tx, user.id, now_micros()).await? {
        tx.rollback().await?;
        return Err(refused("disabled_or_locked", Some(user.id)).await?);
    }
    let verified = service::Verified::after_second_factor(tx, user.id, "passkey", attempt);
    service::open_session(app, verified, client).await
}

/// Assertion options for the second factor of a password login, limited to `user`'s
/// passkeys; the state to keep with the login's challenge. `None` without passkeys.
pub async fn second_factor_options(
    app: &AppState,
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<Option<(serde_json::Value, String)>, AppError> {
    let passkeys: Vec<_> = store::of_user(conn, user)
        .await?
        .into_iter()
        .map(|p| p.passkey)
        .collect();
    if passkeys.is_empty() {
        return Ok(None);
    }
    let (options, state) = app
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("starting a passkey check: {e}")))?;
    let options = serde_json::to_value(options)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("request options: {e}")))?;
    let state = serde_json::to_string(&state)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("assertion state: {e}")))?;
    Ok(Some((options, state)))
}

/// Checks a second-factor assertion against the state kept with the login's challenge, and
/// records the passkey's use. `false` when it does not verify for `user`.
pub async fn verify_second_factor(
    app: &AppState,
    conn: &mut AnyConnection,
    user: &User,
    state: &str,
    credential: &PublicKeyCredential,
) -> Result<bool, AppError> {
    let state: PasskeyAuthentication = serde_json::from_str(state)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("assertion state: {e}")))?;
    accounts::lock(&mut *conn, user.id).await?;
    let Some(stored) = store::by_credential(conn, credential.get_credential_id()).await? else {
        return Ok(false);
    };
    if stored.user_id != user.id {
        return Ok(false);
    }
    match app
        .webauthn
        .finish_passkey_authentication(credential, &state)
    {
        Ok(result) => store::record_verified_use(conn, stored.id, &result, now_micros()).await,
        Err(e) => {
            tracing::debug!(reason = %e, "passkey assertion refused");
            Ok(false)
        }
    }
}
