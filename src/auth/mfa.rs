//! Second factors: TOTP (RFC 6238) and passkeys (`passkeys`), with single-use recovery
//! codes, and the login step that asks for one (`/auth/mfa`).
//!
//! The TOTP secret is sealed with the master key (purpose `totp`, bound to the user id). A
//! code is accepted once: the last accepted time step is stored and only a later one passes.
//! Recovery codes are random (80 bits), shown once and kept as SHA-256 hashes.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::{Any, AnyConnection, Executor, Row};
use totp_rs::{Builder, Secret, Totp};

use super::Caller;
use super::service::{self, ClientInfo, TokenPair};
use crate::accounts::routes::no_store;
use crate::accounts::{User, UserId, service as account_service, store as accounts};
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::crypto::{hex, random_bytes, token_hash};
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::{AuthRateLimit, Json};
use crate::store::now_micros;

/// How long an `mfa_token` lives.
const CHALLENGE_TTL_MICROS: i64 = 5 * 60 * 1_000_000;
/// Wrong codes an `mfa_token` survives; the next one kills it.
const MAX_FAILURES: i64 = 5;
const RECOVERY_CODES: usize = 10;
const SEAL_PURPOSE: &str = "totp";

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(enrol, confirm, disable, regenerate, complete, passkey_options))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users/me/mfa/totp", post(enrol))
        .route("/api/v1/users/me/mfa/totp/confirm", post(confirm))
        .route("/api/v1/users/me/mfa/totp/disable", post(disable))
        .route("/api/v1/users/me/mfa/recovery-codes", post(regenerate))
        .route("/api/v1/auth/mfa", post(complete))
        .route("/api/v1/auth/mfa/webauthn", post(passkey_options))
}

/// A login that passed the password and waits for the second factor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MfaRequired {
    /// Always `true`.
    pub mfa_required: bool,
    /// Give it to `/auth/mfa` with a code or a passkey's answer within 5 minutes.
    pub mfa_token: String,
    /// What the account has enrolled: `totp`, `recovery_code`, `webauthn` (a passkey: get
    /// its options from `/auth/mfa/webauthn`).
    pub methods: Vec<&'static str>,
}

fn invalid_token() -> AppError {
    AppError::BadRequest {
        slug: "invalid-token",
        detail: "The MFA token is invalid, expired or used up; log in again.",
    }
}

fn invalid_code() -> AppError {
    AppError::BadRequest {
        slug: "invalid-code",
        detail: "The code is wrong or already used.",
    }
}

fn totp(secret: Vec<u8>, account: &str, issuer: &str) -> Result<Totp, AppError> {
    Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(issuer))
        .build()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("building the TOTP: {e}")))
}

fn issuer(app: &AppState) -> String {
    url::Url::parse(&app.config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "portvakt".to_owned())
}

fn seal(app: &AppState, user: UserId, secret: &[u8]) -> String {
    app.master
        .seal(SEAL_PURPOSE, user.to_string().as_bytes(), secret)
}

fn open(app: &AppState, user: UserId, sealed: &str) -> Result<Vec<u8>, AppError> {
    app.master
        .open(SEAL_PURPOSE, user.to_string().as_bytes(), sealed)
        .map_err(|_| AppError::Internal(anyhow::anyhow!("a TOTP secret does not open")))
}

struct Stored {
    secret: String,
    confirmed: bool,
    last_step: Option<i64>,
}

async fn stored<'c, E: Executor<'c, Database = Any>>(
    db: E,
    user: UserId,
) -> Result<Option<Stored>, sqlx::Error> {
    let row =
        sqlx::query("SELECT secret, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(db)
            .await?;
    row.map(|r| {
        Ok(Stored {
            secret: r.try_get("secret")?,
            confirmed: r.try_get::<Option<i64>, _>("confirmed_at")?.is_some(),
            last_step: r.try_get("last_step")?,
        })
    })
    .transpose()
}

/// A recovery code as typed: case, spaces and dashes do not matter.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Ten new recovery codes (`xxxx-xxxx-xxxx-xxxx-xxxx`, 80 bits each) replacing all others.
pub(crate) async fn replace_recovery_codes(
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
        .bind(user.to_string())
        .execute(&mut *conn)
        .await?;
    let now = now_micros();
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw = hex(&random_bytes::<10>());
        let code = raw
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-");
        sqlx::query(
            "INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user.to_string())
        .bind(token_hash(&normalise(&code)))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        codes.push(code);
    }
    Ok(codes)
}

pub(crate) async fn unused_recovery_codes(
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user.to_string())
    .fetch_one(conn)
    .await
}

/// Whether `user` has a second factor: confirmed TOTP or a passkey.
pub(crate) async fn has_second_factor(
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<bool, sqlx::Error> {
    Ok(totp_enabled(&mut *conn, user).await?
        || crate::auth::passkeys::count_of_user(conn, user).await? > 0)
}

/// Opens a change of `caller`'s second factors: locks the account row, so that two changes
/// (say, removing the last two factors at once) see each other, and refuses a session that
/// passed no second factor when the account has one. Otherwise a password-only session, a
/// stolen one or one older than the factor, could swap the factor for its own and pass every
/// MFA check from then on.
pub(crate) async fn begin_factor_change(
    conn: &mut AnyConnection,
    caller: &Caller,
) -> Result<(), AppError> {
    accounts::lock(&mut *conn, caller.user_id).await?;
    if !session_passed_mfa(conn, caller).await? && has_second_factor(conn, caller.user_id).await? {
        return Err(AppError::Refused {
            slug: "mfa-required",
            detail: "Changing second factors needs a session that passed one: log in again with your second factor.",
        });
    }
    Ok(())
}

/// Whether the caller's session passed a second factor: at login (its token's `amr`), or
/// since, by enrolling the account's first factor (recorded on the session only).
async fn session_passed_mfa(conn: &mut AnyConnection, caller: &Caller) -> Result<bool, AppError> {
    if caller.principal().mfa {
        return Ok(true);
    }
    let method: Option<String> =
        sqlx::query_scalar("SELECT mfa_method FROM sessions WHERE id = $1")
            .bind(caller.session_id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    Ok(method.is_some())
}

/// The account's first second factor was just proven by `caller`'s session (a TOTP code, a
/// passkey created with user verification): that session now counts as multi-factor (its
/// next refresh says so in `amr`). The account's other sessions stay what they were,
/// password-only: they keep working (API.md names what ends a session), but cannot change
/// the factors and get nothing from roles that require MFA.
pub(crate) async fn first_factor_enrolled(
    conn: &mut AnyConnection,
    caller: &Caller,
    method: &'static str,
) -> Result<(), AppError> {
    sqlx::query("UPDATE sessions SET mfa_method = $1 WHERE id = $2 AND mfa_method IS NULL")
        .bind(method)
        .bind(caller.session_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// After a second factor went: with none left, MFA is off, so the recovery codes and any
/// login waiting for a second factor go too. Returns whether MFA went off.
pub(crate) async fn forget_codes_without_factor(
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<bool, sqlx::Error> {
    if has_second_factor(&mut *conn, user).await? {
        return Ok(false);
    }
    for table in ["mfa_challenges", "mfa_recovery_codes"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE user_id = $1"
        )))
        .bind(user.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// Forgets the cached profile everywhere (`mfa_enabled` changed).
pub(crate) async fn announce_profile(
    app: &AppState,
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<(), sqlx::Error> {
    app.store
        .announce(
            conn,
            crate::accounts::cache::INVALIDATION_KIND,
            &[user.to_string()],
        )
        .await
}

/// Deletes every MFA record of `user` (erasure, disabling).
pub async fn delete_of_user(conn: &mut AnyConnection, user: &str) -> Result<(), sqlx::Error> {
    for table in ["mfa_challenges", "mfa_recovery_codes", "mfa_totp"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE user_id = $1"
        )))
        .bind(user)
        .execute(&mut *conn)
        .await?;
    }
    crate::auth::passkeys::delete_of_user(conn, user).await
}

/// Whether `user` has confirmed TOTP (for the export).
pub async fn totp_enabled(conn: &mut AnyConnection, user: UserId) -> Result<bool, sqlx::Error> {
    Ok(stored(conn, user).await?.is_some_and(|s| s.confirmed))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrolRequest {}

#[derive(Serialize, utoipa::ToSchema)]
struct Enrolment {
    /// Base32, for typing into an authenticator.
    secret: String,
    otpauth_uri: String,
    /// The `otpauth_uri` as a QR code (SVG document).
    qr_svg: String,
}

/// Start TOTP enrolment: a new secret, not active until confirmed. Starting again replaces
/// an unconfirmed secret.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/totp", tag = "mfa",
    security(("bearer" = [])),
    request_body = EnrolRequest,
    responses(
        (status = 200, description = "The secret, its otpauth URI and QR code.", body = Enrolment),
        (status = 403, description = "The account has a second factor (a passkey) and this session passed none (slug `mfa-required`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "TOTP is already enabled (slug `mfa-already-enabled`); disable it first.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn enrol(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(_): Json<EnrolRequest>,
) -> Result<impl IntoResponse, AppError> {
    let user = caller.account(&app).await?;
    let secret = Secret::generate();
    let bytes = secret.as_bytes().to_vec();
    let t = totp(bytes.clone(), &user.email, &issuer(&app))?;
    let uri = t
        .to_url()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("otpauth URI: {e}")))?;
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("QR code: {e}")))?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    // The markup itself, as API.md says: without the XML declaration, it can be put in a page.
    let qr = match qr.find("<svg") {
        Some(start) => qr[start..].to_owned(),
        None => qr,
    };
    let mut tx = app.store.begin_write().await?;
    begin_factor_change(&mut tx, &caller).await?;
    if stored(&mut *tx, user.id)
        .await?
        .is_some_and(|s| s.confirmed)
    {
        return Err(AppError::Conflict {
            slug: "mfa-already-enabled",
            detail: "TOTP is already enabled; disable it before enrolling again.".into(),
        });
    }
    sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
        .bind(user.id.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO mfa_totp (user_id, secret, created_at) VALUES ($1, $2, $3)")
        .bind(user.id.to_string())
        .bind(seal(&app, user.id, &bytes))
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
    let entry = Entry::by_owner(Action::MfaTotpEnrolled, user.id, &client);
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    Ok((
        no_store(),
        Json(Enrolment {
            secret: secret.to_base32(),
            otpauth_uri: uri,
            qr_svg: qr,
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    #[schema(example = "123456")]
    code: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RecoveryCodes {
    /// Ten single-use codes, shown only now.
    recovery_codes: Vec<String>,
}

/// Confirm TOTP enrolment with a current code. From now on logins need a second factor.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/totp/confirm", tag = "mfa",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "TOTP is on; the recovery codes, shown once.", body = RecoveryCodes),
        (status = 400, description = "Wrong code (slug `invalid-code`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The account has a second factor (a passkey) and this session passed none (slug `mfa-required`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "No enrolment waits (slug `no-pending-enrolment`) or TOTP is already on (`mfa-already-enabled`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn confirm(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(req): Json<CodeRequest>,
) -> Result<impl IntoResponse, AppError> {
    let user = caller.account(&app).await?;
    let mut tx = app.store.begin_write().await?;
    begin_factor_change(&mut tx, &caller).await?;
    let Some(s) = stored(&mut *tx, user.id).await? else {
        return Err(AppError::Conflict {
            slug: "no-pending-enrolment",
            detail: "Start TOTP enrolment first.".into(),
        });
    };
    if s.confirmed {
        return Err(AppError::Conflict {
            slug: "mfa-already-enabled",
            detail: "TOTP is already enabled.".into(),
        });
    }
    let t = totp(open(&app, user.id, &s.secret)?, &user.email, &issuer(&app))?;
    let Some(step) = t.check_current(req.code.trim()) else {
        tx.rollback().await?;
        let mut tx = app.store.begin_write().await?;
        let entry = Entry::by_owner(Action::MfaTotpConfirmFailed, user.id, &client).failure();
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        return Err(invalid_code());
    };
    let first = !has_second_factor(&mut tx, user.id).await?;
    sqlx::query("UPDATE mfa_totp SET confirmed_at = $1, last_step = $2 WHERE user_id = $3")
        .bind(now_micros())
        .bind(i64::try_from(step).unwrap_or(i64::MAX))
        .bind(user.id.to_string())
        .execute(&mut *tx)
        .await?;
    // API.md: confirmation answers ten codes, replacing any a passkey brought; the session
    // passed a second factor if the account had one (`begin_factor_change`).
    let codes = replace_recovery_codes(&mut tx, user.id).await?;
    if first {
        first_factor_enrolled(&mut tx, &caller, "totp").await?;
    }
    announce_profile(&app, &mut tx, user.id).await?;
    let entry = Entry::by_owner(Action::MfaEnabled, user.id, &client).detail("method", "totp");
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    app.profiles.invalidate(user.id);
    tracing::info!(user_id = %user.id, "TOTP enabled");
    Ok((
        no_store(),
        Json(RecoveryCodes {
            recovery_codes: codes,
        }),
    ))
}

/// A change that re-checks the password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordRequest {
    pub(crate) password: String,
}

/// Turn TOTP off, after re-checking the password. Without a passkey left, MFA is off and the
/// recovery codes go too.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/totp/disable", tag = "mfa",
    security(("bearer" = [])),
    request_body = PasswordRequest,
    responses(
        (status = 204, description = "TOTP is off."),
        (status = 403, description = "Wrong password (slug `wrong-password`), or this session passed no second factor (slug `mfa-required`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn disable(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(req): Json<PasswordRequest>,
) -> Result<StatusCode, AppError> {
    let user = caller.account(&app).await?;
    account_service::reauthenticate(
        &app,
        &user,
        SecretString::from(req.password),
        Action::MfaTotpDisableFailed,
        &client,
    )
    .await?;
    let mut tx = app.store.begin_write().await?;
    begin_factor_change(&mut tx, &caller).await?;
    sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
        .bind(user.id.to_string())
        .execute(&mut *tx)
        .await?;
    forget_codes_without_factor(&mut tx, user.id).await?;
    announce_profile(&app, &mut tx, user.id).await?;
    let entry = Entry::by_owner(Action::MfaDisabled, user.id, &client).detail("method", "totp");
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    app.profiles.invalidate(user.id);
    tracing::info!(user_id = %user.id, "TOTP disabled");
    Ok(StatusCode::NO_CONTENT)
}

/// New recovery codes, after re-checking the password; the old ones stop working.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/recovery-codes", tag = "mfa",
    security(("bearer" = [])),
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "The new codes, shown once.", body = RecoveryCodes),
        (status = 403, description = "Wrong password (slug `wrong-password`), or this session passed no second factor (slug `mfa-required`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The account has no second factor (slug `mfa-not-enabled`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn regenerate(
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
        Action::RecoveryCodesRegenerateFailed,
        &client,
    )
    .await?;
    let mut tx = app.store.begin_write().await?;
    begin_factor_change(&mut tx, &caller).await?;
    if !has_second_factor(&mut tx, user.id).await? {
        return Err(AppError::Conflict {
            slug: "mfa-not-enabled",
            detail: "Recovery codes come with a second factor (TOTP or a passkey); add one first."
                .into(),
        });
    }
    let codes = replace_recovery_codes(&mut tx, user.id).await?;
    let entry = Entry::by_owner(Action::RecoveryCodesRegenerated, user.id, &client);
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    Ok((
        no_store(),
        Json(RecoveryCodes {
            recovery_codes: codes,
        }),
    ))
}

/// Opens a second-factor challenge for a login whose password was right.
pub async fn challenge(app: &AppState, user: UserId) -> Result<MfaRequired, AppError> {
    let token = crate::crypto::new_token();
    let now = now_micros();
    let mut tx = app.store.begin_write().await?;
    // Dead challenges of this account go as new ones come.
    sqlx::query("DELETE FROM mfa_challenges WHERE user_id = $1 AND expires_at < $2")
        .bind(user.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO mfa_challenges (token_hash, user_id, created_at, expires_at, failures) VALUES ($1, $2, $3, $4, 0)",
    )
    .bind(token_hash(&token))
    .bind(user.to_string())
    .bind(now)
    .bind(now + CHALLENGE_TTL_MICROS)
    .execute(&mut *tx)
    .await?;
    let unused = unused_recovery_codes(&mut tx, user).await?;
    let totp = totp_enabled(&mut tx, user).await?;
    let passkeys = crate::auth::passkeys::count_of_user(&mut tx, user).await?;
    tx.commit().await?;
    let mut methods = Vec::with_capacity(3);
    if totp {
        methods.push("totp");
    }
    if unused > 0 {
        methods.push("recovery_code");
    }
    if passkeys > 0 {
        methods.push("webauthn");
    }
    Ok(MfaRequired {
        mfa_required: true,
        mfa_token: token,
        methods,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MfaRequest {
    mfa_token: String,
    /// A current TOTP code or an unused recovery code. Give this or `credential`.
    code: Option<String>,
    /// A passkey's answer to the options of `/auth/mfa/webauthn`:
    /// `AuthenticationResponseJSON` (what `PublicKeyCredential.toJSON()` gives).
    #[schema(value_type = Object)]
    credential: Option<serde_json::Value>,
}

/// What answers the challenge.
enum Answer {
    Code(String),
    Passkey(Box<webauthn_rs::prelude::PublicKeyCredential>),
}

impl Answer {
    fn of(req: MfaRequest) -> Result<(String, Answer), AppError> {
        match (req.code, req.credential) {
            (Some(code), None) => Ok((req.mfa_token, Answer::Code(code))),
            (None, Some(credential)) => {
                let credential = crate::auth::passkeys::login::parse_assertion(credential)?;
                Ok((req.mfa_token, Answer::Passkey(Box::new(credential))))
            }
            _ => Err(AppError::Invalid(vec![FieldError::new(
                "code",
                "give either `code` or `credential`",
            )])),
        }
    }
}

/// Finish a login with the second factor: a TOTP or recovery `code`, or a passkey's
/// `credential`.
///
/// A wrong code (or an answer that does not verify) is the login's 401 and counts towards the email's backoff; after 5 wrong
/// codes the `mfa_token` is dead.
#[utoipa::path(post, path = "/api/v1/auth/mfa", tag = "auth",
    request_body = MfaRequest,
    responses(
        (status = 200, description = "A new session.", body = TokenPair),
        (status = 400, description = "The mfa_token is invalid, expired or used up (slug `invalid-token`), or not exactly one of `code` and `credential` is given, or the credential is malformed (slug `validation-failed`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Wrong code (slug `invalid-credentials`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn complete(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<MfaRequest>,
) -> Result<impl IntoResponse, AppError> {
    let (token, answer) = Answer::of(req)?;
    let pair = app
        .to_completion(move |app| async move {
            let verified = second_factor(&app, &token, &answer, &client).await?;
            service::open_session(&app, verified, &client).await
        })
        .await?;
    Ok((no_store(), Json(pair)))
}

/// The challenge named by `hash` if it can still be answered; its user.
async fn live_challenge(conn: &mut AnyConnection, hash: &str) -> Result<Option<UserId>, AppError> {
    Ok(live_challenge_state(conn, hash)
        .await?
        .map(|(user, _)| user))
}

/// The challenge named by `hash` if it can still be answered: its user and the passkey
/// assertion state it was given, if any.
async fn live_challenge_state(
    conn: &mut AnyConnection,
    hash: &str,
) -> Result<Option<(UserId, Option<String>)>, AppError> {
    let row = sqlx::query(
        "SELECT user_id, webauthn_state FROM mfa_challenges WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND failures < $3",
    )
    .bind(hash)
    .bind(now_micros())
    .bind(MAX_FAILURES)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user = row.try_get::<String, _>("user_id")?;
    let state = row.try_get::<Option<String>, _>("webauthn_state")?;
    Ok(UserId::parse(&user).map(|u| (u, state)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasskeyOptionsRequest {
    mfa_token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct PasskeyOptions {
    /// `{"publicKey": PublicKeyCredentialRequestOptionsJSON}` limited to the account's
    /// passkeys: pass `publicKey` through `PublicKeyCredential.parseRequestOptionsFromJSON()`
    /// to `navigator.credentials.get()`, then send the answer to `/auth/mfa` as `credential`.
    #[schema(value_type = Object)]
    options: serde_json::Value,
}

/// Passkey options for the second factor of a login that waits for one. Asking again
/// replaces the earlier options of the same `mfa_token`.
#[utoipa::path(post, path = "/api/v1/auth/mfa/webauthn", tag = "auth",
    request_body = PasskeyOptionsRequest,
    responses(
        (status = 200, description = "Request options for the authenticator.", body = PasskeyOptions),
        (status = 400, description = "The mfa_token is invalid, expired or used up (slug `invalid-token`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The account has no passkey (slug `no-passkeys`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn passkey_options(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    Json(req): Json<PasskeyOptionsRequest>,
) -> Result<impl IntoResponse, AppError> {
    let hash = token_hash(&req.mfa_token);
    let mut tx = app.store.begin_write().await?;
    let user = live_challenge(&mut tx, &hash)
        .await?
        .ok_or_else(invalid_token)?;
    let Some((options, state)) =
        crate::auth::passkeys::login::second_factor_options(&app, &mut tx, user).await?
    else {
        return Err(AppError::Conflict {
            slug: "no-passkeys",
            detail: "This account has no passkey; answer with a code.".into(),
        });
    };
    sqlx::query("UPDATE mfa_challenges SET webauthn_state = $1 WHERE token_hash = $2")
        .bind(state)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((no_store(), Json(PasskeyOptions { options })))
}

async fn second_factor(
    app: &AppState,
    mfa_token: &str,
    answer: &Answer,
    client: &ClientInfo,
) -> Result<service::Verified, AppError> {
    let hash = token_hash(mfa_token);
    let mut conn = app.store.pool().acquire().await?;
    let user_id = live_challenge(&mut conn, &hash)
        .await?
        .ok_or_else(invalid_token)?;
    drop(conn);
    let user = accounts::find_by_id(app.store.pool(), user_id)
        .await?
        .ok_or_else(invalid_token)?;
    let attempt = app
        .backoff
        .admit_or_refuse(
            &user.email_key(),
            "Too many failed logins for this account; see Retry-After.",
        )
        .await?;

    let mut tx = app.store.begin_write().await?;
    // Read again under the write lock: two answers to one challenge cannot both pass.
    let Some((owner, passkey_state)) = live_challenge_state(&mut tx, &hash).await? else {
        return Err(invalid_token());
    };
    if owner != user.id {
        return Err(invalid_token());
    }
    let method = match answer {
        Answer::Code(code) => verify_code(app, &mut tx, &user, code).await?,
        Answer::Passkey(credential) => match passkey_state {
            // Options first: the answer must sign the challenge this login was given.
            None => None,
            Some(state) => crate::auth::passkeys::login::verify_second_factor(
                app, &mut tx, &user, &state, credential,
            )
            .await?
            .then_some("webauthn"),
        },
    };
    let Some(method) = method else {
        tx.rollback().await?;
        let mut tx = app.store.begin_write().await?;
        sqlx::query("UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        let entry = Entry::new(Action::MfaFailed)
            .target("user", user.id)
            .failure()
            .client(client);
        let audit_id = app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        let backoff_s = attempt.failed().await.map(|w| w.as_secs_f64());
        tracing::info!(user_id = %user.id, backoff_s, ip = %client.ip, %audit_id, "second factor refused");
        return Err(AppError::InvalidCredentials);
    };
    // Spent here or not at all: of two answers racing on PostgreSQL, one passes.
    let spent = sqlx::query(
        "UPDATE mfa_challenges SET used_at = $1, webauthn_state = NULL WHERE token_hash = $2 AND used_at IS NULL",
    )
    .bind(now_micros())
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    if spent.rows_affected() != 1 {
        tx.rollback().await?;
        return Err(invalid_token());
    }
    if !accounts::record_login(&mut tx, user.id, now_micros()).await? {
        // Disabled or locked since the password was checked.
        tx.rollback().await?;
        return Err(AppError::InvalidCredentials);
    }
    Ok(service::Verified::after_second_factor(
        tx, user.id, method, attempt,
    ))
}

/// Checks a TOTP or recovery `code` against the challenge `mfa_token` (as `/auth/mfa` does,
/// with the same failure counting and backoff) for a caller that opens its own session.
pub async fn check_code(
    app: &AppState,
    mfa_token: &str,
    code: String,
    client: &ClientInfo,
) -> Result<service::Verified, AppError> {
    second_factor(app, mfa_token, &Answer::Code(code), client).await
}

/// Checks `code` as a TOTP code (each time step once) or a recovery code (each once), and
/// spends it. Returns the method that matched.
async fn verify_code(
    app: &AppState,
    conn: &mut AnyConnection,
    user: &User,
    code: &str,
) -> Result<Option<&'static str>, AppError> {
    let code = code.trim();
    if code.len() <= 8 && code.chars().all(|c| c.is_ascii_digit()) {
        let Some(s) = stored(&mut *conn, user.id).await?.filter(|s| s.confirmed) else {
            return Ok(None);
        };
        let t = totp(open(app, user.id, &s.secret)?, &user.email, &issuer(app))?;
        let Some(step) = t.check_current(code) else {
            return Ok(None);
        };
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        if s.last_step.is_some_and(|last| step <= last) {
            return Ok(None);
        }
        let done = sqlx::query(
            "UPDATE mfa_totp SET last_step = $1 WHERE user_id = $2 AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step)
        .bind(user.id.to_string())
        .execute(&mut *conn)
        .await?;
        return Ok((done.rows_affected() == 1).then_some("totp"));
    }
    let normalised = normalise(code);
    if normalised.is_empty() || normalised.len() > 64 {
        return Ok(None);
    }
    let done = sqlx::query(
        "UPDATE mfa_recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(now_micros())
    .bind(user.id.to_string())
    .bind(token_hash(&normalised))
    .execute(&mut *conn)
    .await?;
    Ok((done.rows_affected() == 1).then_some("recovery_code"))
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn recovery_codes_ignore_case_spaces_and_dashes() {
        assert_eq!(normalise(" AB12-cd34 ef56 "), "ab12cd34ef56");
    }
}
