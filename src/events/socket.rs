//! One events connection, from the `auth` message to the close frame.
//!
//! The socket lives as long as the access token that authenticated it, and no longer than
//! its session: it closes with 4401 when the token expires (a stolen short-lived token must
//! not buy an endless stream; the client reconnects with a fresh one), events about the
//! user are sent only after the session is confirmed alive in the database (so the event
//! that ends the session, a logout or a password change elsewhere, closes the socket with
//! 4401 instead of being delivered), and at every ping the session is checked again.
//!
//! The audit stream is the whole log, so `audit:read` is held to a tighter leash than the
//! session: it is read from the database before every audit-stream event about the
//! subscriber (the entry that demotes them is one, and is not delivered), before any other
//! audit-stream event once [`AUDIT_RECHECK`] has passed since the last check, and at every
//! ping.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::bus::{Event, Subscription};
use super::protocol::{AUDIT_STREAM, ClientMessage, ServerMessage, close};
use crate::app::AppState;
use crate::auth::{Caller, caller, sessions};
use crate::error::AppError;
use crate::http::server::ConnectionSlot;
use crate::roles::{self, Permission};

/// How long a closing socket waits for its close frame to go out and the client's reply to
/// come back before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long a successful `audit:read` check holds for audit-stream events about other users.
/// A demotion that no entry about the subscriber announces (a direct database change, a
/// role that lost the permission) thus stops the stream within this time while events flow,
/// instead of at the next ping (30 s by default). Checking before every event instead would
/// cost a query per event per subscriber on the busiest stream there is; with this bound it
/// costs at most one query per subscriber every few seconds, and only while events come.
const AUDIT_RECHECK: Duration = Duration::from_secs(2);

/// The longest wait armed for a token's expiry. Tokens live at most a day in production;
/// the bound only keeps an absurd `PORTVAKT_ACCESS_TOKEN_TTL` from overflowing the timer
/// (such a socket then closes after a year, as if its token had expired).
const LONGEST_TOKEN_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);

/// How a connection ends.
#[derive(Debug)]
enum Ending {
    /// The client closed or vanished: nothing left to say.
    Gone,
    /// We close, first sending `{"type": "error", message}` when there is one.
    Close {
        code: u16,
        reason: &'static str,
        message: Option<&'static str>,
    },
}

impl Ending {
    fn close(code: u16, reason: &'static str) -> Ending {
        Ending::Close {
            code,
            reason,
            message: None,
        }
    }

    fn error(code: u16, reason: &'static str, message: &'static str) -> Ending {
        Ending::Close {
            code,
            reason,
            message: Some(message),
        }
    }

    fn session_ended() -> Ending {
        Ending::error(
            close::UNAUTHORIZED,
            "session ended",
            "The session of this access token has ended.",
        )
    }

    fn token_expired() -> Ending {
        Ending::error(
            close::UNAUTHORIZED,
            "token expired",
            "The access token has expired; reconnect with a fresh one.",
        )
    }

    fn internal() -> Ending {
        Ending::error(
            close::INTERNAL,
            "internal error",
            "The server could not check this connection; reconnect shortly.",
        )
    }
}

/// Serves one upgraded connection. `_slot` keeps it counted among the open connections.
pub async fn run(mut socket: WebSocket, app: AppState, _slot: Option<ConnectionSlot>) {
    let _open = app.events.opened();
    let mut stopping = app.events.stopping();
    let ending = match authenticate(&mut socket, &app, &mut stopping).await {
        Ok(caller) => {
            tracing::info!(user_id = %caller.user_id, session_id = %caller.session_id, "events socket ready");
            let subscription = app.events.bus().subscribe(caller.user_id);
            // Subscribed first, then the position read: every entry committed after `ready`
            // has a later `seq` and arrives; older ones the tail may still hand over are
            // skipped, so a client never sees what happened before it connected.
            match super::tail::committed_head(&app.store).await {
                Ok(after) => {
                    let mut connection = Connection {
                        socket: &mut socket,
                        app: &app,
                        caller: &caller,
                        user: caller.user_id.to_string(),
                        subscription,
                        audit_stream: false,
                        audit_checked: Instant::now(),
                        after,
                        stopping,
                    };
                    connection.serve().await
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the audit log position failed");
                    Ending::internal()
                }
            }
        }
        Err(ending) => ending,
    };
    finish(&mut socket, ending).await;
}

/// Waits for the `auth` message and checks its token like any `/api/v1` request.
async fn authenticate(
    socket: &mut WebSocket,
    app: &AppState,
    stopping: &mut watch::Receiver<bool>,
) -> Result<Caller, Ending> {
    let deadline = tokio::time::sleep(app.config.events_auth_timeout);
    tokio::pin!(deadline);
    loop {
        let received = tokio::select! {
            received = socket.recv() => received,
            () = &mut deadline => {
                return Err(Ending::error(close::TIMEOUT, "auth timeout", "No auth message was received in time."));
            }
            () = stopped(stopping) => return Err(Ending::close(close::GOING_AWAY, "server shutting down")),
        };
        let text = match received {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Err(Ending::Gone),
            // Control frames are not messages; tungstenite answers pings by itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => return Err(not_auth()),
        };
        let Some(ClientMessage::Auth { token }) = ClientMessage::parse(text.as_str()) else {
            return Err(not_auth());
        };
        return match caller::authenticate(app, &token).await {
            Ok(caller) => Ok(caller),
            Err(AppError::Unauthorized { detail, .. }) => {
                Err(Ending::error(close::UNAUTHORIZED, "unauthorized", detail))
            }
            Err(e) => {
                tracing::warn!(error = %e, "checking an events token failed");
                Err(Ending::internal())
            }
        };
    }
}

fn not_auth() -> Ending {
    Ending::error(
        close::UNAUTHORIZED,
        "unauthorized",
        r#"The first message must be {"type": "auth", "token": "<access token>"}."#,
    )
}

/// An authenticated connection.
struct Connection<'a> {
    socket: &'a mut WebSocket,
    app: &'a AppState,
    caller: &'a Caller,
    /// The caller's user id, as events name users.
    user: String,
    subscription: Subscription,
    /// Whether the caller subscribed to the audit stream.
    audit_stream: bool,
    /// When `audit:read` was last confirmed (meaningful once `audit_stream`).
    audit_checked: Instant,
    /// The last entry committed before this connection was ready.
    after: i64,
    stopping: watch::Receiver<bool>,
}

impl Connection<'_> {
    async fn serve(&mut self) -> Ending {
        if let Err(ending) = self
            .send(Message::text(ServerMessage::Ready.to_text()))
            .await
        {
            return ending;
        }
        let interval = self.app.config.events_ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heartbeat = Heartbeat::default();
        let expired = tokio::time::sleep(until_expiry(
            self.caller.token.expires_at,
            time::OffsetDateTime::now_utc().unix_timestamp(),
        ));
        tokio::pin!(expired);
        loop {
            let step = tokio::select! {
                biased;
                () = stopped(&mut self.stopping) => Err(Ending::close(close::GOING_AWAY, "server shutting down")),
                () = &mut expired => Err(Ending::token_expired()),
                _ = &mut self.subscription.cut_off => Err(too_slow()),
                received = self.socket.recv() => self.received(received, &mut heartbeat).await,
                Some(event) = self.subscription.events.recv() => self.deliver(&event).await,
                _ = ping.tick() => self.ping(&mut heartbeat).await,
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    /// Sends a message unless shutdown begins or the bus cuts us off while the client is
    /// not reading. The frame is buffered before the wait, so giving up leaves it intact.
    async fn send(&mut self, message: Message) -> Result<(), Ending> {
        tokio::select! {
            biased;
            sent = self.socket.send(message) => sent.map_err(|_| Ending::Gone),
            _ = &mut self.subscription.cut_off => Err(too_slow()),
            () = stopped(&mut self.stopping) => Err(Ending::close(close::GOING_AWAY, "server shutting down")),
        }
    }

    async fn deliver(&mut self, event: &Event) -> Result<(), Ending> {
        if event.seq <= self.after {
            return Ok(());
        }
        // The entry that ends this session (logout, password change, revocation) is about
        // this user; read past the cache, which this instance may update only after we woke.
        let mine = event.concerns(&self.user);
        if mine {
            match sessions::is_active_in_db(&self.app.store, self.caller.session_id).await {
                Ok(true) => {}
                Ok(false) => return Err(Ending::session_ended()),
                Err(e) => {
                    tracing::warn!(error = %e, "checking an events session failed");
                    return Err(Ending::internal());
                }
            }
        }
        // Likewise the entry that takes `audit:read` away is about this user; others get the
        // bounded check of `AUDIT_RECHECK`.
        if self.audit_stream && (mine || self.audit_checked.elapsed() >= AUDIT_RECHECK) {
            self.check_audit_read().await?;
        }
        let message = event.message_for(&self.user, self.audit_stream).clone();
        self.send(Message::Text(message)).await
    }

    /// Confirms, from the database, that the caller may still read the audit stream.
    async fn check_audit_read(&mut self) -> Result<(), Ending> {
        match roles::require(
            &self.app.store,
            self.caller.principal(),
            Permission::AuditRead,
        )
        .await
        {
            Ok(()) => {
                self.audit_checked = Instant::now();
                Ok(())
            }
            Err(AppError::Forbidden | AppError::Refused { .. }) => Err(forbidden()),
            Err(e) => {
                tracing::warn!(error = %e, "checking the audit:read permission failed");
                Err(Ending::internal())
            }
        }
    }

    async fn received(
        &mut self,
        received: Option<Result<Message, axum::Error>>,
        heartbeat: &mut Heartbeat,
    ) -> Result<(), Ending> {
        let text = match received {
            None | Some(Err(_)) => return Err(Ending::Gone),
            Some(Ok(Message::Close(_))) => {
                // tungstenite queued the reply; the next read sends it and sees the end.
                let _ = tokio::time::timeout(CLOSE_GRACE, self.socket.recv()).await;
                return Err(Ending::Gone);
            }
            Some(Ok(Message::Pong(_))) => {
                heartbeat.answered();
                return Ok(());
            }
            Some(Ok(Message::Ping(_))) => return Ok(()),
            Some(Ok(Message::Binary(_))) => {
                return self.error("Messages are JSON text frames.").await;
            }
            Some(Ok(Message::Text(text))) => text,
        };
        match ClientMessage::parse(text.as_str()) {
            Some(ClientMessage::Subscribe { stream }) if stream == AUDIT_STREAM => {
                match roles::require(
                    &self.app.store,
                    self.caller.principal(),
                    Permission::AuditRead,
                )
                .await
                {
                    Ok(()) => {
                        self.subscription.add_audit_stream();
                        self.audit_stream = true;
                        self.audit_checked = Instant::now();
                        let subscribed = ServerMessage::Subscribed {
                            stream: AUDIT_STREAM,
                        };
                        self.send(Message::text(subscribed.to_text())).await
                    }
                    Err(AppError::Forbidden | AppError::Refused { .. }) => Err(forbidden()),
                    Err(e) => {
                        tracing::warn!(error = %e, "checking the audit:read permission failed");
                        self.error("The subscription could not be checked; try again.")
                            .await
                    }
                }
            }
            Some(ClientMessage::Subscribe { .. }) => {
                self.error(r#"Unknown stream; the one there is is "audit"."#)
                    .await
            }
            Some(ClientMessage::Auth { .. }) => self.error("Already authenticated.").await,
            // Unknown messages get an answer rather than a close, so that a client written
            // against a later version of the protocol keeps its connection.
            None => {
                self.error(r#"Unknown message; expected {"type": "subscribe", "stream": "audit"}."#)
                    .await
            }
        }
    }

    async fn error(&mut self, message: &str) -> Result<(), Ending> {
        self.send(Message::text(ServerMessage::Error { message }.to_text()))
            .await
    }

    /// Closes a connection whose pings went unanswered twice, re-checks what the connection
    /// was granted, and pings.
    async fn ping(&mut self, heartbeat: &mut Heartbeat) -> Result<(), Ending> {
        if heartbeat.missed_twice() {
            metrics::counter!(crate::telemetry::metrics::WEBSOCKET_DROPPED, "reason" => "pong_timeout")
                .increment(1);
            return Err(Ending::close(close::TIMEOUT, "no pong"));
        }
        match self
            .app
            .sessions
            .is_active(&self.app.store, self.caller.session_id)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(Ending::session_ended()),
            Err(e) => {
                tracing::warn!(error = %e, "checking an events session failed");
                return Err(Ending::internal());
            }
        }
        if self.audit_stream {
            self.check_audit_read().await?;
        }
        heartbeat.pinged();
        self.send(Message::Ping(Default::default())).await
    }
}

/// How long until a token expiring at `expires_at` is refused, both in Unix seconds: the
/// token service accepts it while `now < expires_at`. `now` is rounded down, so the socket
/// closes at most a second after the token stops working, never before.
fn until_expiry(expires_at: i64, now: i64) -> Duration {
    let left = u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0);
    Duration::from_secs(left).min(LONGEST_TOKEN_WAIT)
}

fn too_slow() -> Ending {
    Ending::close(close::TOO_SLOW, "too slow to read events")
}

fn forbidden() -> Ending {
    Ending::error(
        close::FORBIDDEN,
        "forbidden",
        "The audit stream needs the audit:read permission.",
    )
}

/// Pings sent and pongs received.
#[derive(Debug, Default)]
struct Heartbeat {
    /// A ping is out and no pong has come since.
    awaiting: bool,
    /// Pings in a row that got no pong.
    missed: u32,
}

impl Heartbeat {
    fn pinged(&mut self) {
        self.awaiting = true;
    }

    fn answered(&mut self) {
        self.awaiting = false;
        self.missed = 0;
    }

    /// Called when the next ping is due: counts the previous one as missed if unanswered.
    fn missed_twice(&mut self) -> bool {
        if self.awaiting {
            self.missed += 1;
        }
        self.missed >= 2
    }
}

/// Says why (when there is someone to tell) and closes.
async fn finish(socket: &mut WebSocket, ending: Ending) {
    let Ending::Close {
        code,
        reason,
        message,
    } = ending
    else {
        return;
    };
    tracing::info!(code, reason, "events socket closed");
    let closing = async {
        if let Some(message) = message {
            socket
                .send(Message::text(ServerMessage::Error { message }.to_text()))
                .await?;
        }
        socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await?;
        // RFC 6455 §7.1.1: the server closes TCP after the client's close reply.
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Ok::<(), axum::Error>(())
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
}

/// Resolves once shutdown has begun.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        // The hub is gone, and with it any shutdown signal: never resolve.
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_waited_for_until_its_expiry_and_no_longer() {
        assert_eq!(until_expiry(1_000, 990), Duration::from_secs(10));
        assert_eq!(until_expiry(1_000, 1_000), Duration::ZERO);
        assert_eq!(
            until_expiry(1_000, 2_000),
            Duration::ZERO,
            "already expired"
        );
        assert_eq!(until_expiry(i64::MAX, i64::MIN), LONGEST_TOKEN_WAIT);
    }

    #[test]
    fn two_unanswered_pings_in_a_row_end_the_heartbeat() {
        let mut h = Heartbeat::default();
        assert!(!h.missed_twice(), "nothing sent yet");
        h.pinged();
        assert!(!h.missed_twice(), "one missed");
        h.pinged();
        assert!(h.missed_twice(), "two missed");

        let mut h = Heartbeat::default();
        h.pinged();
        assert!(!h.missed_twice());
        h.pinged();
        h.answered();
        assert!(!h.missed_twice(), "a pong forgives what was missed");
        h.pinged();
        assert!(!h.missed_twice());
    }
}
