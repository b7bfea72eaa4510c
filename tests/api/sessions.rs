//! Listing and revoking one's own sessions.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{PASSWORD, problem, spawn_app};

#[tokio::test]
async fn sessions_are_listed_with_the_current_one_marked() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let second = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", "portvakt-test/2.0")
        .json(&serde_json::json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json::<crate::helpers::TokenPair>()
        .await
        .unwrap();
    let response = app
        .send(app.authed(
            Method::GET,
            "/api/v1/users/me/sessions",
            &second.access_token,
        ))
        .await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let list: Value = response.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let current: Vec<&Value> = items.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], second.session_id.as_str());
    assert_eq!(current[0]["user_agent"], "portvakt-test/2.0");
    assert_eq!(current[0]["ip"], "127.0.0.1");
    for s in items {
        for field in ["created_at", "last_seen_at"] {
            assert!(s[field].as_str().unwrap().ends_with('Z'));
        }
    }
    assert!(items.iter().any(|s| s["id"] == first.session_id.as_str()));
}

#[tokio::test]
async fn revoking_a_session_kills_its_tokens_at_once() {
    let app = spawn_app().await;
    let (email, phone) = app.new_user().await;
    let laptop = app.login_ok(&email, PASSWORD).await;
    assert_eq!(app.me(&phone.access_token).await.status(), StatusCode::OK);

    let response = app
        .send(app.authed(
            Method::DELETE,
            &format!("/api/v1/users/me/sessions/{}", phone.session_id),
            &laptop.access_token,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(app.me(&phone.access_token).await, 401).await;
    problem(app.refresh(&phone.refresh_token).await, 401).await;
    assert_eq!(app.me(&laptop.access_token).await.status(), StatusCode::OK);

    let list: Value = app
        .send(app.authed(
            Method::GET,
            "/api/v1/users/me/sessions",
            &laptop.access_token,
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Revoking it again: it is gone.
    let again = app
        .send(app.authed(
            Method::DELETE,
            &format!("/api/v1/users/me/sessions/{}", phone.session_id),
            &laptop.access_token,
        ))
        .await;
    problem(again, 404).await;
}

#[tokio::test]
async fn other_peoples_sessions_are_not_found() {
    let app = spawn_app().await;
    let (_, mallory) = app.new_user().await;
    let (_, alice) = app.new_user().await;
    for id in [
        alice.session_id.clone(),
        uuid::Uuid::now_v7().to_string(),
        "not-a-uuid".to_string(),
    ] {
        let response = app
            .send(app.authed(
                Method::DELETE,
                &format!("/api/v1/users/me/sessions/{id}"),
                &mallory.access_token,
            ))
            .await;
        problem(response, 404).await;
    }
    assert_eq!(app.me(&alice.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoking_the_current_session_is_a_logout() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let response = app
        .send(app.authed(
            Method::DELETE,
            &format!("/api/v1/users/me/sessions/{}", pair.session_id),
            &pair.access_token,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(app.me(&pair.access_token).await, 401).await;
}
