//! Creating, changing and deleting custom roles, each audited in its own transaction.

use super::model::{Permission, RoleName};
use super::store::{self, Role};
use super::{Principal, is_builtin};
use crate::accounts::UserId;
use crate::accounts::cache::INVALIDATION_KIND as PROFILE_KIND;
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::error::AppError;
use crate::http::ClientInfo;
use crate::store::{is_unique_violation, now_micros};

/// Who makes an administrative change: an admin over the API (with whether its session
/// passed a second factor), or an operator with shell access to the database through the
/// CLI (recovery when no admin can log in).
#[derive(Debug, Clone)]
pub enum Actor {
    Admin {
        user: UserId,
        mfa: bool,
        client: ClientInfo,
    },
    Operator,
}

impl Actor {
    pub fn entry(&self, action: Action) -> Entry {
        match self {
            Actor::Admin { user, client, .. } => Entry::new(action).actor(*user).client(client),
            Actor::Operator => Entry::new(action).detail("via", "cli"),
        }
    }

    /// The admin and its session's MFA; `None` for the operator, who holds everything.
    pub fn principal(&self) -> Option<Principal> {
        match self {
            Actor::Admin { user, mfa, .. } => Some(Principal {
                user: *user,
                mfa: *mfa,
            }),
            Actor::Operator => None,
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
    require_mfa: bool,
    actor: Actor,
) -> Result<Role, AppError> {
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        super::ensure_holds(&mut tx, &actor, &permissions).await?;
        match store::insert(
            &mut tx,
            name.as_str(),
            &permissions,
            require_mfa,
            now_micros(),
        )
        .await
        {
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
            .detail("permissions", names(&permissions))
            .detail("require_mfa", require_mfa);
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(Role {
            name: name.as_str().to_string(),
            permissions,
            builtin: false,
            require_mfa,
        })
    })
    .await
}

/// Replaces a custom role's permissions, and sets whether it requires MFA when
/// `require_mfa` is given (else it stays as it is). Holders' admin rights change with their
/// next request.
pub async fn update(
    app: &AppState,
    name: RoleName,
    permissions: Vec<Permission>,
    require_mfa: Option<bool>,
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
        let require_mfa = require_mfa.unwrap_or(before.require_mfa);
        if require_mfa != before.require_mfa {
            // Whoever may switch it may use every permission of the role either way.
            super::ensure_holds(&mut tx, &actor, &before.permissions).await?;
        }
        super::ensure_holds(&mut tx, &actor, &changed).await?;
        store::set_permissions(&mut tx, name.as_str(), &permissions).await?;
        store::set_require_mfa(&mut tx, name.as_str(), require_mfa, now_micros()).await?;
        let entry = actor
            .entry(Action::RoleUpdated)
            .target("role", name.as_str())
            .detail("permissions", names(&permissions))
            .detail("previous_permissions", names(&before.permissions))
            .detail("require_mfa", require_mfa)
            .detail("previous_require_mfa", before.require_mfa);
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(Role {
            name: name.as_str().to_string(),
            permissions,
            builtin: false,
            require_mfa,
        })
    })
    .await
}

/// Makes any role, built-in ones included, require MFA or not. Changing it takes every
/// permission of the role (all of them for `admin`), as deleting it would: turning it off
/// widens what the holders' password-only sessions may do. It applies to admin actions at
/// the holders' next request, and to the `roles` of their access tokens from the next
/// login or refresh.
pub async fn set_require_mfa(
    app: &AppState,
    name: RoleName,
    require_mfa: bool,
    actor: Actor,
) -> Result<Role, AppError> {
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let before = store::find(&mut tx, name.as_str())
            .await?
            .ok_or(AppError::NotFound)?;
        // A built-in role reaches every account (`user`) or everything (`admin`): only a
        // caller holding every permission changes its requirement. A custom role needs what
        // it grants, so `roles:write` alone cannot open an app-only role to password-only
        // sessions or strip `roles` from every password-only token.
        let needed = if before.builtin {
            super::Permission::ALL
        } else {
            &before.permissions[..]
        };
        super::ensure_holds(&mut tx, &actor, needed).await?;
        store::set_require_mfa(&mut tx, name.as_str(), require_mfa, now_micros()).await?;
        let entry = actor
            .entry(Action::RoleChanged)
            .target("role", name.as_str())
            .detail("require_mfa", require_mfa)
            .detail("previous_require_mfa", before.require_mfa);
        let audit_id = app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        tracing::info!(role = name.as_str(), require_mfa, %audit_id, "role MFA requirement set");
        Ok(Role {
            require_mfa,
            ..before
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
