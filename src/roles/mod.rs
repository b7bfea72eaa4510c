//! Roles and permissions, and the one authorisation check every admin route makes.
//!
//! The built-in roles are `admin` (every permission) and `user` (none; every new account gets
//! it). Custom roles hold a set of API.md's permissions. Admin routes never trust the roles in
//! an access token: [`require`] reads them from the database, so a removed role or permission
//! applies to the very next admin request.

pub mod model;
pub mod service;
pub mod store;

use std::collections::HashMap;

use sqlx::{Any, AnyConnection, Executor};

use crate::accounts::UserId;
use crate::error::AppError;
use crate::store::Store;

pub use model::{Permission, RoleName};
pub use store::{Held, Role};

pub const ADMIN: &str = "admin";
pub const USER: &str = "user";

/// Whether a role is one of the built-in ones, which cannot be changed or deleted.
pub fn is_builtin(name: &str) -> bool {
    name == ADMIN || name == USER
}

/// Who asks for a permission: an account, and whether its session passed a second factor.
/// A role that requires MFA gives nothing to a session that did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub mfa: bool,
}

/// The roles of `held` that a session with (or without) MFA may use.
pub fn usable(held: &[Held], mfa: bool) -> impl Iterator<Item = &Held> + Clone {
    held.iter().filter(move |h| mfa || !h.require_mfa)
}

/// Whether the roles held grant `permission`, ignoring whether they require MFA. `admin`
/// holds every permission whatever is stored for it.
pub fn grants<'a>(held: impl IntoIterator<Item = &'a Held>, permission: Permission) -> bool {
    held.into_iter()
        .any(|h| h.name == ADMIN || h.permissions.contains(&permission))
}

/// Every permission the roles held grant (all of them with `admin`).
pub fn granted<'a>(held: impl IntoIterator<Item = &'a Held> + Clone) -> Vec<Permission> {
    Permission::ALL
        .iter()
        .copied()
        .filter(|p| grants(held.clone(), *p))
        .collect()
}

/// Fails with 403 unless `actor` holds every one of `permissions` now (read in the caller's
/// write transaction), through roles its session may use. Nobody hands out or takes away a
/// permission they do not hold: else `roles:write` could widen its own role, and
/// `users:write` could assign `admin`, and either would be every permission. The operator at
/// the CLI holds everything.
pub async fn ensure_holds(
    conn: &mut AnyConnection,
    actor: &service::Actor,
    permissions: &[Permission],
) -> Result<(), AppError> {
    match actor.principal() {
        Some(admin) => principal_holds(conn, admin, permissions).await,
        None => Ok(()),
    }
}

/// Fails with 403 unless `admin` holds every permission account `target` holds: a holder of
/// `users:write` cannot edit, disable, sign out or erase an account more powerful than its
/// own (an admin's), which would be a takeover or a lockout of those above it. The target's
/// roles count whether or not they require MFA; the admin's only as its session may use them.
pub async fn ensure_covers(
    conn: &mut AnyConnection,
    admin: Principal,
    target: UserId,
) -> Result<(), AppError> {
    let theirs = granted(&store::grants_of_user(&mut *conn, target).await?);
    principal_holds(conn, admin, &theirs).await
}

async fn principal_holds(
    conn: &mut AnyConnection,
    who: Principal,
    permissions: &[Permission],
) -> Result<(), AppError> {
    let held = store::grants_of_user(&mut *conn, who.user).await?;
    let usable_now = granted(usable(&held, who.mfa));
    if let Some(missing) = permissions.iter().find(|p| !usable_now.contains(p)) {
        tracing::info!(
            permission = missing.as_str(),
            "refused to grant or take away a permission the caller lacks"
        );
        return Err(refusal(&held, *missing));
    }
    Ok(())
}

/// The 403 for a permission a session lacks: `mfa-required` when one of the account's roles
/// would grant it to a session with MFA, so that the user knows what to do.
fn refusal(held: &[Held], permission: Permission) -> AppError {
    if grants(held, permission) {
        AppError::Refused {
            slug: "mfa-required",
            detail: "A role that grants this requires multi-factor authentication: enable MFA and log in again with the second factor.",
        }
    } else {
        AppError::Forbidden
    }
}

/// Lets `who` through if its roles, read now from the database rather than from its token,
/// grant `permission` to its session: a demotion, or a role starting to require MFA, applies
/// to admin actions at once.
pub async fn require(
    store: &Store,
    who: Principal,
    permission: Permission,
) -> Result<(), AppError> {
    let held = store::grants_of_user(store.pool(), who.user).await?;
    if grants(usable(&held, who.mfa), permission) {
        Ok(())
    } else {
        tracing::info!(
            permission = permission.as_str(),
            mfa = who.mfa,
            "admin action refused"
        );
        Err(refusal(&held, permission))
    }
}

/// The role names a session may use, sorted: what its access tokens carry in `roles`. A role
/// that requires MFA is left out for a session without it, so that applications reading the
/// token's roles apply the rule too.
pub async fn for_session<'c, E: Executor<'c, Database = Any>>(
    db: E,
    user: UserId,
    mfa: bool,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT ur.role, r.mfa_required_at FROM user_roles ur JOIN roles r ON r.name = ur.role WHERE ur.user_id = $1 ORDER BY ur.role",
    )
    .bind(user.to_string())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, required)| mfa || required.is_none())
        .map(|(role, _)| role)
        .collect())
}

/// The user's role names, sorted.
pub async fn of_user<'c, E: Executor<'c, Database = Any>>(
    db: E,
    user: UserId,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
        .bind(user.to_string())
        .fetch_all(db)
        .await
}

/// The role names of each of the accounts `ids` (as stored), sorted; one without any is absent.
pub async fn of_users<'c, E: Executor<'c, Database = Any>>(
    db: E,
    ids: &[String],
) -> Result<HashMap<String, Vec<String>>, sqlx::Error> {
    let mut held: HashMap<String, Vec<String>> = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(held);
    }
    let list = crate::store::placeholders(ids.len());
    let sql = format!(
        "SELECT user_id, role FROM user_roles WHERE user_id IN ({list}) ORDER BY user_id, role"
    );
    let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id);
    }
    for (user, role) in query.fetch_all(db).await? {
        held.entry(user).or_default().push(role);
    }
    Ok(held)
}

pub async fn assign(conn: &mut AnyConnection, user: UserId, role: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
        .bind(user.to_string())
        .bind(role)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many enabled (not disabled) admins there are besides `user`, under the one lock that
/// serialises every change that could leave no admin ([`store::lock_admins`]: erasures,
/// disablings and demotions all take it first), so two of them take turns and the second
/// counts what the first committed. Call it inside the write transaction, before the change.
pub async fn enabled_admins_other_than(
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<usize, sqlx::Error> {
    store::lock_admins(&mut *conn).await?;
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users u JOIN user_roles r ON r.user_id = u.id WHERE r.role = $1 AND u.disabled_at IS NULL AND u.id <> $2",
    )
    .bind(ADMIN)
    .bind(user.to_string())
    .fetch_one(conn)
    .await?;
    Ok(usize::try_from(others).unwrap_or(0))
}

/// Whether `user`'s account is enabled and holds the `admin` role.
pub async fn is_enabled_admin(conn: &mut AnyConnection, user: UserId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM users u JOIN user_roles r ON r.user_id = u.id WHERE u.id = $1 AND r.role = $2 AND u.disabled_at IS NULL",
    )
    .bind(user.to_string())
    .bind(ADMIN)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Takes every role from `user` (its account is being erased).
pub async fn remove_all(conn: &mut AnyConnection, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(user.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(name: &str, permissions: &[Permission], require_mfa: bool) -> Held {
        Held {
            name: name.to_string(),
            permissions: permissions.to_vec(),
            require_mfa,
        }
    }

    #[test]
    fn admin_holds_every_permission_and_user_none() {
        let admin = [held(ADMIN, &[], false)];
        let user = [held(USER, &[], false)];
        for p in Permission::ALL {
            assert!(grants(&admin, *p), "{p:?}");
            assert!(!grants(&user, *p), "{p:?}");
        }
        assert!(!grants(&[], Permission::UsersRead));
    }

    #[test]
    fn a_custom_role_grants_exactly_its_permissions() {
        let mine = [
            held(USER, &[], false),
            held("support", &[Permission::UsersRead], false),
        ];
        assert!(grants(&mine, Permission::UsersRead));
        assert!(!grants(&mine, Permission::UsersWrite));
    }

    #[test]
    fn a_role_requiring_mfa_gives_nothing_to_a_session_without_it() {
        let mine = [
            held(ADMIN, &[], true),
            held("support", &[Permission::UsersRead], false),
        ];
        assert!(grants(usable(&mine, false), Permission::UsersRead));
        assert!(!grants(usable(&mine, false), Permission::UsersWrite));
        assert!(grants(usable(&mine, true), Permission::UsersWrite));
        assert!(matches!(
            refusal(&mine, Permission::UsersWrite),
            AppError::Refused {
                slug: "mfa-required",
                ..
            }
        ));
        let plain = [held(USER, &[], false)];
        assert!(matches!(
            refusal(&plain, Permission::UsersWrite),
            AppError::Forbidden
        ));
    }
}
