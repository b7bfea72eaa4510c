//! Passkey rows and ceremony state in the database.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;
use webauthn_rs::prelude::{AuthenticationResult, Passkey};

use super::CEREMONY_TTL;
use crate::accounts::UserId;
use crate::crypto::{new_token, token_hash};
use crate::error::AppError;
use crate::store::now_micros;

/// What a ceremony is for; a token of one kind never finishes another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Register,
    Login,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Login => "login",
        }
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("{what}: {e}"))
}

/// Keeps the server half of a ceremony; returns the token that names it.
pub async fn put_ceremony(
    conn: &mut AnyConnection,
    kind: Kind,
    user: Option<UserId>,
    state: &impl Serialize,
) -> Result<String, AppError> {
    let token = new_token();
    let now = now_micros();
    let ttl = i64::try_from(CEREMONY_TTL.as_micros()).unwrap_or(i64::MAX);
    // Expired ceremonies go as new ones come; nothing else reads them.
    sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO webauthn_ceremonies (token_hash, kind, user_id, state, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash(&token))
    .bind(kind.as_str())
    .bind(user.map(|u| u.to_string()))
    .bind(serde_json::to_string(state).map_err(|e| internal("ceremony state", e))?)
    .bind(now)
    .bind(now.saturating_add(ttl))
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

/// Takes (and so ends) the live ceremony `token` names, if it is of `kind`: its user and
/// state. Of two requests racing with one token, one gets it.
pub async fn take_ceremony<S: DeserializeOwned>(
    conn: &mut AnyConnection,
    kind: Kind,
    token: &str,
) -> Result<Option<(Option<UserId>, S)>, AppError> {
    let row = sqlx::query(
        "DELETE FROM webauthn_ceremonies WHERE token_hash = $1 RETURNING kind, user_id, state, expires_at",
    )
    .bind(token_hash(token))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let found: String = row.try_get("kind")?;
    let expires_at: i64 = row.try_get("expires_at")?;
    if found != kind.as_str() || expires_at <= now_micros() {
        return Ok(None);
    }
    let user = row
        .try_get::<Option<String>, _>("user_id")?
        .and_then(|u| UserId::parse(&u));
    let state: String = row.try_get("state")?;
    let state = serde_json::from_str(&state).map_err(|e| internal("ceremony state", e))?;
    Ok(Some((user, state)))
}

/// A registered passkey.
pub struct Stored {
    pub id: Uuid,
    pub user_id: UserId,
    pub name: String,
    pub passkey: Passkey,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

pub fn credential_key(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

fn stored(row: &sqlx::any::AnyRow) -> Result<Stored, AppError> {
    let id: String = row.try_get("id")?;
    let user: String = row.try_get("user_id")?;
    let passkey: String = row.try_get("passkey")?;
    Ok(Stored {
        id: Uuid::parse_str(&id).map_err(|e| internal("passkey id", e))?,
        user_id: UserId::parse(&user).ok_or_else(|| internal("passkey user", &user))?,
        name: row.try_get("name")?,
        passkey: serde_json::from_str(&passkey).map_err(|e| internal("stored passkey", e))?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

const COLUMNS: &str = "id, user_id, name, passkey, created_at, last_used_at";

pub async fn of_user(conn: &mut AnyConnection, user: UserId) -> Result<Vec<Stored>, AppError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
    )))
    .bind(user.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(stored).collect()
}

pub async fn by_credential(
    conn: &mut AnyConnection,
    raw_id: &[u8],
) -> Result<Option<Stored>, AppError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM passkeys WHERE credential_id = $1"
    )))
    .bind(credential_key(raw_id))
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(stored).transpose()
}

/// Inserts a new passkey; `false` when its credential is registered already.
pub async fn insert(
    conn: &mut AnyConnection,
    id: Uuid,
    user: UserId,
    name: &str,
    passkey: &Passkey,
    now: i64,
) -> Result<bool, AppError> {
    let done = sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_id, name, passkey, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(user.to_string())
    .bind(credential_key(passkey.cred_id()))
    .bind(name)
    .bind(serde_json::to_string(passkey).map_err(|e| internal("passkey", e))?)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The signature counter stored with a passkey (0: the authenticator keeps none, as synced
/// passkeys do). webauthn-rs keeps it private; its serialised form names it.
fn counter_of(passkey: &Passkey) -> u64 {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| {
            v.pointer("/cred/counter")
                .and_then(serde_json::Value::as_u64)
        })
        .unwrap_or(0)
}

/// Records a verified use of passkey `id`, which must be read again here, under the account
/// row lock the caller holds: webauthn-rs compared the counter with the copy taken when the
/// ceremony started, and two uses may have raced since. An answer whose counter does not
/// move past the stored one (a cloned authenticator, or the loser of a race) is refused with
/// `false`; otherwise the counter and backup state move on.
pub async fn record_verified_use(
    conn: &mut AnyConnection,
    id: Uuid,
    result: &AuthenticationResult,
    now: i64,
) -> Result<bool, AppError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM passkeys WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(mut fresh) = row.as_ref().map(stored).transpose()? else {
        return Ok(false);
    };
    let (used, kept) = (u64::from(result.counter()), counter_of(&fresh.passkey));
    if (used != 0 || kept != 0) && used <= kept {
        tracing::warn!(passkey_id = %id, used, kept, "passkey counter did not move forward: refused as a possible clone or replay");
        return Ok(false);
    }
    fresh.passkey.update_credential(result);
    sqlx::query("UPDATE passkeys SET passkey = $1, last_used_at = $2 WHERE id = $3")
        .bind(serde_json::to_string(&fresh.passkey).map_err(|e| internal("passkey", e))?)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

pub async fn delete(conn: &mut AnyConnection, user: UserId, id: Uuid) -> Result<bool, AppError> {
    let done = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
        .bind(id.to_string())
        .bind(user.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn count_of_user(conn: &mut AnyConnection, user: UserId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM passkeys WHERE user_id = $1")
        .bind(user.to_string())
        .fetch_one(conn)
        .await
}

/// Every passkey and pending ceremony of `user` (erasure).
pub async fn delete_of_user(conn: &mut AnyConnection, user: &str) -> Result<(), sqlx::Error> {
    for table in ["webauthn_ceremonies", "passkeys"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE user_id = $1"
        )))
        .bind(user)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
