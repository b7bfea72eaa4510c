//! Live events over a real WebSocket (API.md, "Live events"): the auth handshake and its
//! close codes, who receives which audit entries, the audit stream, pings, slow clients,
//! browser origins, revoked sessions, shutdown, and two instances on one PostgreSQL.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use portvakt::accounts::UserId;
use portvakt::audit::{Action, Entry};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::helpers::{PASSWORD, TestApp, TokenPair, spawn_app, spawn_app_with};

/// How long a test waits for a message it expects before calling the server stuck. Only a
/// guard against hanging forever: nothing is asserted about how fast anything is.
const PATIENCE: Duration = Duration::from_secs(20);

/// A client end of `/api/v1/events`.
struct Socket {
    ws: WebSocketStream<TcpStream>,
}

/// How the server ended a connection.
#[derive(Debug)]
struct Closed {
    code: Option<u16>,
    /// The close frame's reason.
    reason: String,
    /// The text messages that came before the close frame.
    messages: Vec<Value>,
}

fn events_url(app: &TestApp) -> String {
    format!("{}/api/v1/events", app.base.replacen("http://", "ws://", 1))
}

async fn tcp(app: &TestApp, receive_buffer: Option<u32>) -> TcpStream {
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.connect(addr).await.unwrap()
}

/// Opens a socket (as a non-browser client: no `Origin`).
async fn connect(app: &TestApp) -> Socket {
    try_connect(app, None, None)
        .await
        .expect("the upgrade succeeds")
}

async fn try_connect(
    app: &TestApp,
    origin: Option<&str>,
    receive_buffer: Option<u32>,
) -> Result<Socket, WsError> {
    let mut request = events_url(app).into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let stream = tcp(app, receive_buffer).await;
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(Socket { ws })
}

impl Socket {
    async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    /// Authenticates and expects `ready`.
    async fn auth(&mut self, token: &str) {
        self.send(json!({ "type": "auth", "token": token })).await;
        assert_eq!(self.next().await, json!({ "type": "ready" }));
    }

    /// The next frame, whatever it is.
    async fn frame(&mut self) -> Option<Result<Message, WsError>> {
        tokio::time::timeout(PATIENCE, self.ws.next())
            .await
            .expect("the server sends something")
    }

    /// The next text message as JSON (pings are answered by the client library on the way).
    async fn next(&mut self) -> Value {
        loop {
            match self.frame().await {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The audit entry of the next message, which must be an event.
    async fn event(&mut self) -> Value {
        let message = self.next().await;
        assert_eq!(message["type"], "event", "{message}");
        message["event"].clone()
    }

    /// Reads to the end of the connection.
    async fn closed(&mut self) -> Closed {
        let mut messages = Vec::new();
        loop {
            match self.frame().await {
                Some(Ok(Message::Text(text))) => {
                    messages.push(serde_json::from_str(&text).unwrap())
                }
                Some(Ok(Message::Close(frame))) => {
                    // Reading on sends the client's reply, completing the close handshake.
                    while let Some(Ok(_)) = self.frame().await {}
                    return Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        messages,
                    };
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => {
                    return Closed {
                        code: None,
                        reason: String::new(),
                        messages,
                    };
                }
            }
        }
    }
}

async fn user_id(app: &TestApp, access_token: &str) -> String {
    let me: Value = app.me(access_token).await.json().await.unwrap();
    me["id"].as_str().unwrap().to_string()
}

/// Subscribes `pair`'s socket to the audit stream.
async fn audit_stream(app: &TestApp, pair: &TokenPair) -> Socket {
    let mut socket = connect(app).await;
    socket.auth(&pair.access_token).await;
    socket
        .send(json!({ "type": "subscribe", "stream": "audit" }))
        .await;
    assert_eq!(socket.next().await["type"], "subscribed");
    socket
}

/// Takes the admin role of `email` away in the database, as no entry announces.
async fn demote(app: &TestApp, email: &str) {
    sqlx::query(
        "DELETE FROM user_roles WHERE role = 'admin' AND user_id IN \
         (SELECT id FROM users WHERE email_key = $1)",
    )
    .bind(email)
    .execute(app.state.store.pool())
    .await
    .unwrap();
}

/// A wrong login for `email` sent with `user_agent`.
async fn wrong_login(app: &TestApp, email: &str, user_agent: &str) {
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", user_agent)
        .json(&json!({ "email": email, "password": "not the password at all" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// Appends `count` entries about `user` in one transaction, through the same `Audit` the
/// service uses: real entries, many more than logins (an argon2 hash each) could make.
async fn append_entries(app: &TestApp, user: &str, first: usize, count: usize, padding: &str) {
    let user = UserId::parse(user).unwrap();
    let mut tx = app.state.store.begin_write().await.unwrap();
    for n in first..first + count {
        let entry = Entry::new(Action::Unlock)
            .target("user", user)
            .detail("n", n)
            .detail("padding", padding);
        app.state.audit.record(&mut tx, entry).await.unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_user_receives_its_own_login_and_logout_as_audit_entries() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let id = user_id(&app, &first.access_token).await;
    let mut socket = connect(&app).await;
    socket.auth(&first.access_token).await;

    let second = app.login_ok(&email, PASSWORD).await;
    let login = socket.event().await;
    assert_eq!(app.logout(&second.access_token).await.status(), 204);
    let logout = socket.event().await;

    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&login),
        [
            "action",
            "actor_id",
            "at",
            "details",
            "id",
            "ip",
            "outcome",
            "target_id",
            "target_type",
            "user_agent"
        ],
        "exactly the audit entry of API.md: {login}"
    );
    assert_eq!(login["action"], "login");
    assert_eq!(login["actor_id"], id.as_str());
    assert_eq!(login["target_type"], "session");
    assert_eq!(login["target_id"], second.session_id.as_str());
    assert_eq!(login["outcome"], "success");
    assert_eq!(login["ip"], "127.0.0.1");
    assert_eq!(login["details"], json!({}));
    assert!(uuid::Uuid::parse_str(login["id"].as_str().unwrap()).is_ok());
    let at = login["at"].as_str().unwrap();
    assert!(
        at.ends_with('Z')
            && time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .is_ok(),
        "{at}"
    );
    assert_eq!(logout["action"], "logout");
    assert_eq!(logout["target_id"], second.session_id.as_str());
}

#[tokio::test]
async fn a_user_does_not_receive_another_users_events() {
    let app = spawn_app().await;
    let (alice_email, alice) = app.new_user().await;
    let mut socket = connect(&app).await;
    socket.auth(&alice.access_token).await;

    let (_, bob) = app.new_user().await;
    app.logout(&bob.access_token).await;
    // Events arrive in the log's order: if Bob's had been sent, they would come first.
    let mine = app.login_ok(&alice_email, PASSWORD).await;

    let event = socket.event().await;
    assert_eq!(event["action"], "login");
    assert_eq!(event["target_id"], mine.session_id.as_str());
}

#[tokio::test]
async fn failed_logins_against_the_account_reach_its_owner() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let id = user_id(&app, &pair.access_token).await;
    let mut socket = connect(&app).await;
    socket.auth(&pair.access_token).await;

    wrong_login(&app, &email, "GuessersBrowser/2.0").await;

    let event = socket.event().await;
    assert_eq!(event["action"], "login_failed");
    assert_eq!(event["actor_id"], Value::Null);
    assert_eq!(event["target_type"], "user");
    assert_eq!(event["target_id"], id.as_str());
    assert_eq!(event["outcome"], "failure");
    assert_eq!(event["details"], json!({ "reason": "wrong_password" }));
    // Nobody identified acted: where the attempt came from is the owner's to know.
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["user_agent"], "GuessersBrowser/2.0");
}

#[tokio::test]
async fn an_admins_action_on_an_account_reaches_its_owner_without_who_or_from_where() {
    let app = spawn_app_with(&[("lockout_threshold", "2")]).await;
    let root = app.admin("root@example.com").await;
    let root_id = user_id(&app, &root.access_token).await;
    let (email, pair) = app.new_user().await;
    let id = user_id(&app, &pair.access_token).await;
    let mut owner = connect(&app).await;
    owner.auth(&pair.access_token).await;
    let mut actor = connect(&app).await;
    actor.auth(&root.access_token).await;
    let mut auditor = audit_stream(&app, &root).await;

    wrong_login(&app, &email, "GuessersBrowser/2.0").await;
    wrong_login(&app, &email, "GuessersBrowser/2.0").await;
    let unlock = app
        .send(
            app.authed(
                reqwest::Method::POST,
                &format!("/api/v1/admin/users/{id}/unlock"),
                &root.access_token,
            )
            .header("user-agent", "AdminsPrivateBrowser/1.0"),
        )
        .await;
    assert!(unlock.status().is_success(), "{}", unlock.status());

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(owner.event().await);
    }
    let actions: Vec<&str> = seen.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["login_failed", "login_failed", "lockout", "unlock"]
    );
    for attempt in &seen[..3] {
        assert_eq!(attempt["ip"], "127.0.0.1", "{attempt}");
        assert_eq!(attempt["user_agent"], "GuessersBrowser/2.0", "{attempt}");
    }
    let unlocked = &seen[3];
    assert_eq!(unlocked["target_id"], id.as_str());
    assert_eq!(unlocked["actor_id"], Value::Null, "{unlocked}");
    assert_eq!(unlocked["ip"], Value::Null, "{unlocked}");
    assert_eq!(unlocked["user_agent"], Value::Null, "{unlocked}");

    // The admin who acted, and the audit stream, get the whole entry.
    for socket in [&mut actor, &mut auditor] {
        let mut event = socket.event().await;
        while event["action"] != "unlock" {
            event = socket.event().await;
        }
        assert_eq!(event["actor_id"], root_id.as_str(), "{event}");
        assert_eq!(event["ip"], "127.0.0.1", "{event}");
        assert_eq!(event["user_agent"], "AdminsPrivateBrowser/1.0", "{event}");
    }
}

#[tokio::test]
async fn a_bad_token_is_answered_with_an_error_and_closed_with_4401() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    // One character in the middle of the signature changed.
    let mut tampered = pair.access_token.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    for token in ["garbage", tampered.as_str()] {
        let mut socket = connect(&app).await;
        socket.send(json!({ "type": "auth", "token": token })).await;
        let closed = socket.closed().await;
        assert_eq!(closed.code, Some(4401), "{token}");
        assert_eq!(closed.messages.len(), 1);
        assert_eq!(closed.messages[0]["type"], "error");
        assert!(closed.messages[0]["message"].is_string());
    }
}

#[tokio::test]
async fn a_token_of_a_session_that_ended_is_refused_with_4401() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    assert_eq!(app.logout(&pair.access_token).await.status(), 204);

    let mut socket = connect(&app).await;
    socket
        .send(json!({ "type": "auth", "token": pair.access_token }))
        .await;

    assert_eq!(socket.closed().await.code, Some(4401));
}

#[tokio::test]
async fn a_first_message_that_is_not_auth_is_closed_with_4401() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let firsts = [
        Message::text(json!({ "type": "subscribe", "stream": "audit" }).to_string()),
        Message::text("not json"),
        Message::text(
            json!({ "type": "auth", "token": pair.access_token, "extra": 1 }).to_string(),
        ),
        Message::binary(b"\x00\x01".to_vec()),
    ];
    for first in firsts {
        let mut socket = connect(&app).await;
        socket.ws.send(first.clone()).await.unwrap();
        let closed = socket.closed().await;
        assert_eq!(closed.code, Some(4401), "{first:?}");
        assert_eq!(closed.messages[0]["type"], "error");
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_with_4408() {
    let app = spawn_app_with(&[("events_auth_timeout", "200ms")]).await;
    let mut socket = connect(&app).await;

    let closed = socket.closed().await;

    assert_eq!(closed.code, Some(4408));
    assert_eq!(closed.messages[0]["type"], "error");
}

#[tokio::test]
async fn a_plain_user_asking_for_the_audit_stream_is_closed_with_4403() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let mut socket = connect(&app).await;
    socket.auth(&pair.access_token).await;

    socket
        .send(json!({ "type": "subscribe", "stream": "audit" }))
        .await;

    let closed = socket.closed().await;
    assert_eq!(closed.code, Some(4403));
    assert_eq!(closed.messages[0]["type"], "error");
}

#[tokio::test]
async fn an_admin_on_the_audit_stream_receives_everyones_events_once_each() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let mut socket = connect(&app).await;
    socket.auth(&root.access_token).await;
    socket
        .send(json!({ "type": "subscribe", "stream": "audit" }))
        .await;
    assert_eq!(socket.next().await["type"], "subscribed");

    let (email, _) = app.new_user().await;
    app.login(&email, "not the password at all").await;
    app.login_ok("root@example.com", PASSWORD).await;

    let mut actions = Vec::new();
    for _ in 0..4 {
        actions.push(socket.event().await["action"].as_str().unwrap().to_string());
    }
    assert_eq!(actions, ["signup", "login", "login_failed", "login"]);
    // The admin's own login came once, though it is both theirs and on the audit stream.
    socket
        .send(json!({ "type": "subscribe", "stream": "nonsense" }))
        .await;
    assert_eq!(socket.next().await["type"], "error", "not another event");
}

#[tokio::test]
async fn audit_readers_see_the_address_tried_in_a_login_for_an_unknown_account() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let mut socket = connect(&app).await;
    socket.auth(&root.access_token).await;
    socket
        .send(json!({ "type": "subscribe", "stream": "audit" }))
        .await;
    assert_eq!(socket.next().await["type"], "subscribed");

    app.login("nobody@example.com", "whatever it is").await;

    let event = socket.event().await;
    assert_eq!(event["action"], "login_failed");
    assert_eq!(event["target_type"], Value::Null);
    assert_eq!(
        event["details"],
        json!({ "reason": "unknown_email", "email": "nobody@example.com" })
    );
}

#[tokio::test]
async fn unknown_messages_after_auth_get_an_error_and_the_connection_stays() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let mut socket = connect(&app).await;
    socket.auth(&pair.access_token).await;

    for message in [
        json!({ "type": "hello" }),
        json!({ "type": "auth", "token": pair.access_token }),
        json!({ "type": "subscribe", "stream": "everything" }),
    ] {
        socket.send(message.clone()).await;
        assert_eq!(socket.next().await["type"], "error", "{message}");
    }

    app.login_ok(&email, PASSWORD).await;
    assert_eq!(socket.event().await["action"], "login");
}

#[tokio::test]
async fn a_client_message_over_16_kib_ends_the_connection() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let mut socket = connect(&app).await;
    socket.auth(&pair.access_token).await;

    let huge = "x".repeat(64 * 1024);
    let _ = socket
        .ws
        .send(Message::text(json!({ "type": huge }).to_string()))
        .await;

    let closed = socket.closed().await;
    assert!(closed.messages.is_empty(), "{:?}", closed.messages);
}

#[tokio::test]
async fn the_server_pings_and_a_client_that_answers_stays_connected() {
    let app = spawn_app_with(&[("events_ping_interval", "100ms")]).await;
    let (email, pair) = app.new_user().await;
    let mut socket = connect(&app).await;
    socket.auth(&pair.access_token).await;

    // Reading answers each ping (the client library queues the pong and sends it on the
    // next read), so five pings in a row mean the connection outlived several intervals.
    let mut pings = 0;
    while pings < 5 {
        match socket.frame().await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }

    // Reading on while the login runs, or the pings it would leave unanswered end the socket.
    let (_, event) = tokio::join!(app.login_ok(&email, PASSWORD), socket.event());
    assert_eq!(event["action"], "login");
}

#[tokio::test]
async fn a_client_that_leaves_two_pings_unanswered_is_closed() {
    let app = spawn_app_with(&[("events_ping_interval", "50ms")]).await;
    let (_, pair) = app.new_user().await;
    let mut socket = connect(&app).await;
    socket.auth(&pair.access_token).await;

    // Not reading means not answering. The pause is many ping intervals long; the outcome
    // is judged by the close frame, not by how long it took.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(socket.closed().await.code, Some(4408));
}

#[tokio::test]
async fn a_slow_client_is_dropped_with_1008_while_a_fast_one_receives_everything() {
    let app = spawn_app_with(&[("events_buffer", "64")]).await;
    let root = app.admin("root@example.com").await;
    let root_id = user_id(&app, &root.access_token).await;
    // The slow client's small receive buffer fills after a few frames; then the server's
    // send buffer, then its queue on the bus.
    let mut slow = try_connect(&app, None, Some(4096)).await.unwrap();
    slow.auth(&root.access_token).await;
    let mut fast = connect(&app).await;
    fast.auth(&root.access_token).await;
    for socket in [&mut slow, &mut fast] {
        socket
            .send(json!({ "type": "subscribe", "stream": "audit" }))
            .await;
        assert_eq!(socket.next().await["type"], "subscribed");
    }

    // Batches smaller than the queue, each read by the fast client before the next, until
    // the server has given up on the slow one (its kernel buffers hold some megabytes).
    let padding = "p".repeat(4096);
    let batch = 32;
    let mut sent = 0;
    let mut received = Vec::new();
    let mut batches_after_the_drop = 0;
    while batches_after_the_drop < 3 {
        assert!(sent < 20_000, "the slow client was never dropped");
        append_entries(&app, &root_id, sent, batch, &padding).await;
        sent += batch;
        for _ in 0..batch {
            received.push(fast.event().await["details"]["n"].as_u64().unwrap());
        }
        if app.state.events.bus().len() == 1 {
            batches_after_the_drop += 1;
        }
    }

    let expected: Vec<u64> = (0..sent as u64).collect();
    assert_eq!(
        received, expected,
        "the fast client got every event, in order"
    );
    let closed = slow.closed().await;
    assert_eq!(closed.code, Some(1008));
    assert!(
        closed.messages.len() < sent,
        "the slow client got {} of {sent}",
        closed.messages.len()
    );
}

#[tokio::test]
async fn a_browser_origin_outside_the_cors_list_is_refused_before_the_upgrade() {
    let app = spawn_app_with(&[("cors_origins", "https://app.example.com")]).await;

    match try_connect(&app, Some("https://evil.example"), None).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        Err(e) => panic!("expected a 403, got {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
    assert!(
        try_connect(&app, Some("https://app.example.com"), None)
            .await
            .is_ok()
    );
    assert!(try_connect(&app, None, None).await.is_ok(), "non-browsers");
}

#[tokio::test]
async fn with_no_cors_origins_every_browser_origin_is_refused() {
    let app = spawn_app().await;
    match try_connect(&app, Some(app.base.as_str()), None).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_plain_get_is_a_problem_not_an_upgrade() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    crate::helpers::problem(response, 400).await;
}

#[tokio::test]
async fn logging_out_the_sockets_session_closes_it_with_4401() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let mut socket = connect(&app).await;
    socket.auth(&pair.access_token).await;

    assert_eq!(app.logout(&pair.access_token).await.status(), 204);

    let closed = socket.closed().await;
    assert_eq!(closed.code, Some(4401));
    assert!(
        closed.messages.iter().all(|m| m["type"] == "error"),
        "the entry that ended the session is not delivered on it: {:?}",
        closed.messages
    );
}

#[tokio::test]
async fn a_socket_closes_with_4401_when_its_access_token_expires() {
    let app = spawn_app_with(&[("access_token_ttl", "2s")]).await;
    let (email, _) = app.new_user().await;
    // A token this short-lived may expire before its `auth` on a busy machine: then a fresh
    // one is tried, so what is judged is the close after `ready`, not how fast we got there.
    let mut attempts = 0;
    let (mut socket, pair) = loop {
        attempts += 1;
        assert!(attempts <= 10, "no token lived long enough to authenticate");
        let pair = app.login_ok(&email, PASSWORD).await;
        let mut socket = connect(&app).await;
        socket
            .send(json!({ "type": "auth", "token": pair.access_token }))
            .await;
        if socket.next().await["type"] == "ready" {
            break (socket, pair);
        }
    };

    let closed = socket.closed().await;
    assert_eq!(closed.code, Some(4401));
    assert_eq!(closed.reason, "token expired");
    assert_eq!(closed.messages.len(), 1, "{:?}", closed.messages);
    assert_eq!(closed.messages[0]["type"], "error");
    // The session lives on: the client gets a fresh token and reconnects.
    assert_eq!(app.refresh(&pair.refresh_token).await.status(), 200);
}

#[tokio::test]
async fn an_admin_demoted_in_the_database_is_closed_with_4403_instead_of_an_event_about_them() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let mut socket = audit_stream(&app, &root).await;

    demote(&app, "root@example.com").await;
    wrong_login(&app, "root@example.com", "GuessersBrowser/2.0").await;

    let closed = socket.closed().await;
    assert_eq!(closed.code, Some(4403));
    assert!(
        closed.messages.iter().all(|m| m["type"] == "error"),
        "nothing from the audit stream after the demotion: {:?}",
        closed.messages
    );
}

#[tokio::test]
async fn a_demoted_admin_stops_receiving_others_events_within_seconds_not_at_a_ping() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let (email, _) = app.new_user().await;
    let mut socket = audit_stream(&app, &root).await;

    demote(&app, "root@example.com").await;
    // Longer than the 2 s for which a check of `audit:read` holds (`AUDIT_RECHECK`), far
    // shorter than the 30 s between pings: the next event must be preceded by a check.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wrong_login(&app, &email, "GuessersBrowser/2.0").await;

    let closed = socket.closed().await;
    assert_eq!(closed.code, Some(4403));
    assert!(
        closed.messages.iter().all(|m| m["type"] == "error"),
        "another user's event after the demotion: {:?}",
        closed.messages
    );
}

#[tokio::test]
async fn a_password_change_elsewhere_closes_the_other_sessions_sockets() {
    let app = spawn_app().await;
    let (email, watcher) = app.new_user().await;
    let mut socket = connect(&app).await;
    socket.auth(&watcher.access_token).await;
    let other = app.login_ok(&email, PASSWORD).await;
    assert_eq!(socket.event().await["action"], "login");

    let response = app
        .send(
            app.authed(
                reqwest::Method::POST,
                "/api/v1/users/me/password",
                &other.access_token,
            )
            .json(&json!({
                "current_password": PASSWORD,
                "new_password": crate::helpers::OTHER_PASSWORD
            })),
        )
        .await;
    assert_eq!(response.status(), 204);

    assert_eq!(socket.closed().await.code, Some(4401));
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_1001_without_waiting_for_the_timeout() {
    // A shutdown timeout longer than any test: if open sockets held the drain, `stop` would
    // not finish and PATIENCE would run out.
    let mut app = spawn_app_with(&[("shutdown_timeout", "1h")]).await;
    let (_, pair) = app.new_user().await;
    let mut ready = connect(&app).await;
    ready.auth(&pair.access_token).await;
    let mut waiting = connect(&app).await;

    let stopped = app.stop();

    assert_eq!(ready.closed().await.code, Some(1001));
    assert_eq!(waiting.closed().await.code, Some(1001));
    tokio::time::timeout(PATIENCE, stopped)
        .await
        .expect("shutdown finished")
        .unwrap();
}

#[tokio::test]
async fn upgraded_sockets_count_towards_the_per_address_connection_cap() {
    let app = spawn_app_with(&[("max_connections_per_ip", "2")]).await;
    let first = connect(&app).await;
    let _second = connect(&app).await;

    assert!(
        try_connect(&app, None, None).await.is_err(),
        "a third connection from the address is refused"
    );
    drop(first);
    let app = &app;
    assert!(
        crate::helpers::eventually(PATIENCE, || async move {
            try_connect(app, None, None).await.is_ok()
        })
        .await,
        "closing one frees its place"
    );
}

#[tokio::test]
async fn an_event_written_through_one_instance_reaches_a_subscriber_of_another() {
    let db = crate::helpers::fresh_database().await;
    if !db.is_postgres() {
        crate::helpers::skipped(
            "an_event_written_through_one_instance_reaches_a_subscriber_of_another",
            "two instances share a database only on PostgreSQL; set PORTVAKT_TEST_DATABASE_URL",
        );
        return;
    }
    let url = db.url().unwrap().to_string();
    let secret = portvakt::crypto::secret::generate();
    let a = crate::helpers::spawn_app_on(db, &[("secret_key", secret.as_str())]).await;
    let b = crate::helpers::spawn_app_on(
        crate::helpers::TestDatabase::Sqlite,
        &[("secret_key", secret.as_str()), ("database_url", &url)],
    )
    .await;
    let (email, pair) = a.new_user().await;
    let mut on_b = connect(&b).await;
    on_b.auth(&pair.access_token).await;

    let second = a.login_ok(&email, PASSWORD).await;
    let event = on_b.event().await;
    assert_eq!(event["action"], "login");
    assert_eq!(event["target_id"], second.session_id.as_str());

    // A logout on A of the session B's socket runs on closes it on B.
    assert_eq!(a.logout(&pair.access_token).await.status(), 204);
    assert_eq!(on_b.closed().await.code, Some(4401));
}
