//! The `mail_outbox` table.

use sqlx::{AnyConnection, Row};

use crate::store::{Backend, Store, now_micros};

pub struct NewRow<'a> {
    pub id: &'a str,
    pub user_id: Option<String>,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body_text: &'a str,
    pub body_html: Option<&'a str>,
}

pub async fn insert(conn: &mut AnyConnection, row: &NewRow<'_>) -> Result<(), sqlx::Error> {
    let now = now_micros();
    sqlx::query(
        "INSERT INTO mail_outbox (id, created_at, recipient, subject, body_text, body_html, \
         attempts, next_attempt_at, user_id) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)",
    )
    .bind(row.id)
    .bind(now)
    .bind(row.recipient)
    .bind(row.subject)
    .bind(row.body_text)
    .bind(row.body_html)
    .bind(now)
    .bind(row.user_id.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// A message claimed for one delivery attempt.
#[derive(Debug)]
pub struct Claimed {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    /// Including this one.
    pub attempts: i64,
}

/// Claims the most overdue message that nobody holds, until `lease_until`, and counts the
/// attempt. Counting at the claim means a crash mid-send still uses up an attempt, so a
/// message that brings its sender down cannot do so forever.
///
/// PostgreSQL skips rows another instance has locked meanwhile; should two instances still
/// pick one row, the second's UPDATE re-checks the lease on the row as committed and claims
/// nothing. SQLite serves one instance and writes one at a time.
pub async fn claim(
    store: &Store,
    claimer: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    let lock = match store.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE mail_outbox SET claimed_until = $1, claimed_by = $2, attempts = attempts + 1 \
         WHERE id = (SELECT id FROM mail_outbox \
             WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $3 \
             AND (claimed_until IS NULL OR claimed_until < $3) \
             ORDER BY next_attempt_at, id LIMIT 1{lock}) \
         AND sent_at IS NULL AND failed_at IS NULL \
         AND (claimed_until IS NULL OR claimed_until < $3) \
         RETURNING id, recipient, subject, body_text, body_html, attempts"
    );
    let mut tx = store.begin_write().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease_until)
        .bind(claimer)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    row.map(|r| {
        Ok(Claimed {
            id: r.try_get("id")?,
            recipient: r.try_get("recipient")?,
            subject: r.try_get("subject")?,
            body_text: r.try_get("body_text")?,
            body_html: r.try_get("body_html")?,
            attempts: r.try_get::<i64, _>("attempts")?,
        })
    })
    .transpose()
}

/// Records the delivery and erases the bodies. Whoever holds the claim now, the message
/// was accepted, so no later attempt may send it again.
pub async fn mark_sent(store: &Store, id: &str, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET sent_at = $1, body_text = NULL, body_html = NULL, \
         claimed_until = NULL, claimed_by = NULL, last_error = NULL \
         WHERE id = $2 AND sent_at IS NULL",
    )
    .bind(at)
    .bind(id)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Releases the claim and sets the next attempt.
pub async fn mark_retry(
    store: &Store,
    id: &str,
    claimer: &str,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET next_attempt_at = $1, claimed_until = NULL, claimed_by = NULL, \
         last_error = $2 WHERE id = $3 AND claimed_by = $4 AND sent_at IS NULL",
    )
    .bind(next_attempt_at)
    .bind(error)
    .bind(id)
    .bind(claimer)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Gives the message up: records when and why, and erases the bodies.
pub async fn mark_failed(
    store: &Store,
    id: &str,
    claimer: &str,
    at: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET failed_at = $1, body_text = NULL, body_html = NULL, \
         claimed_until = NULL, claimed_by = NULL, last_error = $2 \
         WHERE id = $3 AND claimed_by = $4 AND sent_at IS NULL",
    )
    .bind(at)
    .bind(error)
    .bind(id)
    .bind(claimer)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Rows deleted per statement when pruning: short write transactions keep logins (and,
/// on SQLite, every other writer) flowing while a large backlog goes.
const PRUNE_BATCH: i64 = 1000;

/// Deletes messages sent before `sent_before` and messages given up before `failed_before`
/// (`None`: keep them). Returns how many of each went.
pub async fn prune(
    store: &Store,
    sent_before: Option<i64>,
    failed_before: Option<i64>,
) -> Result<(u64, u64), sqlx::Error> {
    let sent = match sent_before {
        Some(before) => delete_before(store, "sent_at", before).await?,
        None => 0,
    };
    let failed = match failed_before {
        Some(before) => delete_before(store, "failed_at", before).await?,
        None => 0,
    };
    Ok((sent, failed))
}

/// Deletes, batch by batch, the rows whose `column` (a time) is before `before`.
async fn delete_before(store: &Store, column: &str, before: i64) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "DELETE FROM mail_outbox WHERE id IN \
         (SELECT id FROM mail_outbox WHERE {column} < $1 LIMIT $2)"
    );
    let mut total = 0;
    loop {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(before)
            .bind(PRUNE_BATCH)
            .execute(store.pool())
            .await?
            .rows_affected();
        total += done;
        if done < PRUNE_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

/// Messages neither sent nor given up, and when the earliest of them is next due (a held
/// claim counts as due when its lease ends).
pub async fn pending(store: &Store) -> Result<(i64, Option<i64>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, \
         MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_attempt_at \
             THEN claimed_until ELSE next_attempt_at END) AS due \
         FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(store.pool())
    .await?;
    Ok((row.try_get::<i64, _>("n")?, row.try_get("due")?))
}

/// Deletes every message about `user`, sent or not (GDPR erasure: the address and subject are
/// personal data, and an unsent one must not reach an erased person). Inside the erasure's
/// transaction.
pub async fn delete_of_user(conn: &mut AnyConnection, user: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM mail_outbox WHERE user_id = $1")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// A message about an account, as its owner's export shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ExportedMail)]
pub struct Exported {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    #[schema(format = "date-time")]
    pub created_at: String,
    /// When the SMTP server accepted it; `null` while waiting or after giving up.
    #[schema(format = "date-time")]
    pub sent_at: Option<String>,
    /// When delivery was given up.
    #[schema(format = "date-time")]
    pub failed_at: Option<String>,
}

/// Every message about `user`, oldest first.
pub async fn of_user(conn: &mut AnyConnection, user: &str) -> Result<Vec<Exported>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, recipient, subject, created_at, sent_at, failed_at FROM mail_outbox \
         WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Exported {
                id: r.try_get("id")?,
                recipient: r.try_get("recipient")?,
                subject: r.try_get("subject")?,
                created_at: crate::store::rfc3339(r.try_get("created_at")?),
                sent_at: r
                    .try_get::<Option<i64>, _>("sent_at")?
                    .map(crate::store::rfc3339),
                failed_at: r
                    .try_get::<Option<i64>, _>("failed_at")?
                    .map(crate::store::rfc3339),
            })
        })
        .collect()
}
