//! MFA (issue 6, TOTP slice): enrolment, confirmation, the login's second step, replay
//! refusal, recovery codes, disabling and the limits on guessing. Codes are computed here
//! with totp-rs from the secret the API returns, like an authenticator app would.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use totp_rs::{Builder, Secret, Totp};

use crate::helpers::{PASSWORD, TestApp, TokenPair, problem, slug, spawn_app, spawn_app_with};

pub(crate) fn authenticator(secret: &str) -> Totp {
    let bytes = Secret::try_from_base32(secret).expect("base32 secret");
    Builder::new()
        .with_secret(bytes.as_bytes().to_vec())
        .build()
        .expect("totp")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The code `offset` steps from now.
pub(crate) fn code(t: &Totp, offset: i64) -> String {
    let at = now().checked_add_signed(offset * 30).unwrap();
    t.generate(at).to_string()
}

/// A six-digit code that is none of the ones the server accepts now.
fn wrong_code(t: &Totp) -> String {
    let near: Vec<String> = (-2..=2).map(|o| code(t, o)).collect();
    ["000000", "111111", "222222"]
        .into_iter()
        .find(|c| !near.iter().any(|n| n == c))
        .unwrap()
        .to_owned()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.send(app.authed(Method::POST, path, token).json(&body))
        .await
}

/// Enrols and confirms TOTP; returns the authenticator and the recovery codes.
pub(crate) async fn enable(app: &TestApp, token: &str) -> (Totp, Vec<String>) {
    let r = post(app, "/api/v1/users/me/mfa/totp", token, json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let secret = body["secret"].as_str().unwrap();
    let uri = body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    let svg = body["qr_svg"].as_str().unwrap();
    assert!(!svg.contains("<?xml"), "markup only");
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    let t = authenticator(secret);
    let r = post(
        app,
        "/api/v1/users/me/mfa/totp/confirm",
        token,
        json!({"code": code(&t, 0)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (t, codes)
}

/// Logs in with the password and expects the MFA step; returns the mfa_token.
pub(crate) async fn mfa_token(app: &TestApp, email: &str) -> String {
    let r = app.login(email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    body["mfa_token"].as_str().unwrap().to_owned()
}

pub(crate) async fn second_step(app: &TestApp, token: &str, code: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/mfa",
        &json!({"mfa_token": token, "code": code}),
    )
    .await
}

#[tokio::test]
async fn enrolment_login_with_totp_and_replay_refused() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let (t, codes) = enable(&app, &pair.access_token).await;
    assert_eq!(codes.len(), 10);
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    let me: Value = app.me(&pair.access_token).await.json().await.unwrap();
    assert_eq!(me["mfa_enabled"], true);

    // Password alone: no tokens, and the methods enrolled.
    let r = app.login(&email, PASSWORD).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["mfa_required"], true);
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    assert!(body.get("access_token").is_none());

    // The code of the next step (confirmation spent the current one).
    let next = code(&t, 1);
    let token = mfa_token(&app, &email).await;
    let r = second_step(&app, &token, &next).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: TokenPair = r.json().await.unwrap();
    assert_eq!(app.me(&pair.access_token).await.status(), StatusCode::OK);
    // The mfa_token is used up.
    let p = problem(second_step(&app, &token, &next).await, 400).await;
    assert_eq!(slug(&p), "invalid-token");

    // The same code again, on a fresh login: a replay, refused as a wrong code.
    let token = mfa_token(&app, &email).await;
    let p = problem(second_step(&app, &token, &next).await, 401).await;
    assert_eq!(slug(&p), "invalid-credentials");
    // The code the confirmation used is spent as well.
    let p = problem(second_step(&app, &token, &code(&t, 0)).await, 401).await;
    assert_eq!(slug(&p), "invalid-credentials");
}

#[tokio::test]
async fn a_wrong_confirmation_code_is_invalid_code_and_leaves_mfa_off() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let r = post(
        &app,
        "/api/v1/users/me/mfa/totp",
        &pair.access_token,
        json!({}),
    )
    .await;
    let body: Value = r.json().await.unwrap();
    let t = authenticator(body["secret"].as_str().unwrap());
    let r = post(
        &app,
        "/api/v1/users/me/mfa/totp/confirm",
        &pair.access_token,
        json!({"code": wrong_code(&t)}),
    )
    .await;
    let p = problem(r, 400).await;
    assert_eq!(slug(&p), "invalid-code");
    let me: Value = app.me(&pair.access_token).await.json().await.unwrap();
    assert_eq!(me["mfa_enabled"], false);
    // Unconfirmed, it asks nothing at login.
    let r = app.login(&email, PASSWORD).await;
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let (_, codes) = enable(&app, &pair.access_token).await;
    let token = mfa_token(&app, &email).await;
    // Case and dashes do not matter.
    let typed = codes[3].to_uppercase().replace('-', " ");
    let r = second_step(&app, &token, &typed).await;
    assert_eq!(r.status(), StatusCode::OK);
    let token = mfa_token(&app, &email).await;
    let p = problem(second_step(&app, &token, &codes[3]).await, 401).await;
    assert_eq!(slug(&p), "invalid-credentials");
    let r = second_step(&app, &token, &codes[4]).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn five_wrong_codes_kill_the_mfa_token() {
    let app = spawn_app_with(&[("login_backoff_after", "0")]).await;
    let (email, pair) = app.new_user().await;
    let (t, _) = enable(&app, &pair.access_token).await;
    let token = mfa_token(&app, &email).await;
    let wrong = wrong_code(&t);
    for _ in 0..5 {
        let p = problem(second_step(&app, &token, &wrong).await, 401).await;
        assert_eq!(slug(&p), "invalid-credentials");
    }
    let p = problem(second_step(&app, &token, &code(&t, 1)).await, 400).await;
    assert_eq!(slug(&p), "invalid-token");
    // A new login still works.
    let token = mfa_token(&app, &email).await;
    assert_eq!(
        second_step(&app, &token, &code(&t, 1)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_codes_count_towards_the_email_backoff() {
    let app = spawn_app_with(&[
        ("login_backoff_after", "1"),
        ("login_backoff_initial", "10m"),
    ])
    .await;
    let (email, pair) = app.new_user().await;
    let (t, _) = enable(&app, &pair.access_token).await;
    let token = mfa_token(&app, &email).await;
    problem(second_step(&app, &token, &wrong_code(&t)).await, 401).await;
    // Even the right code now waits.
    problem(second_step(&app, &token, &code(&t, 1)).await, 429).await;
}

#[tokio::test]
async fn a_garbage_or_expired_mfa_token_is_invalid_token() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let (t, _) = enable(&app, &pair.access_token).await;
    let p = problem(second_step(&app, "garbage", &code(&t, 1)).await, 400).await;
    assert_eq!(slug(&p), "invalid-token");
    let token = mfa_token(&app, &email).await;
    sqlx::query("UPDATE mfa_challenges SET expires_at = created_at")
        .execute(app.state.store.pool())
        .await
        .unwrap();
    let p = problem(second_step(&app, &token, &code(&t, 1)).await, 400).await;
    assert_eq!(slug(&p), "invalid-token");
}

#[tokio::test]
async fn disabling_needs_the_password_and_turns_mfa_off() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    enable(&app, &pair.access_token).await;
    let path = "/api/v1/users/me/mfa/totp/disable";
    let r = post(
        &app,
        path,
        &pair.access_token,
        json!({"password": "not it at all"}),
    )
    .await;
    let p = problem(r, 403).await;
    assert_eq!(slug(&p), "wrong-password");
    mfa_token(&app, &email).await;
    let r = post(
        &app,
        path,
        &pair.access_token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let me: Value = app.me(&pair.access_token).await.json().await.unwrap();
    assert_eq!(me["mfa_enabled"], false);
    let body: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    // Recorded under API.md's names, with the method in the details.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, details FROM audit_log WHERE action IN ('mfa_enabled', 'mfa_disabled') ORDER BY seq",
    )
    .fetch_all(app.state.store.pool())
    .await
    .unwrap();
    let names: Vec<&str> = rows.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, ["mfa_enabled", "mfa_disabled"]);
    assert!(rows.iter().all(|(_, d)| d.contains("totp")), "{rows:?}");
}

#[tokio::test]
async fn regenerating_recovery_codes_kills_the_old_ones() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let (_, old) = enable(&app, &pair.access_token).await;
    let path = "/api/v1/users/me/mfa/recovery-codes";
    let r = post(
        &app,
        path,
        &pair.access_token,
        json!({"password": "wrong one"}),
    )
    .await;
    assert_eq!(slug(&problem(r, 403).await), "wrong-password");
    let r = post(
        &app,
        path,
        &pair.access_token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let new = body["recovery_codes"].as_array().unwrap();
    assert_eq!(new.len(), 10);
    let token = mfa_token(&app, &email).await;
    problem(second_step(&app, &token, &old[0]).await, 401).await;
    let r = second_step(&app, &token, new[0].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_mfa_routes_need_a_bearer_token() {
    let app = spawn_app().await;
    for (path, body) in [
        ("/api/v1/users/me/mfa/totp", json!({})),
        (
            "/api/v1/users/me/mfa/totp/confirm",
            json!({"code": "123456"}),
        ),
        (
            "/api/v1/users/me/mfa/totp/disable",
            json!({"password": PASSWORD}),
        ),
        (
            "/api/v1/users/me/mfa/recovery-codes",
            json!({"password": PASSWORD}),
        ),
    ] {
        let r = app.post_json(path, &body).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        problem(r, 401).await;
    }
}

#[tokio::test]
async fn the_export_shows_totp_and_erasure_removes_the_mfa_rows() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    enable(&app, &pair.access_token).await;
    mfa_token(&app, &email).await;
    let r = app
        .send(app.authed(Method::GET, "/api/v1/users/me/export", &pair.access_token))
        .await;
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["mfa"]["totp"], true);
    let r = post(
        &app,
        "/api/v1/users/me/erase",
        &pair.access_token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    for table in ["mfa_totp", "mfa_recovery_codes", "mfa_challenges"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"
        )))
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
        assert_eq!(n, 0, "{table}");
    }
}
