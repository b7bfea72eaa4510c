//! SQL over `audit_log`, `audit_head` and `audit_checkpoint` (migration 0002).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// One stored entry, every column.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: i64,
    pub id: String,
    pub at: i64,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub details: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub personal: Option<String>,
    pub personal_salt: Option<String>,
    pub personal_digest: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

pub(super) const COLUMNS: &str = "seq, id, at, actor_id, action, target_type, target_id, outcome, details, ip, user_agent, personal, personal_salt, personal_digest, prev_hash, hash";

pub(super) fn from_row(r: &AnyRow) -> Result<StoredEntry, sqlx::Error> {
    Ok(StoredEntry {
        seq: r.try_get("seq")?,
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor_id: r.try_get("actor_id")?,
        action: r.try_get("action")?,
        target_type: r.try_get("target_type")?,
        target_id: r.try_get("target_id")?,
        outcome: r.try_get("outcome")?,
        details: r.try_get("details")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
        personal: r.try_get("personal")?,
        personal_salt: r.try_get("personal_salt")?,
        personal_digest: r.try_get("personal_digest")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

pub async fn insert(conn: &mut AnyConnection, e: &StoredEntry) -> Result<(), sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ));
    sqlx::query(sql)
        .bind(e.seq)
        .bind(&e.id)
        .bind(e.at)
        .bind(&e.actor_id)
        .bind(&e.action)
        .bind(&e.target_type)
        .bind(&e.target_id)
        .bind(&e.outcome)
        .bind(&e.details)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.personal)
        .bind(&e.personal_salt)
        .bind(&e.personal_digest)
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// The end of the chain: the last entry's sequence and hash, signed.
#[derive(Debug, Clone)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub signature: String,
}

/// Claims the next sequence number and returns it with the previous hash. On PostgreSQL the
/// row stays locked until the transaction ends, which is what serialises appends across
/// instances; on SQLite the write transaction already holds the database lock.
pub async fn claim_next(conn: &mut AnyConnection) -> Result<(i64, String), sqlx::Error> {
    let row = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(conn)
        .await?;
    Ok((row.try_get("seq")?, row.try_get("hash")?))
}

pub async fn set_head(
    conn: &mut AnyConnection,
    hash: &str,
    signature: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE audit_head SET hash = $1, signature = $2 WHERE id = 1")
        .bind(hash)
        .bind(signature)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn head(conn: &mut AnyConnection) -> Result<Head, sqlx::Error> {
    let row = sqlx::query("SELECT seq, hash, signature FROM audit_head WHERE id = 1")
        .fetch_one(conn)
        .await?;
    Ok(Head {
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        signature: row.try_get("signature")?,
    })
}

/// Where the chain starts after pruning: the last pruned entry, signed.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    pub signature: String,
}

fn checkpoint_from(row: &AnyRow) -> Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        at: row.try_get("at")?,
        signature: row.try_get("signature")?,
    })
}

pub async fn checkpoint(conn: &mut AnyConnection) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query("SELECT seq, hash, at, signature FROM audit_checkpoint WHERE id = 1")
        .fetch_one(conn)
        .await?;
    checkpoint_from(&row)
}

/// Reads the checkpoint and, on PostgreSQL, locks it until the transaction ends, so that
/// two instances pruning at once take turns (`SELECT .. FOR UPDATE` does not exist in SQLite;
/// a no-op update locks on both).
pub async fn lock_checkpoint(conn: &mut AnyConnection) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE audit_checkpoint SET seq = seq WHERE id = 1 RETURNING seq, hash, at, signature",
    )
    .fetch_one(conn)
    .await?;
    checkpoint_from(&row)
}

pub async fn set_checkpoint(conn: &mut AnyConnection, c: &Checkpoint) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE audit_checkpoint SET seq = $1, hash = $2, at = $3, signature = $4 WHERE id = 1",
    )
    .bind(c.seq)
    .bind(&c.hash)
    .bind(c.at)
    .bind(&c.signature)
    .execute(conn)
    .await?;
    Ok(())
}

/// Up to `limit` entries after `after`, in chain order.
pub async fn page(
    conn: &mut AnyConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEntry>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
    ));
    let rows = sqlx::query(sql)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes the entries after `after` up to and including `through`; returns how many went.
pub async fn delete_range(
    conn: &mut AnyConnection,
    after: i64,
    through: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM audit_log WHERE seq > $1 AND seq <= $2")
        .bind(after)
        .bind(through)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Entries in which `user` acted or that are about the account itself, in chain order.
pub async fn by_actor_or_user_target(
    conn: &mut AnyConnection,
    user: &str,
) -> Result<Vec<StoredEntry>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_log WHERE actor_id = $1 OR (target_type = 'user' AND target_id = $1) ORDER BY seq"
    ));
    let rows = sqlx::query(sql).bind(user).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// Entries about one target, in chain order.
pub async fn by_target(
    conn: &mut AnyConnection,
    target_type: &str,
    target_id: &str,
) -> Result<Vec<StoredEntry>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_log WHERE target_type = $1 AND target_id = $2 ORDER BY seq"
    ));
    let rows = sqlx::query(sql)
        .bind(target_type)
        .bind(target_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Entries whose personal data, lowercased, matches the LIKE `pattern` (escape `\`). Not
/// indexed: it reads the whole log, which erasure (rare) can afford.
pub async fn by_personal_like(
    conn: &mut AnyConnection,
    pattern: &str,
) -> Result<Vec<StoredEntry>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_log WHERE personal IS NOT NULL AND lower(personal) LIKE $1 ESCAPE '\\' ORDER BY seq"
    ));
    let rows = sqlx::query(sql).bind(pattern).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// Clears an entry's personal data, leaving its digest and putting the erasure's seal where
/// the salt was (`chain::Signer::seal_erasure`).
pub async fn clear_personal(
    conn: &mut AnyConnection,
    seq: i64,
    seal: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE audit_log SET ip = NULL, user_agent = NULL, personal = NULL, personal_salt = $1 WHERE seq = $2",
    )
    .bind(seal)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}
