//! Backup and restore: a consistent snapshot of every table in a logical, compressed file
//! that restores into an empty database of either backend (so it is also the way from SQLite
//! to PostgreSQL), and scheduled backups with retention.
//!
//! The file format is in [`format`]; which tables it carries, in [`tables`].

pub mod dump;
pub mod format;
pub mod progress;
pub mod restore;
pub mod schedule;
pub mod tables;

use std::path::Path;

use sqlx::Row;
use uuid::Uuid;

pub use dump::Dumped;
pub use format::{FormatError, Header};
pub use progress::Progress;
pub use restore::{Restored, restore, verify_file};

use crate::store::Store;

/// What started a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `portvakt backup --out FILE`.
    Manual,
    /// The `serve` task driven by `PORTVAKT_BACKUP_INTERVAL`.
    Scheduled,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
        }
    }
}

/// A backup file that was written completely, as recorded in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub id: String,
    /// When the snapshot was taken, microseconds since the Unix epoch.
    pub created_at: i64,
    pub file: String,
    pub bytes: i64,
    pub sha256: String,
    /// `manual` or `scheduled`.
    pub triggered_by: String,
}

/// Writes a backup of `store` to `out` (which must not exist) and records it.
pub async fn take(
    store: &Store,
    out: &Path,
    trigger: Trigger,
    progress: &Progress,
) -> anyhow::Result<BackupRecord> {
    let dumped = dump::dump(store, out, progress).await?;
    let file = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let record = BackupRecord {
        id: Uuid::now_v7().to_string(),
        created_at: dumped.created_at,
        file: file.display().to_string(),
        bytes: i64::try_from(dumped.bytes).unwrap_or(i64::MAX),
        sha256: dumped.sha256,
        triggered_by: trigger.as_str().to_string(),
    };
    insert(store, &record).await.map_err(|e| {
        anyhow::anyhow!(
            "the backup {} is complete, but recording it in the database failed: {e}",
            out.display()
        )
    })?;
    Ok(record)
}

async fn insert(store: &Store, r: &BackupRecord) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO backups (id, created_at, file, bytes, sha256, triggered_by) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&r.id)
    .bind(r.created_at)
    .bind(&r.file)
    .bind(r.bytes)
    .bind(&r.sha256)
    .bind(&r.triggered_by)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

const RECORD_COLUMNS: &str = "id, created_at, file, bytes, sha256, triggered_by";

fn record_from(row: &sqlx::any::AnyRow) -> Result<BackupRecord, sqlx::Error> {
    Ok(BackupRecord {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        file: row.try_get("file")?,
        bytes: row.try_get("bytes")?,
        sha256: row.try_get("sha256")?,
        triggered_by: row.try_get("triggered_by")?,
    })
}

/// The newest recorded backup, manual or scheduled (`None` when there never was one).
pub async fn last_backup(store: &Store) -> Result<Option<BackupRecord>, sqlx::Error> {
    last_where(store, None).await
}

/// The newest recorded backup started by `trigger`.
pub async fn last_backup_by(
    store: &Store,
    trigger: Trigger,
) -> Result<Option<BackupRecord>, sqlx::Error> {
    last_where(store, Some(trigger)).await
}

async fn last_where(
    store: &Store,
    trigger: Option<Trigger>,
) -> Result<Option<BackupRecord>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {RECORD_COLUMNS} FROM backups WHERE ($1 = '' OR triggered_by = $1) ORDER BY created_at DESC, id DESC LIMIT 1"
    ));
    let row = sqlx::query(sql)
        .bind(trigger.map_or("", Trigger::as_str))
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(record_from).transpose()
}
