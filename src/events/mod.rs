//! Live events: the WebSocket at `/api/v1/events` that streams audit entries as they are
//! committed (API.md, "Live events"). A user receives the entries about their own account
//! (as actor, or as the target user, without who else acted from where); a caller with
//! `audit:read` may subscribe to every entry.
//!
//! Pieces: [`tail`] follows the audit log and publishes committed entries on this instance's
//! [`bus`]; each [`socket`] holds a subscription with a bounded queue; [`routes`] checks the
//! browser origin and upgrades.

pub mod bus;
pub mod protocol;
pub mod routes;
pub mod socket;
pub mod tail;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use bus::Bus;
pub use routes::router;

use crate::config::Config;

/// This instance's live events: the bus, and the sockets' shutdown signal and count. One per
/// process, shared through `AppState`.
#[derive(Debug)]
pub struct Events {
    bus: Arc<Bus>,
    stopping: watch::Sender<bool>,
    open: watch::Sender<usize>,
}

impl Events {
    pub fn new(config: &Config) -> Events {
        Events {
            bus: Arc::new(Bus::new(config.events_buffer)),
            stopping: watch::Sender::new(false),
            open: watch::Sender::new(0),
        }
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// Starts following the audit log (see [`tail`]); runs until the handle is aborted.
    pub fn spawn_tail(
        &self,
        store: crate::store::Store,
        appended: Arc<tokio::sync::Notify>,
    ) -> tokio::task::JoinHandle<()> {
        tail::spawn(store, appended, self.bus.clone())
    }

    /// Asks every socket to close (1001, going away). Sockets are not HTTP requests in
    /// flight: left alone they would hold a graceful shutdown until its timeout.
    pub fn shut_down(&self) {
        self.stopping.send_replace(true);
    }

    /// Waits, up to `timeout`, until every socket has said goodbye.
    pub async fn closed(&self, timeout: Duration) {
        let mut open = self.open.subscribe();
        let all_closed = open.wait_for(|n| *n == 0);
        if tokio::time::timeout(timeout, all_closed).await.is_err() {
            tracing::warn!(
                open = *self.open.borrow(),
                "events sockets still open at shutdown"
            );
        }
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Counts a socket as open until the guard is dropped.
    fn opened(&self) -> OpenSocket<'_> {
        self.open.send_modify(|n| *n += 1);
        OpenSocket(&self.open)
    }
}

struct OpenSocket<'a>(&'a watch::Sender<usize>);

impl Drop for OpenSocket<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}
