//! Retention: deleting old entries without breaking verification. Each batch checks the
//! entries it is about to delete against the chain, deletes them, and moves the signed
//! checkpoint (the last deleted entry's sequence, hash and time) in the same transaction;
//! verification then starts from the checkpoint.

use std::sync::Arc;
use std::time::Duration;

use super::Audit;
use super::store::{self, Checkpoint};
use super::verify::{Broken, VerifyError, Walker, check_checkpoint};
use crate::store::{Store, now_micros};

/// Entries deleted per transaction: short transactions keep appends flowing meanwhile.
const BATCH: i64 = 1000;
/// How often `serve` prunes and logs the head.
const INTERVAL: Duration = Duration::from_secs(3600);
/// The first run waits a little, so that a start (or a crash loop) stays cheap.
const FIRST_RUN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    pub pruned: u64,
    /// The checkpoint afterwards: the last entry pruned, ever (0 when none was).
    pub through: i64,
}

/// Deletes the entries written before `before` (microseconds), oldest first, stopping at
/// the first newer one. Refuses, deleting nothing more, when the entries to delete do not
/// verify: pruning must not launder a tampered entry into a signed checkpoint.
#[tracing::instrument(skip_all)]
pub async fn prune(db: &Store, audit: &Audit, before: i64) -> Result<PruneReport, VerifyError> {
    let mut report = PruneReport {
        pruned: 0,
        through: 0,
    };
    loop {
        let mut tx = db.begin_write().await?;
        // Locked first: instances pruning at once take turns and each sees the other's result.
        let cp = store::lock_checkpoint(&mut tx).await?;
        check_checkpoint(audit, &cp).map_err(VerifyError::Broken)?;
        report.through = cp.seq;
        let rows = store::page(&mut tx, cp.seq, BATCH).await?;
        let mut walker = Walker::after(audit.signer(), cp.seq, cp.hash.clone());
        let mut last = None;
        for e in rows.iter().take_while(|e| e.at < before) {
            walker.step(e).map_err(VerifyError::Broken)?;
            last = Some(e);
        }
        let Some(last) = last else {
            tx.rollback().await?;
            return Ok(report);
        };
        let deleted = store::delete_range(&mut tx, cp.seq, last.seq).await?;
        let next = Checkpoint {
            seq: last.seq,
            hash: last.hash.clone(),
            at: last.at,
            signature: audit
                .signer()
                .sign_checkpoint(last.seq, &last.hash, last.at),
        };
        store::set_checkpoint(&mut tx, &next).await?;
        tx.commit().await?;
        report.pruned += deleted;
        report.through = next.seq;
        let whole_batch = i64::try_from(rows.len()).unwrap_or(0) == BATCH;
        if !(whole_batch && rows.last().is_some_and(|e| e.seq == next.seq)) {
            return Ok(report);
        }
    }
}

/// The moment (microseconds) before which entries older than `age` are due for deletion.
pub fn cutoff(age: std::time::Duration) -> i64 {
    now_micros().saturating_sub(crate::store::micros_after(0, age))
}

/// The age `PORTVAKT_AUDIT_RETENTION_DAYS` keeps.
pub fn retention(days: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(days) * 86_400)
}

/// `serve`'s housekeeping: prunes hourly when a retention is set, and logs the signed head
/// each time, so that the log store keeps an outside record of where the chain stood. The
/// head's signature stops a rewrite by someone without the secret key, but not a rollback
/// of the whole database to an earlier state; those log lines do.
pub fn spawn_maintenance(
    db: Store,
    audit: Arc<Audit>,
    retention_days: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST_RUN, INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if retention_days > 0 {
                match prune(&db, &audit, cutoff(retention(retention_days))).await {
                    Ok(r) if r.pruned > 0 => {
                        tracing::info!(pruned = r.pruned, through = r.through, "audit log pruned");
                    }
                    Ok(_) => {}
                    Err(VerifyError::Broken(Broken { seq, .. })) => {
                        tracing::error!(
                            seq,
                            "audit log is broken; not pruning (run `portvakt audit verify`)"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "audit log pruning failed"),
                }
            }
            log_head(&db).await;
        }
    })
}

async fn log_head(db: &Store) {
    let head = match db.pool().acquire().await {
        Ok(mut conn) => store::head(&mut conn).await,
        Err(e) => Err(e),
    };
    match head {
        Ok(h) => tracing::info!(seq = h.seq, hash = %h.hash, "audit head"),
        Err(e) => tracing::warn!(error = %e, "cannot read the audit head"),
    }
}
