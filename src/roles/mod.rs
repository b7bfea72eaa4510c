//! Roles held by users. The built-in roles are `admin` (everything) and `user` (own account);
//! every new account gets `user`.

use sqlx::{Any, AnyConnection, Executor};

use crate::accounts::UserId;
use crate::error::AppError;
use crate::store::Store;

/// Permissions of API.md that admin routes require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    UsersRead,
    UsersWrite,
    AuditRead,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::AuditRead => "audit:read",
        }
    }
}

/// Whether roles grant a permission. `admin` holds every permission; custom roles arrive
/// with the roles API.
pub fn grants(roles: &[String], _permission: Permission) -> bool {
    roles.iter().any(|r| r == ADMIN)
}

/// Lets `user` through if its roles, read now from the database rather than from its
/// token, grant `permission`: a demotion applies to admin actions at once.
pub async fn require(store: &Store, user: UserId, permission: Permission) -> Result<(), AppError> {
    let roles = of_user(store.pool(), user).await?;
    if grants(&roles, permission) {
        Ok(())
    } else {
        tracing::info!(permission = permission.as_str(), "admin action refused");
        Err(AppError::Forbidden)
    }
}

pub const ADMIN: &str = "admin";
pub const USER: &str = "user";

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

pub async fn assign(conn: &mut AnyConnection, user: UserId, role: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
        .bind(user.to_string())
        .bind(role)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many enabled (not disabled) admins there are besides `user`. On PostgreSQL it locks
/// every enabled admin's account row until the transaction ends (a no-op UPDATE, since SQLite
/// has no `SELECT .. FOR UPDATE`; there the write transaction already holds the database), so
/// two transactions that each remove a different admin take turns and the second sees the
/// first: no race leaves zero admins. Call it inside the write transaction that removes,
/// disables or demotes `user`, before the change.
pub async fn enabled_admins_other_than(
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<usize, sqlx::Error> {
    let admins: Vec<String> = sqlx::query_scalar(
        "UPDATE users SET updated_at = updated_at WHERE disabled_at IS NULL AND id IN (SELECT user_id FROM user_roles WHERE role = $1) RETURNING id",
    )
    .bind(ADMIN)
    .fetch_all(conn)
    .await?;
    let user = user.to_string();
    Ok(admins.iter().filter(|id| **id != user).count())
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
