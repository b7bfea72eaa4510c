//! Roles held by users. The built-in roles are `admin` (everything) and `user` (own account);
//! every new account gets `user`.

use sqlx::{Any, AnyConnection, Executor};

use crate::accounts::UserId;

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
