//! Rotation: a new key of every algorithm starts signing, the previous ones are retired
//! (they stop signing but stay published and trusted for [`super::retention`]), and retired
//! keys past it are deleted. By hand (`portvakt keys rotate`, the admin API) or on the
//! `PORTVAKT_KEY_ROTATION_INTERVAL` schedule.
//!
//! Every instance learns of a rotation: on PostgreSQL through an announcement at commit, and
//! in any case at its next refresh ([`super::REFRESH_INTERVAL`]). Until then it signs with
//! the retired key, which the retention covers.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;

use super::{INVALIDATION_KIND, KeyRing, SigningAlg, insert, material};
use crate::audit::{Action, Audit, Entry};
use crate::error::AppError;
use crate::store::{Store, micros_after, now_micros};

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The new key that signs access tokens.
    pub kid: String,
    /// The key it replaces, when there was one.
    pub previous_kid: Option<String>,
    /// Every new key's kid.
    pub created: Vec<String>,
    /// Every key retired now.
    pub retired: Vec<String>,
    /// Retired keys past their retention, deleted now.
    pub deleted: u64,
}

/// When a rotation happens: always, or only when the oldest active key is `interval` old.
#[derive(Debug, Clone, Copy)]
enum When {
    Now,
    Due(Duration),
}

/// What becomes of the keys a rotation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// They verify the tokens they signed until those expire.
    Retire,
    /// They are deleted at once, and every token they signed fails (a leaked key).
    Delete,
}

/// Rotates every key now. `entry` says who asked (a `key_rotated` entry, see
/// `roles::service::Actor::entry`); the kids are added to it.
pub async fn rotate(
    store: &Store,
    ring: &KeyRing,
    audit: &Audit,
    entry: Entry,
    previous: Previous,
) -> Result<Rotated, AppError> {
    match rotate_when(store, ring, audit, entry, When::Now, previous).await? {
        Some(r) => Ok(r),
        None => Err(AppError::Internal(anyhow::anyhow!(
            "an unconditional rotation did not rotate"
        ))),
    }
}

/// The scheduled rotation: rotates when the oldest active key is `interval` old (made by
/// whichever instance), else does nothing.
pub async fn rotate_if_due(
    store: &Store,
    ring: &KeyRing,
    audit: &Audit,
    interval: Duration,
) -> Result<Option<Rotated>, AppError> {
    let entry = Entry::new(Action::KeyRotated).detail("via", "schedule");
    rotate_when(
        store,
        ring,
        audit,
        entry,
        When::Due(interval),
        Previous::Retire,
    )
    .await
}

#[tracing::instrument(skip_all)]
async fn rotate_when(
    store: &Store,
    ring: &KeyRing,
    audit: &Audit,
    entry: Entry,
    when: When,
    previous: Previous,
) -> Result<Option<Rotated>, AppError> {
    // Instances waking together need not all generate keys that only one will store.
    if let When::Due(interval) = when
        && !due(store, interval).await?
    {
        return Ok(None);
    }
    // RSA generation takes a while: outside the write transaction, so nobody waits for it.
    let generated = tokio::task::spawn_blocking(|| {
        SigningAlg::ALL
            .into_iter()
            .map(material::generate)
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .map_err(|e| anyhow::anyhow!("key generation failed: {e}"))??;

    let mut tx = store.begin_write().await?;
    // Locks the active keys: rotations on several instances take turns, and the second
    // sees what the first committed (and, when scheduled, that nothing is due any more).
    sqlx::query("UPDATE signing_keys SET retired_at = retired_at WHERE retired_at IS NULL")
        .execute(&mut *tx)
        .await?;
    let active: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT kid, alg, created_at FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid",
    )
    .fetch_all(&mut *tx)
    .await?;
    if let When::Due(interval) = when {
        let oldest = active.iter().map(|(_, _, created)| *created).min();
        if oldest.is_some_and(|created| micros_after(created, interval) > now_micros()) {
            tx.rollback().await?;
            return Ok(None);
        }
    }
    let now = now_micros();
    sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    for key in &generated {
        insert(&mut tx, &ring.master, key).await?;
    }
    let retention = match previous {
        Previous::Retire => ring.retention(),
        Previous::Delete => Duration::ZERO,
    };
    let deleted = delete_expired(&mut tx, retention).await?;
    let access_alg = ring.access_alg.as_str();
    let kid = generated
        .iter()
        .find(|k| k.alg == ring.access_alg)
        .map(|k| k.kid.clone())
        .ok_or_else(|| anyhow::anyhow!("no new {access_alg} key"))?;
    let previous_kid = active
        .iter()
        .find(|(_, alg, _)| alg == access_alg)
        .map(|(kid, _, _)| kid.clone());
    let created: Vec<String> = generated.iter().map(|k| k.kid.clone()).collect();
    let retired: Vec<String> = active.into_iter().map(|(kid, _, _)| kid).collect();
    store.announce(&mut tx, INVALIDATION_KIND, &created).await?;
    let entry = entry
        .target("signing_key", &kid)
        .detail("kid", kid.as_str())
        .detail("previous_kid", previous_kid.clone())
        .detail("alg", access_alg)
        .detail("created", created.clone())
        .detail("retired", retired.clone())
        .detail("previous_deleted", previous == Previous::Delete);
    audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    ring.reload().await;
    tracing::info!(kid = %kid, previous_kid = ?previous_kid, deleted, "signing keys rotated");
    Ok(Some(Rotated {
        kid,
        previous_kid,
        created,
        retired,
        deleted,
    }))
}

/// Deletes the retired keys past their retention: no token they signed is valid any more.
async fn delete_expired(conn: &mut AnyConnection, retention: Duration) -> Result<u64, AppError> {
    let cutoff = now_micros().saturating_sub(micros_after(0, retention));
    let done =
        sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at <= $1")
            .bind(cutoff)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}

/// Deletes the retired keys past their retention now (the schedule does it hourly).
pub async fn purge(store: &Store, ring: &KeyRing) -> Result<u64, AppError> {
    let mut conn = store.pool().acquire().await?;
    let deleted = delete_expired(&mut conn, ring.retention()).await?;
    if deleted > 0 {
        tracing::info!(deleted, "retired signing keys deleted");
        ring.reload().await;
    }
    Ok(deleted)
}

/// The longest sleep of the schedule: retired keys are deleted at least this often.
const TICK: Duration = Duration::from_secs(3600);
/// The first run waits a little, so that a start (or a crash loop) stays cheap.
const FIRST_RUN: Duration = Duration::from_secs(60);

/// `serve`'s key housekeeping until aborted: deletes retired keys past their retention, and
/// rotates when `interval` (not zero) has passed since the oldest active key was made. With several
/// instances, the first to find a rotation due makes it; the others then find it not due.
pub fn spawn_schedule(
    store: Store,
    ring: Arc<KeyRing>,
    audit: Arc<Audit>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = if interval.is_zero() {
            FIRST_RUN
        } else {
            FIRST_RUN.min(interval)
        };
        loop {
            tokio::time::sleep(delay).await;
            if let Err(e) = purge(&store, &ring).await {
                tracing::warn!(error = %e, "deleting retired signing keys failed");
            }
            if !interval.is_zero() {
                match rotate_if_due(&store, &ring, &audit, interval).await {
                    Ok(Some(r)) => {
                        tracing::info!(kid = %r.kid, "scheduled signing key rotation done")
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "scheduled signing key rotation failed"),
                }
            }
            delay = next_delay(&store, interval).await;
        }
    })
}

/// When the oldest active key was made: the schedule rotates when it is an interval old, so
/// a key added later (an algorithm new in this release) does not postpone the rotation of
/// the others.
async fn oldest_active(store: &Store) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MIN(created_at) FROM signing_keys WHERE retired_at IS NULL")
        .fetch_one(store.pool())
        .await
}

/// Whether a scheduled rotation is due, as far as a read without a lock can tell.
async fn due(store: &Store, interval: Duration) -> Result<bool, AppError> {
    Ok(match oldest_active(store).await? {
        Some(created) => micros_after(created, interval) <= now_micros(),
        None => true,
    })
}

/// Until the next rotation is due (or the next purge), between a second and [`TICK`].
async fn next_delay(store: &Store, interval: Duration) -> Duration {
    if interval.is_zero() {
        return TICK;
    }
    match oldest_active(store).await {
        Ok(Some(created)) => {
            let wait = micros_after(created, interval).saturating_sub(now_micros());
            Duration::from_micros(u64::try_from(wait).unwrap_or(0))
                .clamp(Duration::from_secs(1), TICK)
        }
        Ok(None) => Duration::from_secs(1),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read when the signing key was made");
            FIRST_RUN
        }
    }
}

/// A stored key as operators see it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// When a retired key leaves the JWKS and is deleted.
    pub expires_at: Option<i64>,
}

/// Every stored key, newest first.
pub async fn list(store: &Store, ring: &KeyRing) -> Result<Vec<KeyInfo>, AppError> {
    let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT kid, alg, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, alg, kid",
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kid, alg, created_at, retired_at)| KeyInfo {
            kid,
            alg,
            created_at,
            retired_at,
            expires_at: retired_at.map(|at| micros_after(at, ring.retention())),
        })
        .collect())
}
