//! Scheduled backups: `serve` writes one every `PORTVAKT_BACKUP_INTERVAL` into
//! `PORTVAKT_BACKUP_DIR` and keeps the newest `PORTVAKT_BACKUP_KEEP`.
//!
//! With several instances on one PostgreSQL database, each interval's backup is taken once:
//! an instance must hold an advisory lock to take it, and skips it when the database records
//! a scheduled backup taken less than an interval ago (by whichever instance).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BackupRecord, Progress, Trigger, last_backup_by, take};
use crate::config::Config;
use crate::store::{Backend, Store, now_micros, rfc3339};
use crate::telemetry::metrics as names;

/// The advisory lock of the scheduled backup ("PVBACKUP").
const LOCK_KEY: i64 = 0x5056_4241_434B_5550;
const PREFIX: &str = "portvakt-";
const SUFFIX: &str = ".backup.gz";
/// The first backup of a database without one, and the retry after a failure, come this
/// soon (or after one interval, if that is shorter).
const RETRY: Duration = Duration::from_secs(60);

/// When, where and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub dir: PathBuf,
    pub interval: Duration,
    pub keep: usize,
}

impl Schedule {
    /// The configured schedule, or `None` when `PORTVAKT_BACKUP_INTERVAL` is 0.
    pub fn from_config(config: &Config) -> Option<Schedule> {
        if config.backup_interval.is_zero() {
            return None;
        }
        Some(Schedule {
            dir: config.backup_dir.clone(),
            interval: config.backup_interval,
            keep: config.backup_keep,
        })
    }
}

/// Takes a backup whenever one is due until aborted. Due means an interval after the last
/// scheduled backup the database records, whichever instance took it, so restarts do not
/// postpone backups; a database without one gets its first soon after the start.
pub fn spawn(store: Store, schedule: Schedule) -> tokio::task::JoinHandle<()> {
    // Both outcomes exist from the start, so that `increase()` sees the first failure.
    for outcome in ["success", "failure"] {
        metrics::counter!(names::BACKUPS, "outcome" => outcome).increment(0);
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(next_delay(&store, &schedule).await).await;
            match run_once(&store, &schedule).await {
                Ok(Some((r, pruned))) => {
                    metrics::counter!(names::BACKUPS, "outcome" => "success").increment(1);
                    metrics::gauge!(names::LAST_BACKUP).set(r.created_at as f64 / 1e6);
                    tracing::info!(
                        file = %r.file,
                        bytes = r.bytes,
                        pruned,
                        "scheduled backup written"
                    );
                }
                Ok(None) => {}
                // Every failure counts, whatever step failed (directory, lock, snapshot):
                // the alert on this counter is how an operator hears of it.
                Err(e) => {
                    metrics::counter!(names::BACKUPS, "outcome" => "failure").increment(1);
                    tracing::error!(error = %format!("{e:#}"), "scheduled backup failed");
                    tokio::time::sleep(schedule.interval.min(RETRY)).await;
                }
            }
        }
    })
}

/// How long until the next backup is due: at most an interval, and at least a second, so that
/// waiting for another instance to finish its backup is not a tight loop.
async fn next_delay(store: &Store, schedule: &Schedule) -> Duration {
    let soon = schedule.interval.min(RETRY);
    match last_backup_by(store, Trigger::Scheduled).await {
        Ok(Some(last)) => {
            let due = crate::store::micros_after(last.created_at, schedule.interval);
            let wait = u64::try_from(due.saturating_sub(now_micros())).unwrap_or(0);
            Duration::from_micros(wait)
                .min(schedule.interval)
                .max(Duration::from_secs(1))
        }
        Ok(None) => soon,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read when the last backup was taken");
            soon
        }
    }
}

/// One scheduled backup, unless another instance holds the lock or took it recently.
/// Returns the backup and how many old files were deleted.
pub async fn run_once(
    store: &Store,
    schedule: &Schedule,
) -> anyhow::Result<Option<(BackupRecord, usize)>> {
    let _lock = match store.backend() {
        Backend::Sqlite => None,
        Backend::Postgres => {
            // A connection of its own, outside the pool: the backup's snapshot takes a pooled
            // one, and holding a second for the whole backup would starve a small pool.
            // The lock belongs to this session, so closing it releases the lock.
            let options = store.pool().connect_options();
            let mut conn =
                <sqlx::AnyConnection as sqlx::Connection>::connect_with(&options).await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut conn)
                .await?;
            if !locked {
                tracing::debug!("another instance is taking the scheduled backup");
                return Ok(None);
            }
            Some(conn)
        }
    };
    if let Some(last) = last_backup_by(store, Trigger::Scheduled).await? {
        // A tenth of slack, so that ticks a little early on this instance still fire.
        let recent = crate::store::micros_after(0, schedule.interval.mul_f64(0.9));
        if now_micros().saturating_sub(last.created_at) < recent {
            return Ok(None);
        }
    }
    crate::store::create_private_dir(&schedule.dir)?;
    let path = schedule.dir.join(file_name(now_micros()));
    let record = take(store, &path, Trigger::Scheduled, &Progress::hidden()).await?;
    // The backup is written and recorded: failing to delete old ones is worth a warning,
    // not a retry of the backup.
    let pruned = match prune(&schedule.dir, schedule.keep) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, dir = %schedule.dir.display(), "cannot delete old backups");
            0
        }
    };
    Ok(Some((record, pruned)))
}

/// `portvakt-20261123T005857Z-123456.backup.gz`: sorts by time, and only these names are
/// ever deleted by retention.
pub fn file_name(micros: i64) -> String {
    let stamp: String = rfc3339(micros.div_euclid(1_000_000) * 1_000_000)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!(
        "{PREFIX}{stamp}-{:06}{SUFFIX}",
        micros.rem_euclid(1_000_000)
    )
}

fn is_scheduled_name(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// Deletes all but the newest `keep` scheduled backups in `dir`; returns how many went.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<usize> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_scheduled_name(n))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for name in &names[..excess] {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_by_time() {
        let a = file_name(1_700_000_000_000_001);
        let b = file_name(1_700_000_000_999_999);
        let c = file_name(1_700_000_001_000_000);
        assert_eq!(a, "portvakt-20231114T221320Z-000001.backup.gz");
        assert!(a < b && b < c);
        assert!(is_scheduled_name(&a));
        assert!(!is_scheduled_name("mine.backup.gz"));
    }

    #[test]
    fn prune_keeps_the_newest_and_leaves_other_files_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for m in [3, 1, 2] {
            std::fs::write(dir.join(file_name(m * 1_000_000)), b"x").unwrap();
        }
        std::fs::write(dir.join("manual.backup.gz"), b"x").unwrap();
        assert_eq!(prune(&dir, 2).unwrap(), 1);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "manual.backup.gz".to_string(),
                file_name(2_000_000),
                file_name(3_000_000)
            ]
        );
    }
}
