//! The SQL of an import: one upsert per user, keyed by the case-insensitive email.

use sqlx::{AnyConnection, Row as _};

use super::row::Row;
use crate::accounts::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Created,
    /// The existing account's id.
    Updated(String),
}

/// Creates the account of `row`, or updates the one with its email: the address as written,
/// name, password hash, roles and verified flag. The id and creation time of an existing
/// account stay. A verified account keeps its original verification time.
pub async fn upsert(conn: &mut AnyConnection, row: &Row, now: i64) -> Result<Written, sqlx::Error> {
    let new_id = UserId::new().to_string();
    let verified_at = row.email_verified.then_some(now);
    let id: String = sqlx::query(
        "INSERT INTO users (id, email, email_key, name, password_hash, email_verified_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (email_key) DO UPDATE SET \
           email = excluded.email, name = excluded.name, password_hash = excluded.password_hash, \
           email_verified_at = CASE WHEN excluded.email_verified_at IS NULL THEN NULL \
             ELSE COALESCE(users.email_verified_at, excluded.email_verified_at) END, \
           updated_at = excluded.updated_at \
         RETURNING id",
    )
    .bind(&new_id)
    .bind(row.email.as_str())
    .bind(row.email.key())
    .bind(row.name.as_deref())
    .bind(&row.password_hash)
    .bind(verified_at)
    .bind(row.created_at.unwrap_or(now))
    .bind(now)
    .fetch_one(&mut *conn)
    .await?
    .try_get("id")?;
    let written = if id == new_id {
        Written::Created
    } else {
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
            .bind(&id)
            .execute(&mut *conn)
            .await?;
        Written::Updated(id.clone())
    };
    for role in &row.roles {
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(&id)
            .bind(role)
            .execute(&mut *conn)
            .await?;
    }
    Ok(written)
}

/// Whether writing `row` would take `admin` from the last enabled account holding it: the
/// rule every other change keeps (API.md). Takes the admins' lock
/// ([`crate::roles::store::lock_admins`]) when the row would demote an admin.
pub async fn demotes_last_admin(conn: &mut AnyConnection, row: &Row) -> Result<bool, sqlx::Error> {
    if row.roles.iter().any(|r| r == crate::roles::ADMIN) {
        return Ok(false);
    }
    let admin: Option<String> = sqlx::query_scalar(
        "SELECT u.id FROM users u JOIN user_roles r ON r.user_id = u.id \
         WHERE u.email_key = $1 AND r.role = $2 AND u.disabled_at IS NULL",
    )
    .bind(row.email.key())
    .bind(crate::roles::ADMIN)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = admin.as_deref().and_then(UserId::parse) else {
        return Ok(false);
    };
    Ok(crate::roles::enabled_admins_other_than(conn, id).await? == 0)
}

/// The names of every role that exists (built-in and custom).
pub async fn role_names(conn: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM roles")
        .fetch_all(conn)
        .await
}
