//! Login, refresh and logout.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;

use super::backoff::Attempt;
use super::sessions::{self, NewSession, Rotation};
use super::tokens::TokenError;
use crate::accounts::{Email, UserId, service as account_service, store as accounts};
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::error::AppError;
use crate::roles;
use crate::store::now_micros;

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

/// What login and refresh return (API.md "Token pair").
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// A JWT (`typ` `at+jwt`), sent as `Authorization: Bearer <token>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; single use, rotated on every refresh.
    pub refresh_token: String,
    #[schema(format = "uuid")]
    pub session_id: String,
}

pub use crate::http::ClientInfo;

/// What a login answers: a session, or a request for the second factor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginOutcome {
    Tokens(TokenPair),
    Mfa(super::mfa::MfaRequired),
}

/// A login whose every factor passed, inside the transaction in which `record_login` passed:
/// what remains is to open a session of some kind ([`open_session`] for the API, or a
/// browser session on the OIDC pages through [`open_browser_session`]).
pub struct Verified {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    pub user: UserId,
    /// The second factor's method, `None` for the password alone.
    pub mfa: Option<&'static str>,
    attempt: Attempt,
}

/// What checking the password found: a login ready for its session, or a second factor to ask.
pub enum Checked {
    Verified(Verified),
    Mfa(super::mfa::MfaRequired),
}

/// Checks the password and opens an API session (see [`check_password`]).
#[tracing::instrument(skip_all)]
pub async fn login(
    app: &AppState,
    email: &Email,
    password: SecretString,
    client: ClientInfo,
) -> Result<LoginOutcome, AppError> {
    match check_password(app, email, password, &client).await? {
        Checked::Verified(v) => open_session(app, v, &client)
            .await
            .map(LoginOutcome::Tokens),
        Checked::Mfa(m) => Ok(LoginOutcome::Mfa(m)),
    }
}

/// Checks the password and the account. Every failure (unknown email, wrong password,
/// disabled or locked account) is the same error after the same work: one password
/// verification. Failures count towards the email's backoff whether or not it has an
/// account, so neither the answer nor the limit tells which emails exist.
pub async fn check_password(
    app: &AppState,
    email: &Email,
    password: SecretString,
    client: &ClientInfo,
) -> Result<Checked, AppError> {
    let client = client.clone();
    let attempt = app
        .backoff
        .admit_or_refuse(
            email.key(),
            "Too many failed logins for this account; see Retry-After.",
        )
        .await?;
    let user = accounts::find_by_email_key(app.store.pool(), email.key()).await?;
    let Some(user) = user else {
        app.hasher.verify_dummy(password).await?;
        return Err(failed(app, attempt, &client, "unknown_email", None, email).await);
    };
    let verified = app
        .hasher
        .verify(password.clone(), user.password_hash.clone())
        .await?;
    if !verified.matches {
        return Err(failed(
            app,
            attempt,
            &client,
            "wrong_password",
            Some(user.id),
            email,
        )
        .await);
    }
    if user.disabled_at.is_some() {
        return Err(failed(app, attempt, &client, "disabled", Some(user.id), email).await);
    }
    if user.locked_at.is_some() {
        return Err(failed(app, attempt, &client, "locked", Some(user.id), email).await);
    }
    if app.config.require_verified_email && user.email_verified_at.is_none() {
        // Only after the password was right: a wrong one never learns this.
        tracing::info!(user_id = %user.id, "login refused: email not verified");
        return Err(AppError::Refused {
            slug: "email-not-verified",
            detail: "Verify your email address before logging in.",
        });
    }
    if verified.needs_rehash {
        rehash(app, user.id, password, user.password_hash.clone()).await;
    }
    if user.mfa_enabled {
        // No session without the second factor. The email's earlier failures stay counted
        // until it is given (`attempt` is dropped, neither failed nor succeeded).
        let required = super::mfa::challenge(app, user.id).await?;
        tracing::info!(user_id = %user.id, "password accepted; second factor required");
        return Ok(Checked::Mfa(required));
    }

    let mut tx = app.store.begin_write().await?;
    if !accounts::record_login(&mut tx, user.id, now_micros()).await? {
        // Disabled, locked or erased while the password was checked: refused like those.
        tx.rollback().await?;
        let now = accounts::find_by_id(app.store.pool(), user.id).await?;
        let (reason, id) = match &now {
            Some(u) if u.disabled_at.is_some() => ("disabled", Some(u.id)),
            Some(u) => ("locked", Some(u.id)),
            None => ("unknown_email", None),
        };
        return Err(failed(app, attempt, &client, reason, id, email).await);
    }
    Ok(Checked::Verified(Verified {
        tx,
        user: user.id,
        mfa: None,
        attempt,
    }))
}

impl Verified {
    /// A login whose second factor passed in `tx`, after `record_login` passed there too.
    pub(crate) fn after_second_factor(
        tx: sqlx::Transaction<'static, sqlx::Any>,
        user: UserId,
        method: &'static str,
        attempt: Attempt,
    ) -> Verified {
        Verified {
            tx,
            user,
            mfa: Some(method),
            attempt,
        }
    }
}

/// Counts a failed attempt towards the email's backoff and, for a wrong password, towards
/// the account's lockout; records it in the audit log; returns the one error every failure
/// gets. Nobody was authenticated, so the actor is the system. An unknown email is kept as
/// personal data of the entry (erasable, visible only to audit readers), never as its
/// target, and never in what the client sees; the password is never kept at all.
async fn failed(
    app: &AppState,
    attempt: Attempt,
    client: &ClientInfo,
    reason: &'static str,
    user: Option<UserId>,
    email: &Email,
) -> AppError {
    let backoff_s = attempt.failed().await.map(|w| w.as_secs_f64());
    let entry = Entry::new(Action::LoginFailed)
        .failure()
        .client(client)
        .detail("reason", reason);
    let entry = match user {
        Some(id) => entry.target("user", id),
        None => entry.personal("email", email.as_str()),
    };
    let counted = user.filter(|_| reason == "wrong_password");
    match account_service::record_wrong_password(app, counted, entry, client).await {
        Ok((audit_id, _)) => {
            match user {
                Some(id) => {
                    tracing::info!(user_id = %id, reason, backoff_s, ip = %client.ip, %audit_id, "login failed")
                }
                None => {
                    tracing::info!(reason, backoff_s, ip = %client.ip, %audit_id, "login failed")
                }
            }
            AppError::InvalidCredentials
        }
        // The attempt is refused either way; if it could not be recorded, the client learns
        // that the service is unwell, which reveals nothing about the account.
        Err(e) => e,
    }
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
pub async fn refresh(
    app: &AppState,
    presented: &SecretString,
    client: ClientInfo,
) -> Result<TokenPair, AppError> {
    let presented = presented.clone();
    app.to_completion(move |app| async move { rotate(&app, &presented, &client).await })
        .await
}

async fn rotate(
    app: &AppState,
    presented: &SecretString,
    client: &ClientInfo,
) -> Result<TokenPair, AppError> {
    match sessions::rotate(
        &app.store,
        &app.audit,
        presented.expose_secret(),
        app.config.refresh_token_ttl,
        client,
        None,
    )
    .await?
    {
        Rotation::Rotated {
            user_id,
            session_id,
            refresh_token,
            mfa_method,
            ..
        } => {
            // The session's login decides, not the account's current MFA: enrolling TOTP
            // does not make a password-only session multi-factor.
            let mfa = mfa_method.as_deref();
            let roles = roles::for_session(app.store.pool(), user_id, mfa.is_some()).await?;
            pair(app, user_id, session_id, &roles, mfa, refresh_token)
        }
        Rotation::Reused {
            user_id,
            session_id,
            audit_id,
        } => {
            app.sessions.forget(&[session_id]);
            tracing::warn!(user_id = %user_id, session_id = %session_id, %audit_id, "refresh token reused; session revoked");
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

/// How a user ends one of their sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The current session, by logging out.
    Logout,
    /// Any of their sessions, from the session list.
    Revoke,
}

/// Ends one session of `user`. Returns false when there was no such live session.
pub async fn end_session(
    app: &AppState,
    user: UserId,
    session: Uuid,
    ending: Ending,
    client: ClientInfo,
) -> Result<bool, AppError> {
    let (reason, action) = match ending {
        Ending::Logout => ("logout", Action::Logout),
        Ending::Revoke => ("revoked_by_user", Action::SessionRevoked),
    };
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let revoked = sessions::revoke_in(&app.store, &mut tx, session, Some(user), reason).await?;
        if !revoked {
            return Ok(false);
        }
        // A browser session takes the grants it authorized with it, as /oauth2/logout does.
        let mut ended = vec![session];
        ended.extend(sessions::revoke_family(&app.store, &mut tx, session, reason).await?);
        let entry = Entry::new(action)
            .actor(user)
            .target("session", session)
            .client(&client);
        let audit_id = app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        app.sessions.forget(&ended);
        tracing::info!(user_id = %user, session_id = %session, reason, %audit_id, "session ended");
        Ok(true)
    })
    .await
}

/// The end of every login, once each factor is checked: the session (remembering the second
/// factor's method for its life and its tokens' `amr`), its `login` audit entry (with that
/// method, if one was asked, and `via` for other ways in than the API), the commit, and the
/// backoff cleared.
async fn finish(
    app: &AppState,
    verified: Verified,
    client: &ClientInfo,
    new: NewSession<'_>,
    via: Option<&'static str>,
) -> Result<sessions::CreatedWith, AppError> {
    let Verified {
        mut tx,
        user,
        mfa,
        attempt,
    } = verified;
    super::login_alert::before_session(app, &mut tx, user, client).await?;
    let created = sessions::create_with(&mut tx, &new).await?;
    let mut entry = Entry::new(Action::Login)
        .actor(user)
        .target("session", created.session_id)
        .client(client);
    if let Some(method) = mfa {
        entry = entry.detail("mfa", method);
    }
    if let Some(via) = via {
        entry = entry.detail("via", via);
    }
    let audit_id = app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    attempt.succeeded().await;
    tracing::info!(user_id = %user, session_id = %created.session_id, %audit_id, mfa, via, "login succeeded");
    Ok(created)
}

/// Opens the API session of a verified login and returns its token pair. Roles that require
/// MFA are left out of the token's `roles` when the login had no second factor.
pub(super) async fn open_session(
    app: &AppState,
    verified: Verified,
    client: &ClientInfo,
) -> Result<TokenPair, AppError> {
    let (user, mfa) = (verified.user, verified.mfa);
    let new = NewSession {
        user_agent: client.user_agent.as_deref(),
        mfa_method: mfa,
        ttl: app.config.refresh_token_ttl,
        ..NewSession::api(user, &client.ip)
    };
    let created = finish(app, verified, client, new, None).await?;
    let roles = roles::for_session(app.store.pool(), user, mfa.is_some()).await?;
    pair(
        app,
        user,
        created.session_id,
        &roles,
        mfa,
        created.refresh_token.unwrap_or_default(),
    )
}

/// Opens the browser session of a verified login on the OIDC pages: no refresh token, found
/// again by the SHA-256 of its cookie (`cookie_hash`), alive for `ttl`. Audited as `login`
/// with `via: "oidc"`.
pub async fn open_browser_session(
    app: &AppState,
    verified: Verified,
    client: &ClientInfo,
    cookie_hash: &str,
    ttl: std::time::Duration,
) -> Result<sessions::CreatedWith, AppError> {
    let user = verified.user;
    let new = NewSession {
        user_agent: client.user_agent.as_deref(),
        mfa_method: verified.mfa,
        ttl,
        browser_token_hash: Some(cookie_hash),
        refresh: false,
        ..NewSession::api(user, &client.ip)
    };
    finish(app, verified, client, new, Some("oidc")).await
}

fn pair(
    app: &AppState,
    user: UserId,
    session: Uuid,
    roles: &[String],
    mfa: Option<&str>,
    refresh_token: String,
) -> Result<TokenPair, AppError> {
    let issued = app
        .tokens
        .issue(user, session, roles, super::amr::values(mfa))?;
    Ok(TokenPair {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token,
        session_id: session.to_string(),
    })
}
