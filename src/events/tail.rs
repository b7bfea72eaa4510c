//! Follows the audit log by `seq` and publishes each committed entry on this instance's bus.
//!
//! Why a tail of the table rather than handing entries over in memory: an entry may be
//! announced only once its transaction has committed, and on PostgreSQL entries written by
//! any instance must reach the subscribers of every instance. Reading the table after a
//! wake-up gives both with one code path. `Audit::record` wakes us (see there): on
//! PostgreSQL through a NOTIFY that the server delivers at commit to every instance, carrying
//! only the `seq`, so NOTIFY's 8000-byte limit never matters and no personal data travels
//! through it; on SQLite in-process, before the commit, which is why the SQLite read first
//! waits for the write lock (see [`committed_after`]).
//!
//! Tailing by `seq` misses nothing: appends take the chain head's lock until they commit
//! (a row lock on PostgreSQL, the database lock on SQLite), so entries become visible in
//! `seq` order, and a rolled-back `seq` is taken again by the next append. A slow poll is
//! the backstop for wake-ups that never come (a CLI process writing to SQLite, a listener
//! reconnecting).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::bus::{Bus, Event};
use super::protocol::ServerMessage;
use crate::audit::EntryView;
use crate::audit::store::{self as audit_store, StoredEntry};
use crate::store::{Backend, Store};

/// Entries read per query.
const PAGE: i64 = 256;
/// How often the log is read without a wake-up.
const POLL: Duration = Duration::from_secs(5);
/// How long to wait after a failed read (the database is down) before the next.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until aborted.
pub fn spawn(store: Store, appended: Arc<Notify>, bus: Arc<Bus>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<i64> = None;
        loop {
            match step(&store, &bus, last).await {
                Ok(seq) => last = Some(seq),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the audit log for live events failed");
                    tokio::time::sleep(RETRY).await;
                }
            }
            tokio::select! {
                () = appended.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    })
}

/// Publishes what was committed after `last` and returns the new position. The first call
/// (`last` unknown) starts at the end: subscribers get what happens after they connect.
async fn step(store: &Store, bus: &Bus, last: Option<i64>) -> Result<i64, sqlx::Error> {
    let Some(mut last) = last else {
        return committed_head(store).await;
    };
    if bus.is_empty() {
        // Nobody listens: move to the end without reading entries. Asking again after the
        // read closes the gap in which someone subscribed and an entry committed: they then
        // get everything since the previous step instead. (On SQLite this read may come just
        // before the commit that woke us, so the position can lag; subscribers skip what
        // precedes their own start, see `socket`.)
        let head = committed_head(store).await?;
        if bus.is_empty() {
            return Ok(head);
        }
    }
    loop {
        let entries = committed_after(store, last).await?;
        for entry in &entries {
            bus.publish(Arc::new(event(entry)));
            last = entry.seq;
        }
        if entries.len() < PAGE as usize {
            return Ok(last);
        }
    }
}

/// The `seq` of the last committed entry.
pub async fn committed_head(store: &Store) -> Result<i64, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    Ok(audit_store::head(&mut conn).await?.seq)
}

/// Up to [`PAGE`] committed entries after `after`. On SQLite we were woken while the writer
/// still held its transaction open; taking the write lock (`begin_write`) waits until it has
/// committed or rolled back, so what we read is final. PostgreSQL wakes us only after the
/// commit, and a plain read suffices.
async fn committed_after(store: &Store, after: i64) -> Result<Vec<StoredEntry>, sqlx::Error> {
    match store.backend() {
        Backend::Sqlite => {
            let mut tx = store.begin_write().await?;
            let entries = audit_store::page(&mut tx, after, PAGE).await?;
            tx.rollback().await?;
            Ok(entries)
        }
        Backend::Postgres => {
            let mut conn = store.pool().acquire().await?;
            audit_store::page(&mut conn, after, PAGE).await
        }
    }
}

/// The bus event of a stored entry, its messages rendered once for every recipient.
pub fn event(entry: &StoredEntry) -> Event {
    let render = |view: &EntryView| ServerMessage::Event { event: view }.to_text();
    let view = EntryView::from(entry);
    let for_readers = EntryView::for_audit_readers(entry);
    let audit_message = (for_readers != view).then(|| render(&for_readers).into());
    let for_target = EntryView::for_target(entry);
    let target_message = (for_target != view).then(|| render(&for_target).into());
    Event {
        seq: entry.seq,
        actor_id: entry.actor_id.clone(),
        target_user: (entry.target_type.as_deref() == Some("user"))
            .then(|| entry.target_id.clone())
            .flatten(),
        message: render(&view).into(),
        audit_message,
        target_message,
    }
}
