//! Refresh token rotation and reuse detection.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TokenPair, problem, spawn_app};

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_keeps_the_session() {
    let app = spawn_app().await;
    let (_, first) = app.new_user().await;
    let response = app.refresh(&first.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let second: TokenPair = response.json().await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(second.token_type, "Bearer");
    assert_eq!(app.me(&second.access_token).await.status(), StatusCode::OK);
    let third: TokenPair = app
        .refresh(&second.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.me(&third.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let (_, first) = app.new_user().await;
    let second: TokenPair = app
        .refresh(&first.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.me(&second.access_token).await.status(), StatusCode::OK);

    // Someone replays the first refresh token: the session dies for everyone.
    let replay = app.refresh(&first.refresh_token).await;
    assert_eq!(
        replay.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    problem(replay, 401).await;
    problem(app.me(&second.access_token).await, 401).await;
    problem(app.me(&first.access_token).await, 401).await;
    problem(app.refresh(&second.refresh_token).await, 401).await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_have_exactly_one_winner() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let attempts: Vec<_> = (0..8).map(|_| app.refresh(&pair.refresh_token)).collect();
    let responses = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for r in responses {
        match r.status() {
            StatusCode::OK => winners.push(r.json::<TokenPair>().await.unwrap()),
            StatusCode::UNAUTHORIZED => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh wins");
    // The losers presented a token that was already used: that is reuse, so the session is
    // revoked and the winner's new tokens die with it (docs/api.md, "Concurrent refreshes").
    problem(app.me(&winners[0].access_token).await, 401).await;
    problem(app.refresh(&winners[0].refresh_token).await, 401).await;
}

#[tokio::test]
async fn unknown_and_malformed_refresh_tokens_are_refused() {
    let app = spawn_app().await;
    problem(app.refresh("no-such-token").await, 401).await;
    problem(app.refresh("").await, 401).await;
    let body = problem(
        app.post_json("/api/v1/auth/refresh", &json!({ "refresh_token": 42 }))
            .await,
        400,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "refresh_token");
    let body = problem(app.post_json("/api/v1/auth/refresh", &json!({})).await, 400).await;
    assert_eq!(body["errors"][0]["field"], "refresh_token");
}

#[tokio::test]
async fn an_idle_session_expires_and_refresh_slides_it() {
    let app = crate::helpers::spawn_app_with(&[("refresh_token_ttl", "2s")]).await;
    let (_, pair) = app.new_user().await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let slid: TokenPair = app.refresh(&pair.refresh_token).await.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // 2.4 s after login but 1.2 s after the last refresh: still alive.
    let again = app.refresh(&slid.refresh_token).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: TokenPair = again.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    problem(app.refresh(&again.refresh_token).await, 401).await;
}
