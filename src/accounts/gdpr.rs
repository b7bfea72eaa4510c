//! GDPR: a person's export of everything stored about them, and erasure of their account
//! (by themselves after a password re-check, or by an admin).
//!
//! Erasure deletes the account row, its roles, sessions and refresh tokens, and clears the
//! IP, user agent and personal data of every audit entry about the person, in one
//! transaction that ends with a `user_erased` entry. The random user id stays in the audit
//! trail (`actor_id`, `target_id`): it no longer leads to anyone. MFA secrets and OIDC
//! consents go in the same transaction.

use secrecy::SecretString;
use serde::Serialize;

use super::cache::INVALIDATION_KIND;
use super::model::{User, UserId, UserView};
use super::service::reauthenticate;
use super::store;
use crate::app::AppState;
use crate::audit::{self, Action, Entry, EntryView};
use crate::auth::{Caller, backoff, sessions};
use crate::error::AppError;
use crate::http::ClientInfo;
use crate::roles;
use crate::store::{now_micros, rfc3339};

/// API.md "Export".
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Export)]
pub struct Export {
    pub user: UserView,
    /// What is stored about the account beyond the user shape.
    pub account: ExportedAccount,
    /// Every session still on record: live, revoked and expired ones.
    pub sessions: Vec<ExportedSession>,
    /// Every audit entry about the caller, oldest first (see `audit::erase`).
    pub audit: Vec<EntryView>,
    pub mfa: ExportedMfa,
    /// Email about the account on record in the outbox, oldest first (bodies are not kept
    /// once a message is sent, and are never exported).
    pub mail: Vec<crate::mail::store::Exported>,
    /// What the user allowed OpenID Connect clients to see, oldest first.
    pub oidc_consents: Vec<ExportedConsent>,
    #[schema(format = "date-time")]
    pub exported_at: String,
}

/// A consent given on the OIDC consent page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedConsent {
    #[schema(format = "uuid")]
    pub client_id: String,
    /// Space-separated scopes allowed so far.
    pub scope: String,
    #[schema(format = "date-time")]
    pub granted_at: String,
}

/// A stored session: API.md "Session" with its expiry and revocation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedSession {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(format = "date-time")]
    pub created_at: String,
    #[schema(format = "date-time")]
    pub last_seen_at: String,
    #[schema(format = "date-time")]
    pub expires_at: String,
    #[schema(format = "date-time")]
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Whether this is the session of the token that asked.
    pub current: bool,
}

/// The account's stored state that API.md's user shape leaves out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedAccount {
    #[schema(format = "date-time")]
    pub email_verified_at: Option<String>,
    #[schema(format = "date-time")]
    pub last_login_at: Option<String>,
    /// Consecutive wrong passwords since the last successful login.
    pub failed_logins: i64,
    #[schema(format = "date-time")]
    pub locked_at: Option<String>,
    #[schema(format = "date-time")]
    pub disabled_at: Option<String>,
}

/// MFA enrolment: whether TOTP is confirmed, and how many passkeys are registered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedMfa {
    pub totp: bool,
    pub passkeys: u32,
}

/// Everything stored about the caller, read in one snapshot so its parts agree.
#[tracing::instrument(skip_all)]
pub async fn export(app: &AppState, caller: &Caller) -> Result<Export, AppError> {
    let mut tx = app.store.begin_snapshot().await?;
    let mut user = store::find_by_id(&mut *tx, caller.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    user.roles = roles::of_user(&mut *tx, user.id).await?;
    let (last_login_at, failed_logins): (Option<i64>, i64) = sqlx::query_as(
        "SELECT last_login_at, CAST(failed_logins AS BIGINT) FROM users WHERE id = $1",
    )
    .bind(user.id.to_string())
    .fetch_one(&mut *tx)
    .await?;
    let stored = sessions::list_all(&mut tx, user.id).await?;
    let ids: Vec<String> = stored.iter().map(|s| s.id.clone()).collect();
    let uid = user.id.to_string();
    let email_key = user.email_key();
    let person = audit::Person {
        user_id: &uid,
        email_key: &email_key,
        sessions: &ids,
    };
    let entries = audit::erase::about(&mut tx, &person).await?;
    let mail = crate::mail::store::of_user(&mut tx, &uid).await?;
    let totp = crate::auth::mfa::totp_enabled(&mut tx, user.id).await?;
    let passkeys = crate::auth::passkeys::count_of_user(&mut tx, user.id).await?;
    let consents = crate::oidc::consents::list_of_user(&mut tx, user.id).await?;
    tx.rollback().await?;
    let current = caller.session_id.to_string();
    Ok(Export {
        user: UserView::from(&user),
        account: ExportedAccount {
            email_verified_at: user.email_verified_at.map(rfc3339),
            last_login_at: last_login_at.map(rfc3339),
            failed_logins,
            locked_at: user.locked_at.map(rfc3339),
            disabled_at: user.disabled_at.map(rfc3339),
        },
        sessions: stored
            .into_iter()
            .map(|s| ExportedSession {
                current: s.id == current,
                id: s.id,
                created_at: rfc3339(s.created_at),
                last_seen_at: rfc3339(s.last_seen_at),
                expires_at: rfc3339(s.expires_at),
                revoked_at: s.revoked_at.map(rfc3339),
                revoked_reason: s.revoked_reason,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect(),
        audit: entries
            .iter()
            .map(|e| EntryView::for_owner(e, &uid))
            .collect(),
        mfa: ExportedMfa {
            totp,
            passkeys: u32::try_from(passkeys).unwrap_or(u32::MAX),
        },
        mail,
        oidc_consents: consents
            .into_iter()
            .map(|c| ExportedConsent {
                client_id: c.client_id,
                scope: c.scope,
                granted_at: rfc3339(c.granted_at),
            })
            .collect(),
        exported_at: rfc3339(now_micros()),
    })
}

/// Erases the caller's account after re-checking its password. A wrong password is a
/// password guess like a failed login: it counts towards the same backoff and lockout.
#[tracing::instrument(skip_all)]
pub async fn erase_self(
    app: &AppState,
    caller: &Caller,
    password: SecretString,
    client: ClientInfo,
) -> Result<(), AppError> {
    let user = store::find_by_id(app.store.pool(), caller.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    reauthenticate(app, &user, password, Action::EraseFailed, &client).await?;
    erase(app, user.id, Eraser::Owner(user.password_hash)).await
}

/// Erases another user's account on an admin's request (`users:write` already checked).
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn erase_by_admin(
    app: &AppState,
    id: UserId,
    admin: roles::Principal,
    client: ClientInfo,
) -> Result<(), AppError> {
    erase(app, id, Eraser::Admin(admin, client)).await
}

/// Erases an account on an operator's request through the CLI (no one logged in).
pub async fn erase_by_operator(app: &AppState, id: UserId) -> Result<(), AppError> {
    erase(app, id, Eraser::Operator).await
}

/// Who asked for an erasure.
enum Eraser {
    /// The owner, who proved the password with this hash.
    Owner(String),
    Admin(roles::Principal, ClientInfo),
    Operator,
}

/// The erasure itself, in one transaction that finishes even if the client goes away.
async fn erase(app: &AppState, id: UserId, eraser: Eraser) -> Result<(), AppError> {
    let email_key = app
        .to_completion(move |app| async move {
            let mut tx = app.store.begin_write().await?;
            // Locks the admins first (see roles), then reads the account under that lock.
            let other_admins = roles::enabled_admins_other_than(&mut tx, id).await?;
            // A login racing the erasure commits before the audit entries are read, or waits
            // and finds no account: none of it escapes the erasure.
            store::lock(&mut tx, id).await?;
            let user: User = store::find_by_id(&mut *tx, id)
                .await?
                .ok_or(AppError::NotFound)?;
            if let Eraser::Admin(admin, _) = &eraser {
                roles::ensure_covers(&mut tx, *admin, id).await?;
            }
            if let Eraser::Owner(verified) = &eraser
                && *verified != user.password_hash
            {
                // The password changed since it was checked: the one given is not current.
                return Err(AppError::WrongPassword);
            }
            if other_admins == 0 && roles::is_enabled_admin(&mut tx, id).await? {
                return Err(AppError::Conflict {
                    slug: "last-admin",
                    detail: "This is the last enabled admin; make someone else admin first.".into(),
                });
            }
            let email_key = user.email_key();
            let uid = id.to_string();
            let on_record: Vec<String> = sessions::list_all(&mut tx, id)
                .await?
                .into_iter()
                .map(|s| s.id)
                .collect();
            let person = audit::Person {
                user_id: &uid,
                email_key: &email_key,
                sessions: &on_record,
            };
            let cleared = app.audit.erase_personal(&mut tx, &person).await?;
            let ended = sessions::delete_all_of_user(&app.store, &mut tx, id).await?;
            roles::remove_all(&mut tx, id).await?;
            crate::mail::store::delete_of_user(&mut tx, &uid).await?;
            crate::auth::mfa::delete_of_user(&mut tx, &uid).await?;
            crate::auth::email_flows::delete_of_user(&mut tx, &uid).await?;
            crate::oidc::consents::delete_of_user(&mut tx, id).await?;
            store::delete(&mut tx, id).await?;
            app.store
                .announce(&mut tx, INVALIDATION_KIND, &[uid])
                .await?;
            app.store
                .announce(
                    &mut tx,
                    backoff::INVALIDATION_KIND,
                    &[backoff::announced(&email_key)],
                )
                .await?;
            // No IP or user agent of the person erased; an admin's are the admin's own.
            let entry = match &eraser {
                Eraser::Owner(_) => Entry::new(Action::UserErased).actor(id),
                // An admin erasing itself is the person erased: its address goes too.
                Eraser::Admin(admin, _) if admin.user == id => {
                    Entry::new(Action::UserErased).actor(id)
                }
                Eraser::Admin(admin, client) => Entry::new(Action::UserErased)
                    .actor(admin.user)
                    .client(client),
                Eraser::Operator => Entry::new(Action::UserErased).detail("via", "cli"),
            }
            .target("user", id)
            .detail("audit_entries_cleared", cleared)
            .detail("sessions_deleted", ended.len());
            let audit_id = app.audit.record(&mut tx, entry).await?;
            tx.commit().await?;
            app.sessions.forget(&ended);
            app.profiles.invalidate(id);
            tracing::info!(
                user_id = %id,
                %audit_id,
                audit_entries_cleared = cleared,
                sessions_deleted = ended.len(),
                "account erased"
            );
            Ok(email_key)
        })
        .await?;
    // Nothing about the address stays behind, in memory either.
    app.backoff.clear(&email_key).await;
    Ok(())
}
