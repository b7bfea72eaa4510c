//! One events connection, from the `auth` message to the close frame.
//!
//! The socket lives as long as the session behind its token: events about the user are sent
//! only after the session is confirmed alive in the database (so the event that ends the
//! session, a logout or a password change elsewhere, closes the socket with 4401 instead of
//! being delivered), and at every ping the session (and, for the audit stream, the
//! `audit:read` permission) is checked again. The access token's own expiry does not end
//! the socket: it was checked once, at `auth`, and the session is what can be revoked.

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
                        subscription,
                        audit_stream: false,
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
    subscription: Subscription,
    /// Whether the caller subscribed to the audit stream.
    audit_stream: bool,
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
        loop {
            let step = tokio::select! {
                biased;
                () = stopped(&mut self.stopping) => Err(Ending::close(close::GOING_AWAY, "server shutting down")),
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
        if event.concerns(&self.caller.user_id.to_string()) {
            match sessions::is_active_in_db(&self.app.store, self.caller.session_id).await {
                Ok(true) => {}
                Ok(false) => return Err(Ending::session_ended()),
                Err(e) => {
                    tracing::warn!(error = %e, "checking an events session failed");
                    return Err(Ending::internal());
                }
            }
        }
        let message = event.message_for(self.audit_stream).clone();
        self.send(Message::Text(message)).await
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
                match roles::require(&self.app.store, self.caller.user_id, Permission::AuditRead)
                    .await
                {
                    Ok(()) => {
                        self.subscription.add_audit_stream();
                        self.audit_stream = true;
                        let subscribed = ServerMessage::Subscribed {
                            stream: AUDIT_STREAM,
                        };
                        self.send(Message::text(subscribed.to_text())).await
                    }
                    Err(AppError::Forbidden) => Err(forbidden()),
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
            match roles::require(&self.app.store, self.caller.user_id, Permission::AuditRead).await
            {
                Ok(()) => {}
                Err(AppError::Forbidden) => return Err(forbidden()),
                Err(e) => {
                    tracing::warn!(error = %e, "checking the audit:read permission failed");
                    return Err(Ending::internal());
                }
            }
        }
        heartbeat.pinged();
        self.send(Message::Ping(Default::default())).await
    }
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
