//! `/metrics`: scraped after real traffic and parsed as the Prometheus text format.
//!
//! Instances in this test process share one recorder (the `metrics` facade is process-wide),
//! so these tests compare a scrape before and after their own traffic and expect at least
//! what they caused. The exact figures are checked on a `portvakt serve` process of its own.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::binary::{Server, portvakt};
use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};

/// One sample: metric name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// Parses the text exposition; panics on a line that is not valid.
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in split_labels(body) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .expect("quoted label value");
                    labels.insert(k.to_string(), v.to_string());
                }
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name}"
        );
        samples.insert((name, labels), value);
    }
    samples
}

/// Splits `a="x",b="y"` at the commas outside quotes.
fn split_labels(body: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in body.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < body.len() {
        parts.push(&body[start..]);
    }
    parts
}

fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .get(&(name.to_string(), labels))
        .copied()
        .unwrap_or(0.0)
}

async fn scrape(client: &reqwest::Client, url: &str) -> (String, BTreeMap<Series, f64>) {
    let response = client.get(url).send().await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test]
async fn requests_logins_hashing_and_audit_are_counted() {
    let app = spawn_app().await;
    let (_, before) = scrape(&app.client, &app.url("/metrics")).await;

    let mut emails = Vec::new();
    for _ in 0..3 {
        let email = format!("m-{}@example.com", uuid::Uuid::new_v4().simple());
        assert_eq!(
            app.signup(&email, PASSWORD).await.status(),
            StatusCode::CREATED
        );
        emails.push(email);
    }
    for email in &emails[..2] {
        assert_eq!(app.login(email, PASSWORD).await.status(), StatusCode::OK);
    }
    assert_eq!(
        app.login(&emails[2], "not the password at all")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let (_, after) = scrape(&app.client, &app.url("/metrics")).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let signup = [
        ("method", "POST"),
        ("route", "/api/v1/users"),
        ("status", "201"),
    ];
    assert!(delta("portvakt_http_requests_total", &signup) >= 3.0);
    assert!(delta("portvakt_http_request_duration_seconds_count", &signup) >= 3.0);
    let mut inf = signup.to_vec();
    inf.push(("le", "+Inf"));
    assert!(delta("portvakt_http_request_duration_seconds_bucket", &inf) >= 3.0);
    assert!(delta("portvakt_logins_total", &[("outcome", "success")]) >= 2.0);
    assert!(delta("portvakt_logins_total", &[("outcome", "failure")]) >= 1.0);
    // Three hashes at signup, three verifications at login.
    assert!(delta("portvakt_password_hash_duration_seconds_count", &[]) >= 6.0);
    // Three signups, two logins, one failed login.
    assert!(delta("portvakt_audit_entries_total", &[]) >= 6.0);
    let login_401 = [
        ("method", "POST"),
        ("route", "/api/v1/auth/login"),
        ("status", "401"),
    ];
    assert!(delta("portvakt_http_requests_total", &login_401) >= 1.0);
}

#[tokio::test]
async fn rate_limited_requests_are_counted_by_limit() {
    let app = spawn_app_with(&[
        ("auth_rate_limit_per_minute", "1"),
        ("auth_rate_limit_burst", "1"),
    ])
    .await;
    let (_, before) = scrape(&app.client, &app.url("/metrics")).await;
    let body = json!({"email": "a@example.com", "password": "x"});
    app.post_json("/api/v1/auth/login", &body).await;
    let refused = app.post_json("/api/v1/auth/login", &body).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let (_, after) = scrape(&app.client, &app.url("/metrics")).await;
    let limit = [("limit", "auth")];
    assert!(
        value(&after, "portvakt_rate_limited_total", &limit)
            - value(&before, "portvakt_rate_limited_total", &limit)
            >= 1.0
    );
}

#[tokio::test]
async fn metrics_follow_the_admin_network_list_on_the_main_listener() {
    let app = spawn_app_with(&[("admin_allowed_networks", "10.0.0.0/8")]).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// A process of its own: exact gauges, route labels that never carry a raw path, and the
/// separate metrics listener.
#[tokio::test]
async fn a_separate_listener_serves_exact_figures_and_the_main_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[("PORTVAKT_METRICS_ADDR", "127.0.0.1:0")]);
    let line = server.wait_for("serving /metrics on its own listener");
    let metrics_url = format!("http://{}/metrics", line["addr"].as_str().unwrap());
    let client = reqwest::Client::new();

    let main = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), StatusCode::NOT_FOUND);

    for i in 0..2 {
        let email = format!("gauge{i}@example.com");
        let body = json!({"email": email, "password": PASSWORD});
        let r = client
            .post(format!("{}/api/v1/users", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = client
            .post(format!("{}/api/v1/auth/login", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let secret_path = format!("/no-such-page-{}", uuid::Uuid::new_v4().simple());
    let r = client
        .get(format!("{}{secret_path}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A backup taken by another process: the server learns its time from the database.
    let out = portvakt(dir.path())
        .args(["backup", "--out", "b.backup.gz"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (text, samples) = scrape(&client, &metrics_url).await;
    assert_eq!(value(&samples, "portvakt_active_sessions", &[]), 2.0);
    let backup_at = value(&samples, "portvakt_last_backup_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - backup_at).abs() < 120.0, "{backup_at} vs {now}");
    assert_eq!(
        value(&samples, "portvakt_logins_total", &[("outcome", "success")]),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "portvakt_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let pool = value(
        &samples,
        "portvakt_db_pool_connections",
        &[("state", "idle")],
    ) + value(
        &samples,
        "portvakt_db_pool_connections",
        &[("state", "in_use")],
    );
    assert!(pool >= 1.0, "{text}");
    assert!(
        text.contains("portvakt_password_hash_queue_depth 0"),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "portvakt_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        2.0,
        "/metrics on the main listener and the made-up path, both as `unmatched`"
    );
    assert!(
        !text.contains(&secret_path[1..]),
        "raw paths never become labels"
    );
    assert!(text.contains("# TYPE portvakt_http_request_duration_seconds histogram"));
    assert!(text.contains("# HELP portvakt_logins_total"));
    assert!(server.terminate().success());
}

#[test]
fn healthcheck_exits_zero_only_while_the_service_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let out = portvakt(dir.path())
        .arg("healthcheck")
        .env("PORTVAKT_ADDR", &addr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.terminate().success());
    let out = portvakt(dir.path())
        .arg("healthcheck")
        .env("PORTVAKT_ADDR", &addr)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    // A broken configuration is a failed check too, never Docker's reserved 2.
    let out = portvakt(dir.path())
        .arg("healthcheck")
        .env("PORTVAKT_ADDR", "not an address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A scheduled backup that cannot even create its directory is a counted failure: the alert
/// on that counter is how an operator hears of it.
#[tokio::test]
async fn scheduled_backup_failures_are_counted_whatever_step_failed() {
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let dir = blocker.path().join("backups");
    let app = spawn_app_with(&[
        ("backup_interval", "1s"),
        ("backup_dir", dir.to_str().unwrap()),
    ])
    .await;
    let failure = [("outcome", "failure")];
    let (_, before) = scrape(&app.client, &app.url("/metrics")).await;
    let start = value(&before, "portvakt_backups_total", &failure);
    let counted = crate::helpers::eventually(std::time::Duration::from_secs(15), || async {
        let (_, now) = scrape(&app.client, &app.url("/metrics")).await;
        value(&now, "portvakt_backups_total", &failure) > start
    })
    .await;
    assert!(counted, "the failed scheduled backup was not counted");
}
