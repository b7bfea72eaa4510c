//! Error reporting (`PORTVAKT_SENTRY_DSN`) against a local endpoint that keeps what it is
//! sent: a 5xx becomes one event with the request id and user id, and nothing a client sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, eventually, spawn_app_with};

type Inbox = Arc<Mutex<Vec<String>>>;

/// A Sentry-compatible ingestion endpoint on a random port; returns a DSN for it.
async fn capture() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    async fn envelope(State(inbox): State<Inbox>, body: Bytes) -> StatusCode {
        inbox
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        StatusCode::OK
    }
    let app = Router::new()
        .route("/api/42/envelope/", post(envelope))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dsn = format!("http://publickey@{}/42", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (dsn, inbox)
}

#[tokio::test]
async fn server_failures_are_reported_with_request_and_user_but_no_input() {
    let (dsn, inbox) = capture().await;
    let app = spawn_app_with(&[("sentry_dsn", &dsn)]).await;
    let (_, pair) = app.new_user().await;

    // Client mistakes are not reported.
    let bad = app
        .post_json("/api/v1/users", &json!({"email": "nope", "password": "x"}))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // With the accounts table gone, a password change fails on our side after the caller is
    // known (sessions still answer); the new password must not travel anywhere. Closing the
    // whole pool instead raced PostgreSQL's change listener, which drops the session cache
    // when its connection ends, so the caller was sometimes unknown.
    assert_eq!(app.me(&pair.access_token).await.status(), StatusCode::OK);
    sqlx::query("ALTER TABLE users RENAME TO users_gone")
        .execute(app.state.store.pool())
        .await
        .unwrap();
    let secret = "a brand new secret passphrase 77";
    let response = app
        .send(
            app.authed(
                reqwest::Method::POST,
                "/api/v1/users/me/password",
                &pair.access_token,
            )
            .json(&json!({"current_password": PASSWORD, "new_password": secret})),
        )
        .await;
    assert!(response.status().is_server_error(), "{}", response.status());
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let arrived = eventually(Duration::from_secs(10), || {
        let inbox = inbox.clone();
        let request_id = request_id.clone();
        async move {
            inbox
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.contains(&request_id))
        }
    })
    .await;
    assert!(arrived, "no event with the request id arrived");
    let events = inbox.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "one event, for the 5xx only: {events:?}");
    let event = &events[0];
    assert!(event.contains("/api/v1/users/me/password"), "{event}");
    let claims = pair.access_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    let user_id = claims["sub"].as_str().unwrap();
    assert!(event.contains(user_id), "the user id is reported: {event}");
    for leaked in [secret, PASSWORD, pair.access_token.as_str()] {
        assert!(!event.contains(leaked), "{leaked} was sent");
    }
}
