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
