//! Changing the password.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{OTHER_PASSWORD, PASSWORD, TestApp, problem, slug, spawn_app};

async fn change(app: &TestApp, token: &str, current: &str, new: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/users/me/password"))
        .bearer_auth(token)
        .json(&json!({ "current_password": current, "new_password": new }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session() {
    let app = spawn_app().await;
    let (email, here) = app.new_user().await;
    let elsewhere = app.login_ok(&email, PASSWORD).await;
    // The other session is known alive (and cached) before the change.
    assert_eq!(
        app.me(&elsewhere.access_token).await.status(),
        StatusCode::OK
    );

    let response = change(&app, &here.access_token, PASSWORD, OTHER_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_eq!(
        app.me(&here.access_token).await.status(),
        StatusCode::OK,
        "this session stays"
    );
    problem(app.me(&elsewhere.access_token).await, 401).await;
    problem(app.refresh(&elsewhere.refresh_token).await, 401).await;
    problem(app.login(&email, PASSWORD).await, 401).await;
    app.login_ok(&email, OTHER_PASSWORD).await;
}

#[tokio::test]
async fn a_wrong_current_password_is_forbidden() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let body = problem(
        change(&app, &pair.access_token, "not my password", OTHER_PASSWORD).await,
        403,
    )
    .await;
    assert_eq!(slug(&body), "wrong-password");
    app.login_ok(&email, PASSWORD).await;
}

#[tokio::test]
async fn a_weak_new_password_names_new_password() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let body = problem(
        change(&app, &pair.access_token, PASSWORD, "qwerty123").await,
        400,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "new_password");
    app.login_ok(&email, PASSWORD).await;
}

#[tokio::test]
async fn changing_the_password_needs_a_token() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/users/me/password",
            &json!({ "current_password": PASSWORD, "new_password": OTHER_PASSWORD }),
        )
        .await;
    problem(response, 401).await;
}
