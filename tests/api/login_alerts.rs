//! The new-login alert (`login_alerts`), read from the mail a real SMTP server received.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_app_with};
use crate::mail::{SmtpSink, enqueue, message};

const ALERT: &str = "New sign-in to your account";

/// An app delivering to a fresh sink, behind a proxy on 127.0.0.1 so tests can pick the
/// client address, with `more` settings.
async fn app_with(more: &[(&str, &str)]) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::started().await;
    let url = sink.url();
    let mut settings = vec![
        ("smtp_url", url.as_str()),
        ("trusted_proxies", "127.0.0.1/32"),
        ("mail_retry_initial", "100ms"),
        ("mail_retry_max", "300ms"),
    ];
    settings.extend_from_slice(more);
    (spawn_app_with(&settings).await, sink)
}

async fn login_from(app: &TestApp, email: &str, user_agent: &str, ip: &str) {
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", user_agent)
        .header("x-forwarded-for", ip)
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn signup(app: &TestApp, email: &str) {
    assert_eq!(
        app.signup(email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
}

/// The alerts delivered so far, once everything queued before now has been handled: a
/// marker message is queued last and waited for, and the worker sends in queue order.
async fn alerts_after_drain(app: &TestApp, sink: &SmtpSink, n: usize) -> Vec<String> {
    let marker = format!("marker-{n}");
    enqueue(app, &message(&marker)).await;
    assert!(sink.wait_for(&marker).await, "{:?}", sink.messages());
    tokio::time::sleep(Duration::from_millis(100)).await;
    sink.messages()
        .into_iter()
        .filter(|m| m.contains(&format!("Subject: {ALERT}\r\n")))
        .map(|m| m.replace("=\r\n", "").replace("=3D", "="))
        .collect()
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const PHONE: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";

#[tokio::test]
async fn the_first_login_is_quiet_a_new_device_alerts_once_and_a_known_one_never() {
    let (app, sink) = app_with(&[]).await;
    signup(&app, "ada@example.com").await;

    login_from(&app, "ada@example.com", FIREFOX, "203.0.113.10").await;
    login_from(&app, "ada@example.com", FIREFOX, "203.0.113.10").await;
    assert_eq!(
        alerts_after_drain(&app, &sink, 1).await.len(),
        0,
        "neither the first login nor the same browser again alerts"
    );

    login_from(&app, "ada@example.com", PHONE, "203.0.113.10").await;
    let alerts = alerts_after_drain(&app, &sink, 2).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert!(
        alert.starts_with("X-Envelope-To: ada@example.com\r\n"),
        "{alert}"
    );
    assert!(alert.contains("203.0.113.10"), "{alert}");
    assert!(alert.contains("iPhone OS 18_1"), "{alert}");
    assert!(alert.contains(" UTC"), "{alert}");
    assert!(alert.contains("Reset your password"), "{alert}");

    // The phone is known now; so is the browser from another address of the same network.
    login_from(&app, "ada@example.com", PHONE, "203.0.113.10").await;
    login_from(&app, "ada@example.com", FIREFOX, "203.0.113.77").await;
    assert_eq!(alerts_after_drain(&app, &sink, 3).await.len(), 1);
}

#[tokio::test]
async fn the_same_browser_from_another_network_is_a_new_device() {
    let (app, sink) = app_with(&[]).await;
    signup(&app, "bob@example.com").await;
    login_from(&app, "bob@example.com", FIREFOX, "203.0.113.10").await;

    login_from(&app, "bob@example.com", FIREFOX, "198.51.100.23").await;

    let alerts = alerts_after_drain(&app, &sink, 1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("198.51.100.23"), "{}", alerts[0]);
}

#[tokio::test]
async fn with_login_alerts_off_no_login_sends_mail() {
    let (app, sink) = app_with(&[("login_alerts", "off")]).await;
    signup(&app, "cy@example.com").await;
    login_from(&app, "cy@example.com", FIREFOX, "203.0.113.10").await;
    login_from(&app, "cy@example.com", PHONE, "198.51.100.23").await;
    assert_eq!(alerts_after_drain(&app, &sink, 1).await.len(), 0);
}

#[tokio::test]
async fn always_alerts_every_login_but_the_first_with_the_operators_template() {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("new_login.subject"),
        "Sign-in from {{ip}}",
    )
    .unwrap();
    let dir = templates.path().display().to_string();
    let (app, sink) = app_with(&[("login_alerts", "always"), ("mail_templates_dir", &dir)]).await;
    signup(&app, "dee@example.com").await;
    login_from(&app, "dee@example.com", FIREFOX, "203.0.113.10").await;
    login_from(&app, "dee@example.com", FIREFOX, "203.0.113.10").await;
    login_from(&app, "dee@example.com", FIREFOX, "203.0.113.10").await;

    enqueue(&app, &message("marker")).await;
    assert!(sink.wait_for("marker").await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sink.count("Sign-in from 203.0.113.10"),
        2,
        "{:?}",
        sink.messages()
    );
    assert_eq!(sink.count(ALERT), 0);
}

#[tokio::test]
async fn a_user_agent_cannot_put_a_link_into_the_alert() {
    let (app, sink) = app_with(&[]).await;
    signup(&app, "eve@example.com").await;
    login_from(&app, "eve@example.com", FIREFOX, "203.0.113.10").await;

    login_from(
        &app,
        "eve@example.com",
        "Urgent: verify at https://evil.example/login <b>now</b>",
        "203.0.113.10",
    )
    .await;

    let alerts = alerts_after_drain(&app, &sink, 1).await;
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert!(!alert.contains("https://evil"), "{alert}");
    assert!(!alert.contains("evil.example"), "{alert}");
    assert!(alert.contains("evil[.]example"), "{alert}");
    assert!(
        alert.contains("&lt;b&gt;now"),
        "the HTML part escapes it: {alert}"
    );
}

#[tokio::test]
async fn a_login_with_a_second_factor_alerts_once_the_factor_is_given() {
    let (app, sink) = app_with(&[]).await;
    signup(&app, "fay@example.com").await;
    login_from(&app, "fay@example.com", FIREFOX, "203.0.113.10").await;
    let first = app.login_ok("fay@example.com", PASSWORD).await;
    let (_, recovery) = crate::mfa::enable(&app, &first.access_token).await;
    let before = alerts_after_drain(&app, &sink, 1).await.len();

    let step = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", PHONE)
        .header("x-forwarded-for", "198.51.100.23")
        .json(&json!({ "email": "fay@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = step.json().await.unwrap();
    let mfa_token = body["mfa_token"]
        .as_str()
        .expect("the second factor is asked");
    assert_eq!(
        alerts_after_drain(&app, &sink, 2).await.len(),
        before,
        "the password alone opens no session and sends no alert"
    );

    let done = app
        .client
        .post(app.url("/api/v1/auth/mfa"))
        .header("user-agent", PHONE)
        .header("x-forwarded-for", "198.51.100.23")
        .json(&json!({ "mfa_token": mfa_token, "code": recovery[0] }))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let alerts = alerts_after_drain(&app, &sink, 3).await;
    assert_eq!(alerts.len(), before + 1, "{alerts:?}");
    assert!(alerts.iter().any(|a| a.contains("198.51.100.23")));
}
