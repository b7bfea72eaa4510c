//! The SQL of an import: one upsert per user, keyed by the case-insensitive email.

use sqlx::{AnyConnection, Row as _};

use super::row::Row;
use crate::accounts::UserId;
use crate::roles;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated {
        /// The existing account's id.
        id: String,
        /// Whether its password hash was replaced (its sessions must end).
        password_replaced: bool,
    },
}

/// Creates the account of `row`, or updates the one with its email: the address as written,
/// name, roles and verified flag. The id and creation time of an existing account stay. A
/// verified account keeps its original verification time.
///
/// The password hash of an existing account is replaced only when the account still has an
/// imported password and the file brings a different hash: a password set in portvakt since
/// (signup, change, reset) is never taken back to an old one, and re-running the same file
/// does not undo the argon2id rehash of a login. Only the SHA-256 of the imported hash string
/// is kept to tell, never the legacy hash once it has been rehashed.
pub async fn upsert(conn: &mut AnyConnection, row: &Row, now: i64) -> Result<Written, sqlx::Error> {
    let new_id = UserId::new().to_string();
    let verified_at = row.email_verified.then_some(now);
    let digest = crate::crypto::token_hash(&row.password_hash);
    let imported: Option<Option<String>> =
        sqlx::query_scalar("SELECT imported_hash_digest FROM users WHERE email_key = $1")
            .bind(row.email.key())
            .fetch_optional(&mut *conn)
            .await?;
    let replace_password = match &imported {
        None => true,
        Some(Some(before)) => *before != digest,
        Some(None) => false,
    };
    let id: String = sqlx::query(
        "INSERT INTO users (id, email, email_key, name, password_hash, email_verified_at, created_at, updated_at, imported_hash_digest) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (email_key) DO UPDATE SET \
           email = excluded.email, name = excluded.name, \
           password_hash = CASE WHEN $10 THEN excluded.password_hash ELSE users.password_hash END, \
           imported_hash_digest = CASE WHEN $10 THEN excluded.imported_hash_digest ELSE users.imported_hash_digest END, \
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
    .bind(&digest)
    .bind(replace_password)
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
        Written::Updated {
            id: id.clone(),
            password_replaced: replace_password,
        }
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

/// Whether writing `row` would take `admin` from the last enabled admin, which no change may
/// do (`user set-role` and the admin API refuse it too). Takes the admin lock (see `roles`)
/// before reading.
pub async fn demotes_last_admin(conn: &mut AnyConnection, row: &Row) -> Result<bool, sqlx::Error> {
    if row.roles.iter().any(|r| r == roles::ADMIN) {
        return Ok(false);
    }
    roles::store::lock_admins(&mut *conn).await?;
    let admin: Option<String> = sqlx::query_scalar(
        "SELECT u.id FROM users u JOIN user_roles r ON r.user_id = u.id WHERE u.email_key = $1 AND r.role = $2 AND u.disabled_at IS NULL",
    )
    .bind(row.email.key())
    .bind(roles::ADMIN)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = admin.as_deref().and_then(UserId::parse) else {
        return Ok(false);
    };
    Ok(roles::enabled_admins_other_than(conn, id).await? == 0)
}

/// The names of every role that exists (built-in and custom).
pub async fn role_names(conn: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM roles")
        .fetch_all(conn)
        .await
}
