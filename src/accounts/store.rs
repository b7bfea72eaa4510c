//! SQL over the `users` table.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::model::{User, UserId};

const USER_COLUMNS: &str = concat!(
    "id, email, name, password_hash, email_verified_at, disabled_at, locked_at, created_at, updated_at, ",
    crate::mfa_enabled_column!()
);

/// Whether the account in the row (`users.id`) has confirmed TOTP, as a BIGINT 0 or 1 named
/// `mfa_enabled` (the same type on both backends).
#[macro_export]
macro_rules! mfa_enabled_column {
    () => {
        "CAST(CASE WHEN EXISTS (SELECT 1 FROM mfa_totp m WHERE m.user_id = users.id AND m.confirmed_at IS NOT NULL) OR EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = users.id) THEN 1 ELSE 0 END AS BIGINT) AS mfa_enabled"
    };
}

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(User {
        id: UserId::parse(&id)
            .ok_or_else(|| sqlx::Error::Decode(format!("user id {id} is not a UUID").into()))?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        email_verified_at: row.try_get("email_verified_at")?,
        disabled_at: row.try_get("disabled_at")?,
        locked_at: row.try_get("locked_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        roles: Vec::new(),
        mfa_enabled: row.try_get::<i64, _>("mfa_enabled")? != 0,
    })
}

pub struct NewUserRow<'a> {
    pub id: UserId,
    pub email: &'a str,
    pub email_key: &'a str,
    pub name: Option<&'a str>,
    pub password_hash: &'a str,
    pub now: i64,
}

/// Inserts a user. A taken email surfaces as a unique violation.
pub async fn insert(conn: &mut AnyConnection, u: &NewUserRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, email_key, name, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(u.id.to_string())
    .bind(u.email)
    .bind(u.email_key)
    .bind(u.name)
    .bind(u.password_hash)
    .bind(u.now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_by_email_key<'c, E: Executor<'c, Database = Any>>(
    db: E,
    key: &str,
) -> Result<Option<User>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email_key = $1"
    ));
    let row = sqlx::query(sql).bind(key).fetch_optional(db).await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn find_by_id<'c, E: Executor<'c, Database = Any>>(
    db: E,
    id: UserId,
) -> Result<Option<User>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
    let row = sqlx::query(sql)
        .bind(id.to_string())
        .fetch_optional(db)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn set_name(
    conn: &mut AnyConnection,
    id: UserId,
    name: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET name = $1, updated_at = $2 WHERE id = $3")
        .bind(name)
        .bind(now)
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a new password hash if the stored one is still `expected` (the one just verified),
/// so two concurrent changes cannot both succeed. Returns whether it was replaced. The
/// password is portvakt's from now on: a re-import no longer replaces it.
pub async fn replace_password_hash(
    conn: &mut AnyConnection,
    id: UserId,
    expected: &str,
    hash: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET password_hash = $1, imported_hash_digest = NULL, updated_at = $2 WHERE id = $3 AND password_hash = $4",
    )
    .bind(hash)
    .bind(now)
    .bind(id.to_string())
    .bind(expected)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a hash only if it is still the one we verified against, so a rehash after login
/// never overwrites a password changed meanwhile.
pub async fn upgrade_password_hash<'c, E: Executor<'c, Database = Any>>(
    db: E,
    id: UserId,
    old: &str,
    new: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
        .bind(new)
        .bind(id.to_string())
        .bind(old)
        .execute(db)
        .await?;
    Ok(())
}

/// Row-locks the account until the transaction ends (PostgreSQL; SQLite's write transaction
/// already excludes every other writer), so that a login committing at the same time either
/// finishes first and is seen, or waits and finds the account gone.
pub async fn lock(conn: &mut AnyConnection, id: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a successful login if the account still exists and is neither disabled nor locked,
/// and returns whether it did. The password was checked on an earlier read; a disable, lock
/// or erasure committed meanwhile must win (on PostgreSQL this update waits for it).
pub async fn record_login(
    conn: &mut AnyConnection,
    id: UserId,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET last_login_at = $1, failed_logins = 0 WHERE id = $2 AND disabled_at IS NULL AND locked_at IS NULL",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a failed login against an existing account and locks it when `threshold` (> 0)
/// consecutive failures are reached. Returns true when this failure locked it.
pub async fn record_failed_login(
    conn: &mut AnyConnection,
    id: UserId,
    threshold: u32,
    now: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    if threshold == 0 {
        return Ok(false);
    }
    let locked = sqlx::query(
        "UPDATE users SET locked_at = $1 WHERE id = $2 AND locked_at IS NULL AND failed_logins >= $3",
    )
    .bind(now)
    .bind(id.to_string())
    .bind(i64::from(threshold))
    .execute(conn)
    .await?;
    Ok(locked.rows_affected() == 1)
}

/// Lifts a lockout and forgets the failures. Returns whether the account was locked.
pub async fn unlock(conn: &mut AnyConnection, id: UserId, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET locked_at = NULL, failed_logins = 0, updated_at = $1 WHERE id = $2 AND locked_at IS NOT NULL",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the account row (its roles and sessions must be gone already). Returns whether
/// there was one.
pub async fn delete(conn: &mut AnyConnection, id: UserId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Disables (`Some(at)`) or enables (`None`) an account.
pub async fn set_disabled(
    conn: &mut AnyConnection,
    id: UserId,
    at: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET disabled_at = $1, updated_at = $2 WHERE id = $3")
        .bind(at)
        .bind(now)
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets a new address. Unless it is the same identity respelled (`same_identity`), it is
/// unverified. A taken address surfaces as a unique violation.
pub async fn set_email(
    conn: &mut AnyConnection,
    id: UserId,
    email: &super::model::Email,
    same_identity: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = if same_identity {
        "UPDATE users SET email = $1, email_key = $2, updated_at = $3 WHERE id = $4"
    } else {
        "UPDATE users SET email = $1, email_key = $2, updated_at = $3, email_verified_at = NULL WHERE id = $4"
    };
    sqlx::query(sql)
        .bind(email.as_str())
        .bind(email.key())
        .bind(now)
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
