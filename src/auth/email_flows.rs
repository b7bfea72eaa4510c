//! Flows that prove control of the email address: verifying it, and resetting a forgotten
//! password (`/auth/verify-email*`, `/auth/password-reset*`).
//!
//! Each sends a one-time token by email. Only its SHA-256 is stored (`email_tokens`), with
//! the address it was sent to: a verification token dies when the address changes, and a
//! reset token also carries a mark of the password hash it may replace, so any change of
//! the password (by any route) kills it. A token works once, until it expires
//! (`email_verification_ttl`, 24 h; `password_reset_ttl`, 30 min).
//!
//! A reset request answers 202 at once, whether or not the address has an account: the
//! lookup and the email happen after the answer, so neither the answer nor its timing tells.
//! At most one message of each kind is sent to an account per [`RESEND_INTERVAL_MICROS`];
//! further requests within it are answered alike and send nothing.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::{AnyConnection, Row};

use super::Caller;
use super::sessions;
use crate::accounts::{Email, User, UserId, service as account_service, store as accounts};
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::crypto::{new_token, token_hash};
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::{AuthRateLimit, ClientInfo, Json};
use crate::mail::templates::{self, PASSWORD_CHANGED, PASSWORD_RESET, VERIFY_EMAIL};
use crate::mail::{Mailbox, Message};
use crate::store::now_micros;

const VERIFY: &str = "verify_email";
const RESET: &str = "password_reset";
/// One message of a kind per account per minute; requests within it send nothing.
pub const RESEND_INTERVAL_MICROS: i64 = 60 * 1_000_000;
/// Longer input is not a token of ours.
const MAX_TOKEN_CHARS: usize = 128;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(request_verification, verify, request_reset, reset))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/auth/verify-email/request",
            post(request_verification),
        )
        .route("/api/v1/auth/verify-email", post(verify))
        .route("/api/v1/auth/password-reset/request", post(request_reset))
        .route("/api/v1/auth/password-reset", post(reset))
}

fn invalid_token() -> AppError {
    AppError::BadRequest {
        slug: "invalid-token",
        detail: "The token is invalid, expired or already used.",
    }
}

/// The body of a verification request: an empty object, as API.md writes it.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// Send a verification link to the caller's email address.
///
/// Answers 202 and sends nothing when the address is already verified, or when a link was
/// sent less than a minute ago.
#[utoipa::path(post, path = "/api/v1/auth/verify-email/request", tag = "auth",
    security(("bearer" = [])),
    request_body(content = Empty, description = "An empty object."),
    responses((status = 202, description = "A verification email is on its way, unless none is needed.")))]
async fn request_verification(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(_): Json<Empty>,
) -> Result<StatusCode, AppError> {
    let user = account_service::load(&app, caller.user_id).await?;
    if user.email_verified_at.is_some() {
        return Ok(StatusCode::ACCEPTED);
    }
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        accounts::lock(&mut tx, user.id).await?;
        if recently_sent(&mut tx, user.id, VERIFY).await? {
            return Ok(());
        }
        issue(&app, &mut tx, &user, VERIFY).await?;
        let entry = Entry::by_owner(Action::EmailVerificationSent, user.id, &client);
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.id, "verification email queued");
        Ok::<_, AppError>(())
    })
    .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// The token from the verification email.
    token: String,
}

/// Verify the email address with the token from the verification email.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 204, description = "The address is verified."),
        (status = 400, description = "Invalid, expired or used token (slug `invalid-token`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn verify(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<TokenRequest>,
) -> Result<StatusCode, AppError> {
    let found = find(&app, &req.token, VERIFY).await?;
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        if !spend(&mut tx, &found.hash).await? {
            return Err(invalid_token());
        }
        let now = now_micros();
        // Only while the account still has the address the token was sent to.
        let done = sqlx::query(
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1), updated_at = $1 WHERE id = $2 AND email_key = $3",
        )
        .bind(now)
        .bind(found.user.to_string())
        .bind(&found.email_key)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(invalid_token());
        }
        app.store
            .announce(
                &mut tx,
                crate::accounts::cache::INVALIDATION_KIND,
                &[found.user.to_string()],
            )
            .await?;
        let entry = Entry::by_owner(Action::EmailVerified, found.user, &client);
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        app.profiles.invalidate(found.user);
        tracing::info!(user_id = %found.user, "email verified");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    /// Any text: what is not an account's address (not even an address) gets the same 202.
    #[schema(max_length = 254, example = "ada@example.com")]
    email: String,
}

/// Ask for a password reset email.
///
/// Always 202 (API.md), whether or not the text is an account's address (nothing is sent
/// then), and without waiting for the lookup. At most one email per account per minute.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/request", tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "If the address has an account, a reset email is on its way."),
    ))]
async fn request_reset(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<ResetRequest>,
) -> Result<StatusCode, AppError> {
    if req.email.chars().count() > 254 {
        return Err(AppError::Invalid(vec![FieldError::new(
            "email",
            "is longer than 254 characters",
        )]));
    }
    let Ok(email) = Email::parse(&req.email) else {
        // No account has it: the answer every unknown address gets.
        return Ok(StatusCode::ACCEPTED);
    };
    // The work happens after the answer: its duration must not tell whether the address
    // has an account.
    tokio::spawn(async move {
        if let Err(e) = send_reset(&app, &email, &client).await {
            tracing::warn!(error = %e, "password reset request failed");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

async fn send_reset(app: &AppState, email: &Email, client: &ClientInfo) -> Result<(), AppError> {
    let Some(user) = accounts::find_by_email_key(app.store.pool(), email.key()).await? else {
        tracing::info!("password reset requested for an address without an account");
        return Ok(());
    };
    if user.disabled_at.is_some() {
        tracing::info!(user_id = %user.id, "password reset requested for a disabled account; nothing sent");
        return Ok(());
    }
    let mut tx = app.store.begin_write().await?;
    accounts::lock(&mut tx, user.id).await?;
    if recently_sent(&mut tx, user.id, RESET).await? {
        tracing::info!(user_id = %user.id, "password reset email sent less than a minute ago; nothing sent");
        return Ok(());
    }
    issue(app, &mut tx, &user, RESET).await?;
    let entry = Entry::new(Action::PasswordResetRequested)
        .target("user", user.id)
        .client(client);
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "password reset email queued");
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPasswordRequest {
    /// The token from the reset email.
    token: String,
    #[schema(min_length = 1, max_length = 128)]
    new_password: String,
}

/// Set a new password with the token from the reset email. Every session of the account
/// ends, and a lockout is lifted.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth",
    request_body = NewPasswordRequest,
    responses(
        (status = 204, description = "The password is changed; every session is revoked."),
        (status = 400, description = "Invalid, expired or used token (slug `invalid-token`), or a new password the policy refuses (naming `new_password`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn reset(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<NewPasswordRequest>,
) -> Result<StatusCode, AppError> {
    let found = find(&app, &req.token, RESET).await?;
    let user = accounts::find_by_id(app.store.pool(), found.user)
        .await?
        .ok_or_else(invalid_token)?;
    if !found.still_applies(&user) || user.disabled_at.is_some() {
        return Err(invalid_token());
    }
    let new = SecretString::from(req.new_password);
    let mut context = vec![user.email.clone()];
    context.extend(user.name.clone());
    account_service::check_new_password(&app, "new_password", &new, context).await?;
    let hash = app.hasher.hash(new).await?;
    let email_key = user.email_key();
    let announced = super::backoff::announced(&email_key);
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let now = now_micros();
        if !spend(&mut tx, &found.hash).await? {
            return Err(invalid_token());
        }
        if !accounts::replace_password_hash(&mut tx, user.id, &user.password_hash, &hash, now)
            .await?
        {
            // The password changed since the token was checked: the token died with it.
            return Err(invalid_token());
        }
        accounts::unlock(&mut tx, user.id, now).await?;
        let revoked =
            sessions::revoke_all_of_user(&app.store, &mut tx, user.id, None, "password_reset")
                .await?;
        password_changed_notice(&app, &mut tx, &user, "reset by email").await?;
        app.store
            .announce(
                &mut tx,
                crate::accounts::cache::INVALIDATION_KIND,
                &[user.id.to_string()],
            )
            .await?;
        app.store
            .announce(&mut tx, super::backoff::INVALIDATION_KIND, &[announced])
            .await?;
        let entry = Entry::by_owner(Action::PasswordReset, user.id, &client)
            .detail("via", "email")
            .detail("revoked_sessions", revoked.len());
        let audit_id = app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        app.sessions.forget(&revoked);
        app.profiles.invalidate(user.id);
        tracing::info!(user_id = %user.id, revoked_sessions = revoked.len(), %audit_id, "password reset by email");
        Ok(())
    })
    .await?;
    app.backoff.clear(&email_key).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A live token as found by its hash.
struct Found {
    hash: String,
    user: UserId,
    email_key: String,
    password_mark: Option<String>,
}

impl Found {
    /// Whether the account still has the address and (for a reset) the password the token
    /// was issued for.
    fn still_applies(&self, user: &User) -> bool {
        user.email_key() == self.email_key
            && self
                .password_mark
                .as_ref()
                .is_none_or(|mark| *mark == token_hash(&user.password_hash))
    }
}

async fn find(app: &AppState, token: &str, purpose: &str) -> Result<Found, AppError> {
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
        return Err(invalid_token());
    }
    let hash = token_hash(token);
    let row = sqlx::query(
        "SELECT user_id, email_key, password_mark FROM email_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(&hash)
    .bind(purpose)
    .bind(now_micros())
    .fetch_optional(app.store.pool())
    .await?
    .ok_or_else(invalid_token)?;
    let user: String = row.try_get("user_id")?;
    Ok(Found {
        hash,
        user: UserId::parse(&user).ok_or_else(invalid_token)?,
        email_key: row.try_get("email_key")?,
        password_mark: row.try_get("password_mark")?,
    })
}

/// Marks a token used; false if it already was.
async fn spend(conn: &mut AnyConnection, hash: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE email_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
    )
    .bind(now_micros())
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether a token of `purpose` went to `user` within the last minute. Callers hold the
/// account's row lock ([`accounts::lock`]) first: on PostgreSQL two requests would otherwise
/// both count nothing, under read committed, and both send.
async fn recently_sent(
    conn: &mut AnyConnection,
    user: UserId,
    purpose: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM email_tokens WHERE user_id = $1 AND purpose = $2 AND created_at > $3",
    )
    .bind(user.to_string())
    .bind(purpose)
    .bind(now_micros() - RESEND_INTERVAL_MICROS)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

fn link(app: &AppState, page: &str, token: &str) -> String {
    format!(
        "{}/{page}?token={token}",
        app.config.issuer.trim_end_matches('/')
    )
}

fn human(ttl: std::time::Duration) -> String {
    let secs = ttl.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// Stores a new token for `user` and queues its email, in the caller's transaction.
async fn issue(
    app: &AppState,
    conn: &mut AnyConnection,
    user: &User,
    purpose: &'static str,
) -> Result<(), AppError> {
    let (ttl, mark, template, page) = if purpose == RESET {
        (
            app.config.password_reset_ttl,
            Some(token_hash(&user.password_hash)),
            PASSWORD_RESET,
            "reset-password",
        )
    } else {
        (
            app.config.email_verification_ttl,
            None,
            VERIFY_EMAIL,
            "verify-email",
        )
    };
    let token = new_token();
    let now = now_micros();
    sqlx::query(
        "INSERT INTO email_tokens (token_hash, purpose, user_id, email_key, password_mark, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token_hash(&token))
    .bind(purpose)
    .bind(user.id.to_string())
    .bind(user.email_key())
    .bind(mark)
    .bind(now)
    .bind(now.saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX)))
    .execute(&mut *conn)
    .await?;
    let link = link(app, page, &token);
    let expires = human(ttl);
    send(
        app,
        conn,
        user,
        template,
        &[
            ("email", &user.email),
            ("link", &link),
            ("token", &token),
            ("expires", &expires),
        ],
    )
    .await
}

async fn send(
    app: &AppState,
    conn: &mut AnyConnection,
    user: &User,
    template: &str,
    values: &[(&str, &str)],
) -> Result<(), AppError> {
    // Signup validates addresses; one the mailer still cannot use is logged, and the change
    // that wanted to tell about it goes ahead.
    let to: Mailbox = match user.email.parse() {
        Ok(to) => to,
        Err(e) => {
            tracing::warn!(user_id = %user.id, error = %e, template, "address unusable for email; nothing sent");
            return Ok(());
        }
    };
    let r = templates::render(app.config.mail_templates_dir.as_deref(), template, values);
    app.mail
        .enqueue(
            conn,
            &Message {
                user: Some(user.id),
                to,
                subject: r.subject,
                text: r.text,
                html: Some(r.html),
            },
        )
        .await?;
    Ok(())
}

/// Issues a verification token for `user` and queues its email, in the caller's transaction
/// (signup, when `require_verified_email` is on).
pub async fn send_verification(
    app: &AppState,
    conn: &mut AnyConnection,
    user: &User,
) -> Result<(), AppError> {
    issue(app, conn, user, VERIFY).await
}

/// Queues the "your password was changed" notice in the caller's transaction. `how` says
/// which route changed it.
pub async fn password_changed_notice(
    app: &AppState,
    conn: &mut AnyConnection,
    user: &User,
    how: &str,
) -> Result<(), AppError> {
    // Any reset token still waiting dies with the old password (they are bound to it
    // anyway; this also keeps the table small).
    sqlx::query(
        "UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
    )
    .bind(now_micros())
    .bind(user.id.to_string())
    .bind(RESET)
    .execute(&mut *conn)
    .await?;
    send(
        app,
        conn,
        user,
        PASSWORD_CHANGED,
        &[("email", &user.email), ("how", how)],
    )
    .await
}

/// Deletes every token of an account (erasure).
pub async fn delete_of_user(conn: &mut AnyConnection, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM email_tokens WHERE user_id = $1")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}
