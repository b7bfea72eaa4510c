//! Email verification and password reset, read from the mail actually delivered (the
//! development sink writes each sent message to `<data_dir>/outbox/<id>.eml`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    OTHER_PASSWORD, PASSWORD, TestApp, eventually, problem, slug, spawn_app, spawn_app_with,
};

/// Every delivered message addressed to `to`, decoded enough to read (quoted-printable soft
/// breaks and `=3D` undone).
fn delivered_to(app: &TestApp, to: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(app.data_dir().join("outbox")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|m| m.contains(&format!("To: {to}\r\n")))
        .map(|m| m.replace("=\r\n", "").replace("=3D", "="))
        .collect();
    out.sort();
    out
}

fn with_subject(app: &TestApp, to: &str, subject: &str) -> Vec<String> {
    delivered_to(app, to)
        .into_iter()
        .filter(|m| m.contains(&format!("Subject: {subject}\r\n")))
        .collect()
}

/// Waits for the `n`th message with `subject` to `to` and returns it.
async fn wait_for(app: &TestApp, to: &str, subject: &str, n: usize) -> String {
    assert!(
        eventually(Duration::from_secs(10), || async {
            with_subject(app, to, subject).len() >= n
        })
        .await,
        "no message {n} {subject:?} to {to}: {:?}",
        delivered_to(app, to)
    );
    // Files are named by time-ordered ids: the last is the newest.
    let mut all = with_subject(app, to, subject);
    all.truncate(n);
    all.pop().unwrap()
}

/// The token a message shows on its own line (43 characters of base64url).
fn token_in(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .find(|l| {
            l.len() == 43
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or_else(|| panic!("no token in {message}"))
        .to_string()
}

const VERIFY_SUBJECT: &str = "Verify your email address";
const RESET_SUBJECT: &str = "Reset your password";
const CHANGED_SUBJECT: &str = "Your password was changed";

async fn request_verification(app: &TestApp, access: &str) -> StatusCode {
    app.send(
        app.authed(
            reqwest::Method::POST,
            "/api/v1/auth/verify-email/request",
            access,
        )
        .json(&json!({})),
    )
    .await
    .status()
}

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/verify-email", &json!({ "token": token }))
        .await
}

async fn request_reset(app: &TestApp, email: &str) -> StatusCode {
    app.post_json(
        "/api/v1/auth/password-reset/request",
        &json!({ "email": email }),
    )
    .await
    .status()
}

async fn reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/password-reset",
        &json!({ "token": token, "new_password": password }),
    )
    .await
}

async fn verified(app: &TestApp, access: &str) -> bool {
    let me: serde_json::Value = app.me(access).await.json().await.unwrap();
    me["email_verified"].as_bool().expect("email_verified")
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log ORDER BY seq")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn verification_round_trip_marks_the_email_verified_and_the_token_works_once() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    assert!(!verified(&app, &pair.access_token).await);
    assert_eq!(
        request_verification(&app, &pair.access_token).await,
        StatusCode::ACCEPTED
    );
    let mail = wait_for(&app, &email, VERIFY_SUBJECT, 1).await;
    let token = token_in(&mail);
    assert!(
        mail.contains(&format!("/verify-email?token={token}")),
        "the link carries the token: {mail}"
    );
    assert!(mail.contains("text/html"), "an HTML part: {mail}");
    assert_eq!(verify(&app, &token).await.status(), StatusCode::NO_CONTENT);
    assert!(verified(&app, &pair.access_token).await);
    let again = problem(verify(&app, &token).await, 400).await;
    assert_eq!(slug(&again), "invalid-token");
    let garbage = problem(verify(&app, "not-a-token").await, 400).await;
    assert_eq!(slug(&garbage), "invalid-token");
    // Verified: a new request is still 202 and sends nothing.
    assert_eq!(
        request_verification(&app, &pair.access_token).await,
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(with_subject(&app, &email, VERIFY_SUBJECT).len(), 1);
    let actions = audit_actions(&app).await;
    assert!(
        actions.iter().any(|a| a == "email_verification_sent"),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "email_verified"), "{actions:?}");
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM email_tokens")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap();
    assert!(!stored.contains(&token), "only the hash is stored");
}

#[tokio::test]
async fn an_expired_verification_token_is_refused() {
    let app = spawn_app_with(&[("email_verification_ttl", "1s")]).await;
    let (email, pair) = app.new_user().await;
    request_verification(&app, &pair.access_token).await;
    let token = token_in(&wait_for(&app, &email, VERIFY_SUBJECT, 1).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = problem(verify(&app, &token).await, 400).await;
    assert_eq!(slug(&expired), "invalid-token");
    assert!(!verified(&app, &pair.access_token).await);
}

#[tokio::test]
async fn a_verification_token_for_an_old_address_does_not_verify_the_new_one() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    request_verification(&app, &pair.access_token).await;
    let token = token_in(&wait_for(&app, &email, VERIFY_SUBJECT, 1).await);
    sqlx::query("UPDATE users SET email = 'moved@example.com', email_key = 'moved@example.com' WHERE email_key = $1")
        .bind(&email)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    let refused = problem(verify(&app, &token).await, 400).await;
    assert_eq!(slug(&refused), "invalid-token");
    let unverified: Option<i64> = sqlx::query_scalar(
        "SELECT email_verified_at FROM users WHERE email_key = 'moved@example.com'",
    )
    .fetch_one(app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(unverified, None);
}

#[tokio::test]
async fn password_reset_round_trip_revokes_every_session_and_replaces_the_password() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let second = app.login_ok(&email, PASSWORD).await;
    assert_eq!(request_reset(&app, &email).await, StatusCode::ACCEPTED);
    let mail = wait_for(&app, &email, RESET_SUBJECT, 1).await;
    let token = token_in(&mail);
    assert!(
        mail.contains(&format!("/reset-password?token={token}")),
        "{mail}"
    );

    let weak = problem(reset(&app, &token, "password").await, 400).await;
    assert_eq!(weak["errors"][0]["field"], "new_password", "{weak}");

    assert_eq!(
        reset(&app, &token, OTHER_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    for p in [&pair, &second] {
        assert_eq!(
            app.me(&p.access_token).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.refresh(&p.refresh_token).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.login_ok(&email, OTHER_PASSWORD).await;
    let used = problem(
        reset(&app, &token, "yet another fine passphrase 7").await,
        400,
    )
    .await;
    assert_eq!(slug(&used), "invalid-token");
    let notice = wait_for(&app, &email, CHANGED_SUBJECT, 1).await;
    assert!(notice.contains("reset by email"), "{notice}");
    let actions = audit_actions(&app).await;
    assert!(
        actions.iter().any(|a| a == "password_reset_requested"),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "password_reset"), "{actions:?}");
}

#[tokio::test]
async fn a_reset_for_an_unknown_address_answers_alike_and_sends_nothing() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let unknown = "nobody-here@example.com";
    assert_eq!(request_reset(&app, unknown).await, StatusCode::ACCEPTED);
    // API.md: always 202, also for text that is not an address at all.
    assert_eq!(
        request_reset(&app, "not an address").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(request_reset(&app, &email).await, StatusCode::ACCEPTED);
    // The known address's mail arriving shows the pipeline works; the unknown one got none.
    wait_for(&app, &email, RESET_SUBJECT, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(delivered_to(&app, unknown).is_empty());
    let queued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE recipient LIKE $1")
            .bind(format!("%{unknown}%"))
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(queued, 0);
    // A second request within the minute is answered alike and sends nothing more.
    assert_eq!(request_reset(&app, &email).await, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(with_subject(&app, &email, RESET_SUBJECT).len(), 1);
}

#[tokio::test]
async fn a_reset_token_dies_when_the_password_is_changed_another_way() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    request_reset(&app, &email).await;
    let token = token_in(&wait_for(&app, &email, RESET_SUBJECT, 1).await);
    let changed = app
        .send(
            app.authed(
                reqwest::Method::POST,
                "/api/v1/users/me/password",
                &pair.access_token,
            )
            .json(&json!({ "current_password": PASSWORD, "new_password": OTHER_PASSWORD })),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let notice = wait_for(&app, &email, CHANGED_SUBJECT, 1).await;
    assert!(notice.contains("changed by you"), "{notice}");
    let dead = problem(
        reset(&app, &token, "yet another fine passphrase 7").await,
        400,
    )
    .await;
    assert_eq!(slug(&dead), "invalid-token");
    app.login_ok(&email, OTHER_PASSWORD).await;
}

#[tokio::test]
async fn required_verification_refuses_login_until_the_email_is_verified() {
    let app = spawn_app_with(&[("require_verified_email", "true")]).await;
    let email = "unverified@example.com";
    assert_eq!(
        app.signup(email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    // A wrong password learns nothing about verification.
    let wrong = problem(app.login(email, OTHER_PASSWORD).await, 401).await;
    assert_eq!(slug(&wrong), "invalid-credentials");
    let refused = problem(app.login(email, PASSWORD).await, 403).await;
    assert_eq!(slug(&refused), "email-not-verified");
    // Such an account cannot log in to ask for the link: signup sent it.
    let token = token_in(&wait_for(&app, email, VERIFY_SUBJECT, 1).await);
    assert_eq!(verify(&app, &token).await.status(), StatusCode::NO_CONTENT);
    app.login_ok(email, PASSWORD).await;
}

#[tokio::test]
async fn erasure_deletes_the_accounts_tokens() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    request_verification(&app, &pair.access_token).await;
    request_reset(&app, &email).await;
    wait_for(&app, &email, RESET_SUBJECT, 1).await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM email_tokens WHERE email_key = $1")
            .bind(&email)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap()
    };
    assert_eq!(count().await, 2);
    let erased = app
        .send(
            app.authed(
                reqwest::Method::POST,
                "/api/v1/users/me/erase",
                &pair.access_token,
            )
            .json(&json!({ "password": PASSWORD })),
        )
        .await;
    assert!(erased.status().is_success(), "{}", erased.status());
    assert_eq!(count().await, 0);
}

/// The request takes the empty object API.md names; no body at all is a client error.
#[tokio::test]
async fn a_verification_request_without_its_body_is_refused() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let bare = app.authed(
        reqwest::Method::POST,
        "/api/v1/auth/verify-email/request",
        &tokens.access_token,
    );
    let status = app.send(bare).await.status();
    assert!(status.is_client_error(), "{status}");
    assert_eq!(
        request_verification(&app, &tokens.access_token).await,
        StatusCode::ACCEPTED
    );
}

/// Tokens of `purpose` issued to the account of `email`.
async fn tokens_issued(app: &TestApp, email: &str, purpose: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM email_tokens t JOIN users u ON u.id = t.user_id WHERE u.email_key = $1 AND t.purpose = $2",
    )
    .bind(email)
    .bind(purpose)
    .fetch_one(app.state.store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn concurrent_requests_within_the_minute_send_one_email_of_each_kind() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    const AT_ONCE: usize = 12;

    let resets = (0..AT_ONCE).map(|_| request_reset(&app, &email));
    let verifications = (0..AT_ONCE).map(|_| request_verification(&app, &pair.access_token));
    let (resets, verifications) = futures::future::join(
        futures::future::join_all(resets),
        futures::future::join_all(verifications),
    )
    .await;
    assert!(resets.iter().all(|s| *s == StatusCode::ACCEPTED));
    assert!(verifications.iter().all(|s| *s == StatusCode::ACCEPTED));

    // Reset requests do their work after answering: give every one of them time to finish.
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokens_issued(&app, &email, "password_reset").await >= 1
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tokens_issued(&app, &email, "password_reset").await, 1);
    assert_eq!(tokens_issued(&app, &email, "verify_email").await, 1);
    wait_for(&app, &email, RESET_SUBJECT, 1).await;
    wait_for(&app, &email, VERIFY_SUBJECT, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(with_subject(&app, &email, RESET_SUBJECT).len(), 1);
    assert_eq!(with_subject(&app, &email, VERIFY_SUBJECT).len(), 1);
}
