//! Login, refresh and logout.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;

use super::backoff::Attempt;
use super::sessions::{self, Rotation};
use super::tokens::TokenError;
use crate::accounts::{Email, UserId, store as accounts};
use crate::app::AppState;
use crate::error::AppError;
use crate::roles;
use crate::store::now_micros;

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

/// What login and refresh return (API.md "Token pair").
#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub session_id: String,
}

/// Where a login comes from, recorded on the session.
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
}

/// Checks the password and opens a session. Every failure (unknown email, wrong password,
/// disabled or locked account) is the same error after the same work: one password
/// verification. Failures count towards the email's backoff whether or not it has an
/// account, so neither the answer nor the limit tells which emails exist.
#[tracing::instrument(skip_all)]
pub async fn login(
    app: &AppState,
    email: &Email,
    password: SecretString,
    client: ClientInfo,
) -> Result<TokenPair, AppError> {
    let attempt = app
        .backoff
        .admit(email.key())
        .await
        .map_err(|retry_after| AppError::RateLimited {
            retry_after,
            detail: "Too many failed logins for this account; see Retry-After.",
        })?;
    let user = accounts::find_by_email_key(app.store.pool(), email.key()).await?;
    let Some(user) = user else {
        app.hasher.verify_dummy(password).await?;
        return Err(failed(attempt, None, "unknown_email").await);
    };
    let verified = app
        .hasher
        .verify(password.clone(), user.password_hash.clone())
        .await?;
    if !verified.matches {
        let threshold = app.config.lockout_threshold;
        let user_id = user.id;
        let locked = app
            .to_completion(move |app| async move {
                let mut tx = app.store.begin_write().await?;
                let locked =
                    accounts::record_failed_login(&mut tx, user_id, threshold, now_micros())
                        .await?;
                tx.commit().await?;
                Ok(locked)
            })
            .await?;
        if locked {
            tracing::warn!(user_id = %user.id, threshold, "account locked after repeated failed logins");
        }
        return Err(failed(attempt, Some(user.id), "wrong_password").await);
    }
    if user.disabled_at.is_some() {
        return Err(failed(attempt, Some(user.id), "disabled").await);
    }
    if user.locked_at.is_some() {
        return Err(failed(attempt, Some(user.id), "locked").await);
    }
    if verified.needs_rehash {
        rehash(app, user.id, password, user.password_hash.clone()).await;
    }

    let mut tx = app.store.begin_write().await?;
    let created = sessions::create(
        &mut tx,
        user.id,
        &client.ip,
        client.user_agent.as_deref(),
        app.config.refresh_token_ttl,
    )
    .await?;
    accounts::record_login(&mut tx, user.id, now_micros()).await?;
    let roles = roles::of_user(&mut *tx, user.id).await?;
    tx.commit().await?;
    attempt.succeeded().await;
    tracing::info!(user_id = %user.id, session_id = %created.session_id, "login succeeded");
    pair(
        app,
        user.id,
        created.session_id,
        &roles,
        created.refresh_token,
    )
}

/// Counts a failed attempt and logs it; the answer is the same for every reason.
async fn failed(attempt: Attempt, user: Option<UserId>, reason: &'static str) -> AppError {
    let wait = attempt.failed().await;
    let backoff_s = wait.map(|w| w.as_secs_f64());
    match user {
        Some(user_id) => tracing::info!(%user_id, reason, backoff_s, "login failed"),
        None => tracing::info!(reason, backoff_s, "login failed"),
    }
    AppError::InvalidCredentials
}

/// Moves a hash made with older parameters to the current ones. Failure is harmless: the
/// old hash still works and the next login tries again.
async fn rehash(app: &AppState, user: UserId, password: SecretString, old: String) {
    match app.hasher.hash(password).await {
        Ok(new) => {
            if let Err(e) =
                accounts::upgrade_password_hash(app.store.pool(), user, &old, &new).await
            {
                tracing::warn!(error = %e, "storing the upgraded password hash failed");
            }
        }
        Err(e) => tracing::debug!(error = %e, "password rehash skipped"),
    }
}

#[tracing::instrument(skip_all)]
pub async fn refresh(app: &AppState, presented: &SecretString) -> Result<TokenPair, AppError> {
    let presented = presented.clone();
    app.to_completion(move |app| async move { rotate(&app, &presented).await })
        .await
}

async fn rotate(app: &AppState, presented: &SecretString) -> Result<TokenPair, AppError> {
    match sessions::rotate(
        &app.store,
        presented.expose_secret(),
        app.config.refresh_token_ttl,
    )
    .await?
    {
        Rotation::Rotated {
            user_id,
            session_id,
            refresh_token,
        } => {
            let roles = roles::of_user(app.store.pool(), user_id).await?;
            pair(app, user_id, session_id, &roles, refresh_token)
        }
        Rotation::Reused {
            user_id,
            session_id,
        } => {
            app.sessions.forget(&[session_id]);
            tracing::warn!(user_id = %user_id, session_id = %session_id, "refresh token reused; session revoked");
            Err(invalid_refresh())
        }
        Rotation::Rejected => Err(invalid_refresh()),
    }
}

fn invalid_refresh() -> AppError {
    AppError::Unauthorized {
        detail: "The refresh token is invalid, expired or already used.",
        token_sent: true,
    }
}

/// Ends one session of `user`. Returns false when there was no such live session.
pub async fn end_session(
    app: &AppState,
    user: UserId,
    session: Uuid,
    reason: &'static str,
) -> Result<bool, AppError> {
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let revoked = sessions::revoke_in(&app.store, &mut tx, session, Some(user), reason).await?;
        tx.commit().await?;
        if revoked {
            app.sessions.forget(&[session]);
            tracing::info!(user_id = %user, session_id = %session, reason, "session ended");
        }
        Ok(revoked)
    })
    .await
}

fn pair(
    app: &AppState,
    user: UserId,
    session: Uuid,
    roles: &[String],
    refresh_token: String,
) -> Result<TokenPair, AppError> {
    let issued = app.tokens.issue(user, session, roles)?;
    Ok(TokenPair {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token,
        session_id: session.to_string(),
    })
}
