//! Administrators' changes to other people's accounts: profile fields, disabling, role
//! assignment, ending every session. Each change is one transaction with its audit entries,
//! and none may leave the service without an enabled admin.

use sqlx::AnyConnection;
use uuid::Uuid;

use super::cache::INVALIDATION_KIND;
use super::directory::{self, AdminUserView};
use super::model::{Email, Name, User, UserId};
use super::store;
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::auth::sessions;
use crate::error::{AppError, FieldError};
use crate::roles::service::Actor;
use crate::roles::{self, ADMIN, RoleName};
use crate::store::{is_unique_violation, now_micros};

/// What a PATCH asks to change; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct Changes {
    pub name: Option<Name>,
    pub email: Option<Email>,
    pub disabled: Option<bool>,
    pub roles: Option<Vec<RoleName>>,
}

fn last_admin() -> AppError {
    AppError::Conflict {
        slug: "last-admin",
        detail: "This change would leave no enabled admin.".into(),
    }
}

/// Fails with 409 `last-admin` when the transaction, as it stands, leaves no enabled admin
/// although `was_enabled_admin` says the target was one. Call after
/// [`roles::store::lock_admins`] and the changes.
pub async fn ensure_an_admin_remains(
    conn: &mut AnyConnection,
    was_enabled_admin: bool,
) -> Result<(), AppError> {
    if was_enabled_admin && roles::store::enabled_admins(conn).await? == 0 {
        return Err(last_admin());
    }
    Ok(())
}

/// Looks up one account for the admin API.
pub async fn view(app: &AppState, id: UserId) -> Result<AdminUserView, AppError> {
    let mut conn = app.store.pool().acquire().await?;
    directory::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// Applies `changes` to account `id` as `actor`.
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn update(
    app: &AppState,
    id: UserId,
    changes: Changes,
    actor: Actor,
) -> Result<AdminUserView, AppError> {
    let revoked = app
        .to_completion(move |app| async move {
            let mut tx = app.store.begin_write().await?;
            if changes.disabled.is_some() || changes.roles.is_some() {
                roles::store::lock_admins(&mut tx).await?;
            }
            let user = store::find_by_id(&mut *tx, id)
                .await?
                .ok_or(AppError::NotFound)?;
            if let Some(admin) = actor.principal() {
                roles::ensure_covers(&mut tx, admin, id).await?;
            }
            let held = roles::of_user(&mut *tx, id).await?;
            let was_enabled_admin = user.disabled_at.is_none() && held.iter().any(|r| r == ADMIN);
            let now = now_micros();
            let mut entries = Vec::new();

            let mut fields = Vec::new();
            if let Some(name) = &changes.name
                && name.as_deref() != user.name.as_deref()
            {
                store::set_name(&mut tx, id, name.as_deref(), now).await?;
                fields.push("name");
            }
            if let Some(email) = &changes.email
                && email.as_str() != user.email
            {
                set_email(&mut tx, &user, email, now).await?;
                fields.push("email");
            }
            if !fields.is_empty() {
                entries.push(actor.entry(Action::UserUpdated).detail("fields", fields));
            }

            let mut revoked = Vec::new();
            match changes.disabled {
                Some(true) if user.disabled_at.is_none() => {
                    store::set_disabled(&mut tx, id, Some(now), now).await?;
                    revoked =
                        sessions::revoke_all_of_user(&app.store, &mut tx, id, None, "disabled")
                            .await?;
                    entries.push(
                        actor
                            .entry(Action::UserDisabled)
                            .detail("revoked_sessions", revoked.len()),
                    );
                }
                Some(false) if user.disabled_at.is_some() => {
                    store::set_disabled(&mut tx, id, None, now).await?;
                    entries.push(actor.entry(Action::UserEnabled));
                }
                _ => {}
            }

            if let Some(wanted) = &changes.roles
                && let Some(entry) = set_roles(&mut tx, &actor, id, &held, wanted).await?
            {
                entries.push(entry);
            }

            ensure_an_admin_remains(&mut tx, was_enabled_admin).await?;
            app.store
                .announce(&mut tx, INVALIDATION_KIND, &[id.to_string()])
                .await?;
            for entry in entries {
                app.audit.record(&mut tx, entry.target("user", id)).await?;
            }
            tx.commit().await?;
            app.sessions.forget(&revoked);
            app.profiles.invalidate(id);
            Ok(revoked)
        })
        .await?;
    if !revoked.is_empty() {
        tracing::info!(revoked_sessions = revoked.len(), "account disabled");
    }
    view(app, id).await
}

/// Changes the address; a new identity (not only a new spelling) is unverified.
async fn set_email(
    conn: &mut AnyConnection,
    user: &User,
    email: &Email,
    now: i64,
) -> Result<(), AppError> {
    let same_identity = email.key() == user.email_key();
    match store::set_email(conn, user.id, email, same_identity, now).await {
        Ok(()) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(AppError::Conflict {
            slug: "email-taken",
            detail: "An account with this email already exists.".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Makes the user's roles exactly `wanted`. Returns the audit entry, if anything changed.
async fn set_roles(
    conn: &mut AnyConnection,
    actor: &Actor,
    id: UserId,
    held: &[String],
    wanted: &[RoleName],
) -> Result<Option<Entry>, AppError> {
    let mut wanted: Vec<String> = wanted.iter().map(|r| r.as_str().to_string()).collect();
    wanted.sort();
    wanted.dedup();
    let existing = roles::store::existing(conn, &wanted).await?;
    if let Some(unknown) = wanted.iter().find(|w| !existing.contains(w)) {
        return Err(AppError::Invalid(vec![FieldError::new(
            "roles",
            format!("has an unknown role `{unknown}`"),
        )]));
    }
    let added: Vec<String> = wanted
        .iter()
        .filter(|w| !held.contains(w))
        .cloned()
        .collect();
    let removed: Vec<String> = held
        .iter()
        .filter(|h| !wanted.contains(h))
        .cloned()
        .collect();
    if added.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    let mut moved = Vec::new();
    for role in added.iter().chain(&removed) {
        if let Some(r) = roles::store::find(conn, role).await? {
            moved.extend(r.permissions);
        }
    }
    roles::ensure_holds(conn, actor, &moved).await?;
    for role in &added {
        roles::assign(conn, id, role).await?;
    }
    for role in &removed {
        roles::store::unassign(conn, id, role).await?;
    }
    Ok(Some(
        actor
            .entry(Action::RoleChanged)
            .detail("added", added)
            .detail("removed", removed)
            .detail("roles", wanted),
    ))
}

/// Ends every live session of account `id`.
pub async fn revoke_sessions(app: &AppState, id: UserId, actor: Actor) -> Result<(), AppError> {
    let revoked: Vec<Uuid> = app
        .to_completion(move |app| async move {
            let mut tx = app.store.begin_write().await?;
            if store::find_by_id(&mut *tx, id).await?.is_none() {
                return Err(AppError::NotFound);
            }
            if let Some(admin) = actor.principal() {
                roles::ensure_covers(&mut tx, admin, id).await?;
            }
            let revoked =
                sessions::revoke_all_of_user(&app.store, &mut tx, id, None, "revoked_by_admin")
                    .await?;
            let entry = actor
                .entry(Action::SessionsRevoked)
                .target("user", id)
                .detail("revoked_sessions", revoked.len());
            app.audit.record(&mut tx, entry).await?;
            tx.commit().await?;
            app.sessions.forget(&revoked);
            Ok(revoked)
        })
        .await?;
    tracing::info!(user_id = %id, revoked_sessions = revoked.len(), "sessions revoked by an admin");
    Ok(())
}
