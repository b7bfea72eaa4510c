//! Account logic: signup, reading and renaming the profile, changing the password.

use axum::body::Bytes;
use secrecy::{ExposeSecret, SecretString};

use super::cache::INVALIDATION_KIND;
use super::model::{Email, Name, User, UserId, UserView};
use super::store::{self, NewUserRow};
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::auth::{Caller, sessions};
use crate::crypto::password::HashError;
use crate::error::{AppError, FieldError};
use crate::http::ClientInfo;
use crate::roles;
use crate::store::{is_unique_violation, now_micros};

impl From<HashError> for AppError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Overloaded => AppError::Overloaded,
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Signup input after the handler has parsed it.
pub struct NewAccount {
    pub email: Email,
    pub name: Name,
    pub password: SecretString,
}

/// Checks a new password against the policy on the hashing pool (zxcvbn is CPU work).
/// `field` names the request field in the error.
pub async fn check_new_password(
    app: &AppState,
    field: &'static str,
    password: &SecretString,
    context: Vec<String>,
) -> Result<(), AppError> {
    let policy = app.policy;
    let password = password.clone();
    let verdict = app
        .hasher
        .run(move || {
            let context: Vec<&str> = context.iter().map(String::as_str).collect();
            policy.check(password.expose_secret(), &context)
        })
        .await?;
    verdict.map_err(|message| AppError::Invalid(vec![FieldError::new(field, message)]))
}

/// Creates an account with the `user` role (API signup).
pub async fn signup(
    app: &AppState,
    account: NewAccount,
    client: &ClientInfo,
) -> Result<User, AppError> {
    create(app, account, &[roles::USER], Some(client)).await
}

/// Creates an account with the given roles. The password must already satisfy the policy.
/// `client` is who signed up over HTTP; `None` is the operator at the command line, which
/// the audit log records as the system.
#[tracing::instrument(skip_all)]
pub async fn create(
    app: &AppState,
    account: NewAccount,
    roles: &[&str],
    client: Option<&ClientInfo>,
) -> Result<User, AppError> {
    let hash = app.hasher.hash(account.password).await?;
    let id = UserId::new();
    let now = now_micros();
    let mut tx = app.store.begin_write().await?;
    let row = NewUserRow {
        id,
        email: account.email.as_str(),
        email_key: account.email.key(),
        name: account.name.as_deref(),
        password_hash: &hash,
        now,
    };
    match store::insert(&mut tx, &row).await {
        Ok(()) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(AppError::Conflict {
                slug: "email-taken",
                detail: "An account with this email already exists.".into(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    for role in roles {
        roles::assign(&mut tx, id, role).await?;
    }
    let entry = match client {
        Some(client) => Entry::new(Action::Signup).actor(id).client(client),
        None => Entry::new(Action::Signup).detail("via", "cli"),
    };
    let audit_id = app
        .audit
        .record(
            &mut tx,
            entry.target("user", id).detail("roles", roles.to_vec()),
        )
        .await?;
    if client.is_some() && app.config.require_verified_email {
        // Such an account cannot log in to ask for the link: it comes with the signup.
        if let Some(user) = store::find_by_id(&mut *tx, id).await? {
            crate::auth::email_flows::send_verification(app, &mut tx, &user).await?;
        }
    }
    tx.commit().await?;
    tracing::info!(user_id = %id, %audit_id, "account created");
    load(app, id).await
}

/// The profile as the API shows it (JSON), from the cache when fresh.
pub async fn profile(app: &AppState, id: UserId) -> Result<Bytes, AppError> {
    if let Some(json) = app.profiles.get(id) {
        return Ok(json);
    }
    let epoch = app.profiles.epoch();
    let json = Bytes::from(
        serde_json::to_vec(&UserView::from(&load(app, id).await?))
            .map_err(|e| AppError::Internal(e.into()))?,
    );
    app.profiles.put(id, json.clone(), epoch);
    Ok(json)
}

/// The account with its roles, from the database.
pub async fn load(app: &AppState, id: UserId) -> Result<User, AppError> {
    let mut user = store::find_by_id(app.store.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    user.roles = roles::of_user(app.store.pool(), id).await?;
    Ok(user)
}

/// Sets the caller's display name, audited as `user_updated` (API.md) naming the field, never
/// the name itself: that is personal data, and the account row holds it.
pub async fn rename(
    app: &AppState,
    id: UserId,
    name: Name,
    client: ClientInfo,
) -> Result<User, AppError> {
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        if !store::set_name(&mut tx, id, name.as_deref(), now_micros()).await? {
            return Err(AppError::NotFound);
        }
        changed(&app, &mut tx, id).await?;
        let entry = Entry::by_owner(Action::UserUpdated, id, &client)
            .detail("fields", serde_json::json!(["name"]));
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        app.profiles.invalidate(id);
        Ok(())
    })
    .await?;
    load(app, id).await
}

/// Tells other instances that the user's profile changed (delivered at commit).
async fn changed(
    app: &AppState,
    conn: &mut sqlx::AnyConnection,
    id: UserId,
) -> Result<(), sqlx::Error> {
    app.store
        .announce(conn, INVALIDATION_KIND, &[id.to_string()])
        .await
}

/// Changes the caller's password after re-checking the current one, and ends every other
/// session of the account in the same transaction.
#[tracing::instrument(skip_all)]
pub async fn change_password(
    app: &AppState,
    caller: &Caller,
    current: SecretString,
    new: SecretString,
    client: ClientInfo,
) -> Result<(), AppError> {
    let user = store::find_by_id(app.store.pool(), caller.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut context = vec![user.email.clone()];
    context.extend(user.name.clone());
    check_new_password(app, "new_password", &new, context).await?;
    reauthenticate(app, &user, current, Action::PasswordChangeFailed, &client).await?;
    let hash = app.hasher.hash(new).await?;
    let keep = caller.session_id;
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let now = now_micros();
        if !store::replace_password_hash(&mut tx, user.id, &user.password_hash, &hash, now).await? {
            // Another change landed since we verified: the password given is no longer current.
            return Err(AppError::WrongPassword);
        }
        let revoked = sessions::revoke_all_of_user(
            &app.store,
            &mut tx,
            user.id,
            Some(&keep),
            "password_changed",
        )
        .await?;
        crate::auth::email_flows::password_changed_notice(&app, &mut tx, &user, "changed by you")
            .await?;
        changed(&app, &mut tx, user.id).await?;
        let entry = Entry::by_owner(Action::PasswordChanged, user.id, &client)
            .detail("revoked_sessions", revoked.len());
        let audit_id = app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        app.sessions.forget(&revoked);
        app.profiles.invalidate(user.id);
        tracing::info!(revoked_sessions = revoked.len(), %audit_id, "password changed");
        Ok(())
    })
    .await
}

/// Sets a new password without the current one (an operator's recovery tool: `actor` is the
/// admin, or the CLI when `None`), ends every session of the account, and clears a lockout,
/// all in one transaction. The new password must pass the same policy as any other.
#[tracing::instrument(skip_all)]
pub async fn reset_password(
    app: &AppState,
    id: UserId,
    new: SecretString,
    actor: Option<UserId>,
) -> Result<usize, AppError> {
    let user = store::find_by_id(app.store.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut context = vec![user.email.clone()];
    context.extend(user.name.clone());
    check_new_password(app, "password", &new, context).await?;
    let hash = app.hasher.hash(new).await?;
    let email_key = user.email_key();
    let announced = crate::auth::backoff::announced(&email_key);
    let revoked = app
        .to_completion(move |app| async move {
            let mut tx = app.store.begin_write().await?;
            let now = now_micros();
            if !store::replace_password_hash(&mut tx, user.id, &user.password_hash, &hash, now)
                .await?
            {
                return Err(AppError::Conflict {
                    slug: "conflict",
                    detail: "The password changed meanwhile; try again.".into(),
                });
            }
            store::unlock(&mut tx, user.id, now).await?;
            let revoked =
                sessions::revoke_all_of_user(&app.store, &mut tx, user.id, None, "password_reset")
                    .await?;
            crate::auth::email_flows::password_changed_notice(
                &app,
                &mut tx,
                &user,
                "reset by an administrator",
            )
            .await?;
            changed(&app, &mut tx, user.id).await?;
            app.store
                .announce(
                    &mut tx,
                    crate::auth::backoff::INVALIDATION_KIND,
                    &[announced],
                )
                .await?;
            let entry = Entry::new(Action::PasswordReset)
                .target("user", user.id)
                .detail("revoked_sessions", revoked.len());
            let entry = match actor {
                Some(admin) => entry.actor(admin),
                None => entry.detail("via", "cli"),
            };
            app.audit.record(&mut tx, entry).await?;
            tx.commit().await?;
            app.sessions.forget(&revoked);
            app.profiles.invalidate(user.id);
            Ok(revoked.len())
        })
        .await?;
    app.backoff.clear(&email_key).await;
    tracing::info!(user_id = %id, revoked_sessions = revoked, "password reset");
    Ok(revoked)
}

/// Re-checks the owner's password before a sensitive action on its own account. A wrong one
/// is a password guess like a failed login (by whoever holds the token): it counts towards
/// the same backoff and lockout, is audited as `failed`, and is a 403 `wrong-password`.
pub async fn reauthenticate(
    app: &AppState,
    user: &User,
    password: SecretString,
    failed: Action,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let attempt = app
        .backoff
        .admit_or_refuse(
            &user.email_key(),
            "Too many wrong passwords for this account; see Retry-After.",
        )
        .await?;
    let verified = app
        .hasher
        .verify(password, user.password_hash.clone())
        .await?;
    if !verified.matches {
        attempt.failed().await;
        let entry = Entry::new(failed)
            .actor(user.id)
            .target("user", user.id)
            .failure()
            .client(client);
        let (_, locked) = record_wrong_password(app, Some(user.id), entry, client).await?;
        tracing::info!(ip = %client.ip, locked, action = failed.as_str(), "refused: wrong password");
        return Err(AppError::WrongPassword);
    }
    attempt.succeeded().await;
    Ok(())
}

/// Lifts a lockout (an admin's decision: `actor`, or the CLI when `None`) and forgets this
/// instance's backoff for the email. Returns false when the account was not locked;
/// `NotFound` when there is no such account.
pub async fn unlock(
    app: &AppState,
    id: UserId,
    actor: Option<UserId>,
    client: Option<ClientInfo>,
) -> Result<bool, AppError> {
    let user = store::find_by_id(app.store.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    let email_key = user.email_key();
    let announced = crate::auth::backoff::announced(&email_key);
    let unlocked = app
        .to_completion(move |app| async move {
            let mut tx = app.store.begin_write().await?;
            let unlocked = store::unlock(&mut tx, id, now_micros()).await?;
            // Every instance (with PostgreSQL) forgets the email's backoff, so the owner can
            // log in at once wherever the next request lands.
            app.store
                .announce(
                    &mut tx,
                    crate::auth::backoff::INVALIDATION_KIND,
                    &[announced],
                )
                .await?;
            if unlocked {
                let mut entry = Entry::new(Action::Unlock).target("user", id);
                entry = match (actor, &client) {
                    (Some(admin), Some(client)) => entry.actor(admin).client(client),
                    (Some(admin), None) => entry.actor(admin),
                    (None, _) => entry.detail("via", "cli"),
                };
                app.audit.record(&mut tx, entry).await?;
            }
            tx.commit().await?;
            Ok(unlocked)
        })
        .await?;
    app.backoff.clear(&email_key).await;
    if unlocked {
        tracing::info!(user_id = %id, "account unlocked");
    }
    Ok(unlocked)
}

/// The account with this email, if any.
pub async fn find_by_email(app: &AppState, email: &Email) -> Result<Option<User>, AppError> {
    Ok(store::find_by_email_key(app.store.pool(), email.key()).await?)
}

/// Records a password guess that failed, in one transaction written even if the client hangs
/// up (a guesser must not be able to skip the record): `entry` goes to the audit log and, for
/// an existing account (`counted`), the failure counts towards its lockout, adding a
/// `lockout` entry when this one locks it. Returns the entry's id and whether it locked.
pub async fn record_wrong_password(
    app: &AppState,
    counted: Option<UserId>,
    entry: Entry,
    client: &ClientInfo,
) -> Result<(uuid::Uuid, bool), AppError> {
    let threshold = app.config.lockout_threshold;
    let lockout = counted.map(|id| {
        Entry::new(Action::Lockout)
            .target("user", id)
            .client(client)
            .detail("failed_logins", threshold)
    });
    let (audit_id, locked) = app
        .to_completion(move |app| async move {
            let mut tx = app.store.begin_write().await?;
            let locked = match counted {
                Some(id) => {
                    store::record_failed_login(&mut tx, id, threshold, now_micros()).await?
                }
                None => false,
            };
            let audit_id = app.audit.record(&mut tx, entry).await?;
            if let (true, Some(lockout)) = (locked, lockout) {
                app.audit.record(&mut tx, lockout).await?;
            }
            tx.commit().await?;
            Ok((audit_id, locked))
        })
        .await?;
    if let (true, Some(id)) = (locked, counted) {
        tracing::warn!(user_id = %id, threshold, "account locked after repeated failed passwords");
    }
    Ok((audit_id, locked))
}
