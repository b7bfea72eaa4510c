//! Creating, changing and deleting custom roles, each audited in its own transaction.

use super::is_builtin;
use super::model::{Permission, RoleName};
use super::store::{self, Role};
use crate::accounts::UserId;
use crate::accounts::cache::INVALIDATION_KIND as PROFILE_KIND;
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::error::AppError;
use crate::http::ClientInfo;
use crate::store::{is_unique_violation, now_micros};

/// Who made an admin change, for its audit entry.
#[derive(Debug, Clone)]
/// Who makes an administrative change: an admin over the API, or an operator with shell
/// access to the database through the CLI (recovery when no admin can log in).
pub enum Actor {
    Admin { user: UserId, client: ClientInfo },
    Operator,
}

impl Actor {
    pub fn entry(&self, action: Action) -> Entry {
        match self {
            Actor::Admin { user, client } => Entry::new(action).actor(*user).client(client),
            Actor::Operator => Entry::new(action).detail("via", "cli"),
        }
    }
}

fn builtin(name: &str) -> AppError {
    AppError::Conflict {
        slug: "builtin-role",
        detail: format!("The built-in role `{name}` cannot be changed or deleted."),
    }
}

fn names(permissions: &[Permission]) -> Vec<&'static str> {
    permissions.iter().map(|p| p.as_str()).collect()
}

pub async fn list(app: &AppState) -> Result<Vec<Role>, AppError> {
    Ok(store::list(app.store.pool()).await?)
}

/// Creates a custom role; a taken name (built-in ones included) is 409 `role-exists`.
pub async fn create(
    app: &AppState,
    name: RoleName,
    permissions: Vec<Permission>,
    actor: Actor,
) -> Result<Role, AppError> {
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        super::ensure_holds(&mut tx, &actor, &permissions).await?;
        match store::insert(&mut tx, name.as_str(), &permissions, now_micros()).await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(AppError::Conflict {
                    slug: "role-exists",
                    detail: format!("A role named `{}` exists.", name.as_str()),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let entry = actor
            .entry(Action::RoleCreated)
            .target("role", name.as_str())
            .detail("permissions", names(&permissions));
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(Role {
            name: name.as_str().to_string(),
            permissions,
            builtin: false,
        })
    })
    .await
}

/// Replaces a custom role's permissions. Holders' admin rights change with their next request.
pub async fn update(
    app: &AppState,
    name: RoleName,
    permissions: Vec<Permission>,
    actor: Actor,
) -> Result<Role, AppError> {
    if is_builtin(name.as_str()) {
        return Err(builtin(name.as_str()));
    }
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let before = store::find(&mut tx, name.as_str())
            .await?
            .ok_or(AppError::NotFound)?;
        let changed: Vec<Permission> = Permission::ALL
            .iter()
            .copied()
            .filter(|p| permissions.contains(p) != before.permissions.contains(p))
            .collect();
        super::ensure_holds(&mut tx, &actor, &changed).await?;
        store::set_permissions(&mut tx, name.as_str(), &permissions).await?;
        let entry = actor
            .entry(Action::RoleUpdated)
            .target("role", name.as_str())
            .detail("permissions", names(&permissions))
            .detail("previous_permissions", names(&before.permissions));
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(Role {
            name: name.as_str().to_string(),
            permissions,
            builtin: false,
        })
    })
    .await
}

/// Deletes a custom role and takes it from everyone who held it.
pub async fn delete(app: &AppState, name: RoleName, actor: Actor) -> Result<(), AppError> {
    if is_builtin(name.as_str()) {
        return Err(builtin(name.as_str()));
    }
    let holders = app
        .to_completion(move |app| async move {
            let mut tx = app.store.begin_write().await?;
            let role = store::find(&mut tx, name.as_str())
                .await?
                .ok_or(AppError::NotFound)?;
            super::ensure_holds(&mut tx, &actor, &role.permissions).await?;
            let holders = store::holders(&mut tx, name.as_str()).await?;
            if !store::delete(&mut tx, name.as_str()).await? {
                return Err(AppError::NotFound);
            }
            // Their profiles list their roles.
            app.store.announce(&mut tx, PROFILE_KIND, &holders).await?;
            let entry = actor
                .entry(Action::RoleDeleted)
                .target("role", name.as_str())
                .detail("holders", holders.len());
            app.audit.record(&mut tx, entry).await?;
            tx.commit().await?;
            app.profiles.invalidate_ids(&holders);
            Ok(holders)
        })
        .await?;
    tracing::info!(holders = holders.len(), "role deleted");
    Ok(())
}
