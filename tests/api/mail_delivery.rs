//! Email delivery as a production relay sees it: STARTTLS or TLS from the first byte with a
//! certificate from a private CA (`smtp_ca_file`), AUTH, a recipient the server refuses for
//! good, and the retention of what the outbox keeps. The server is the real aiosmtpd of
//! `tests/smtp_sink.py`, with the options each test names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use sqlx::Row;

use crate::binary::Server;
use crate::helpers::{PASSWORD, TestApp, eventually, spawn_app_with};
use crate::mail::{SmtpSink, enqueue, message, row};

const SMTP_USER: &str = "portvakt";
const SMTP_PASSWORD: &str = "s3cret-relay-pass";

/// A private CA and a server certificate it signed for 127.0.0.1, as PEM files.
struct PrivateCa {
    dir: tempfile::TempDir,
}

impl PrivateCa {
    fn new() -> PrivateCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portvakt test relay CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "relay.internal");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();

        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        PrivateCa { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn ca(&self) -> String {
        self.path("ca.pem")
    }

    /// A sink on TLS with this CA's server certificate, requiring AUTH, plus `extra` options.
    async fn sink(&self, extra: &[&str]) -> SmtpSink {
        let (cert, key) = (self.path("cert.pem"), self.path("key.pem"));
        let auth = format!("{SMTP_USER}:{SMTP_PASSWORD}");
        let mut args = vec!["--cert", &cert, "--key", &key, "--auth", &auth];
        args.extend_from_slice(extra);
        let mut sink = SmtpSink::with_args(&args);
        sink.start().await;
        sink
    }
}

async fn app_with_smtp(url: &str, more: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![
        ("smtp_url", url),
        ("mail_retry_initial", "100ms"),
        ("mail_retry_max", "300ms"),
    ];
    settings.extend_from_slice(more);
    spawn_app_with(&settings).await
}

async fn wait_sent(app: &TestApp, id: &str) -> bool {
    eventually(Duration::from_secs(10), || async { row(app, id).await.1 }).await
}

#[tokio::test]
async fn starttls_and_auth_deliver_through_a_relay_with_a_private_ca() {
    let ca = PrivateCa::new();
    let sink = ca.sink(&["--starttls"]).await;
    let url = format!("smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{}", sink.port);
    let app = app_with_smtp(&url, &[("smtp_ca_file", &ca.ca())]).await;

    let id = enqueue(&app, &message("over-starttls")).await;

    assert!(
        sink.wait_for("over-starttls").await,
        "{:?}",
        sink.messages()
    );
    assert!(wait_sent(&app, &id).await);
    assert_eq!(sink.auth_failures(), 0);
    assert_eq!(row(&app, &id).await.0, 1, "one attempt");
}

#[tokio::test]
async fn lettres_tls_required_spelling_means_starttls_too() {
    let ca = PrivateCa::new();
    let sink = ca.sink(&["--starttls"]).await;
    let url = format!(
        "smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{}?tls=required",
        sink.port
    );
    let app = app_with_smtp(&url, &[("smtp_ca_file", &ca.ca())]).await;
    enqueue(&app, &message("tls-required")).await;
    assert!(sink.wait_for("tls-required").await, "{:?}", sink.messages());
}

#[tokio::test]
async fn implicit_tls_and_auth_deliver_through_a_relay_with_a_private_ca() {
    let ca = PrivateCa::new();
    let sink = ca.sink(&["--implicit-tls"]).await;
    let url = format!(
        "smtps://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{}",
        sink.port
    );
    let app = app_with_smtp(&url, &[("smtp_ca_file", &ca.ca())]).await;

    let id = enqueue(&app, &message("over-smtps")).await;

    assert!(sink.wait_for("over-smtps").await, "{:?}", sink.messages());
    assert!(wait_sent(&app, &id).await);
}

#[tokio::test]
async fn without_the_private_ca_the_relay_is_not_trusted_and_the_message_waits() {
    let ca = PrivateCa::new();
    let sink = ca.sink(&["--starttls"]).await;
    let url = format!("smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{}", sink.port);
    let app = app_with_smtp(&url, &[]).await;

    let id = enqueue(&app, &message("untrusted")).await;

    assert!(
        eventually(Duration::from_secs(15), || async {
            row(&app, &id).await.0 >= 2
        })
        .await,
        "the attempt fails and is retried"
    );
    let (_, sent, body_kept, error) = row(&app, &id).await;
    assert!(
        !sent && body_kept,
        "a TLS failure is temporary: the message waits"
    );
    let error = error.expect("the error is recorded");
    assert!(
        error.contains("tls") || error.contains("certificate"),
        "{error}"
    );
    assert!(sink.messages().is_empty());
    // Credentials never went to a server that could not prove who it is.
    assert_eq!(sink.auth_failures(), 0);
}

#[tokio::test]
async fn a_misconfigured_ca_file_stops_the_start_with_the_variable_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = portvakt::Config::from_pairs([
        ("smtp_url", "smtp://127.0.0.1:2525"),
        ("smtp_ca_file", empty.to_str().unwrap()),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("PORTVAKT_SMTP_CA_FILE"), "{err}");
    let missing = dir.path().join("missing.pem");
    let err = portvakt::Config::from_pairs([
        ("smtp_url", "smtp://127.0.0.1:2525"),
        ("smtp_ca_file", missing.to_str().unwrap()),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("PORTVAKT_SMTP_CA_FILE"), "{err}");
}

/// The outbox of a `portvakt serve` in `dir` on SQLite: (attempts, sent, failed, last_error)
/// of every message, oldest first.
async fn outbox_of(dir: &Path) -> Vec<(i64, bool, bool, Option<String>)> {
    let db: PathBuf = dir.join("data/portvakt.db");
    let url = format!("sqlite://{}?mode=ro", db.display());
    let Ok(mut conn) = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await else {
        return Vec::new();
    };
    let rows = sqlx::query(
        "SELECT attempts, sent_at, failed_at, last_error FROM mail_outbox ORDER BY created_at",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    rows.iter()
        .map(|r| {
            (
                r.get::<i64, _>("attempts"),
                r.get::<Option<i64>, _>("sent_at").is_some(),
                r.get::<Option<i64>, _>("failed_at").is_some(),
                r.get::<Option<String>, _>("last_error"),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_wrong_smtp_password_delivers_nothing_keeps_the_message_and_never_shows_the_password() {
    let ca = PrivateCa::new();
    let sink = ca.sink(&["--starttls"]).await;
    const WRONG: &str = "wr0ng-Pa55word-xyz";
    let url = format!("smtp://{SMTP_USER}:{WRONG}@127.0.0.1:{}", sink.port);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.ca();
    let mut server = Server::start(
        dir.path(),
        &[
            ("PORTVAKT_SMTP_URL", &url),
            ("PORTVAKT_SMTP_CA_FILE", &ca_file),
            ("PORTVAKT_MAIL_RETRY_INITIAL", "100ms"),
            ("PORTVAKT_MAIL_RETRY_MAX", "200ms"),
            ("PORTVAKT_LOG", "debug"),
        ],
    );
    let client = reqwest::Client::new();
    let signup = client
        .post(format!("{}/api/v1/users", server.base))
        .json(&serde_json::json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);
    let reset = client
        .post(format!(
            "{}/api/v1/auth/password-reset/request",
            server.base
        ))
        .json(&serde_json::json!({"email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::ACCEPTED);

    // A 535 is a 5xx, but about this instance's credentials: retried like an outage.
    assert!(
        eventually(Duration::from_secs(20), || async {
            outbox_of(dir.path())
                .await
                .first()
                .is_some_and(|m| m.0 >= 3)
        })
        .await,
        "the message is retried: {:?}",
        outbox_of(dir.path()).await
    );
    assert!(sink.auth_failures() >= 2, "the server saw AUTH fail");
    assert!(sink.messages().is_empty());
    server.wait_for("email delivery failed; will retry");
    let outbox = outbox_of(dir.path()).await;
    let (_, sent, failed, error) = &outbox[0];
    assert!(!sent);
    let error = error.clone().expect("the error is recorded");
    assert!(error.contains("535"), "{error}");
    assert!(!error.contains(WRONG), "{error}");
    assert!(
        !failed,
        "a wrong password does not give the message up: {error}"
    );
    assert!(server.terminate().success());
    let logs = server.seen.join("\n");
    assert!(logs.contains("535"), "the log says why");
    assert!(!logs.contains(WRONG), "the password leaked into the log");
}

#[tokio::test]
async fn a_recipient_refused_for_good_is_given_up_at_once_and_counted() {
    let sink = SmtpSink::with_args(&["--reject", "nobody@example.com"]);
    let mut sink = sink;
    sink.start().await;
    let app = app_with_smtp(&sink.url(), &[]).await;
    let before = failed_permanent(&app).await;

    let mut refused = message("refused");
    refused.to = "Nobody <nobody@example.com>".parse().unwrap();
    let refused = enqueue(&app, &refused).await;
    let fine = enqueue(&app, &message("accepted")).await;

    assert!(sink.wait_for("accepted").await);
    assert!(wait_sent(&app, &fine).await);
    let given_up = || async {
        sqlx::query(
            "SELECT failed_at, attempts, last_error, body_text FROM mail_outbox WHERE id = $1",
        )
        .bind(&refused)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            given_up()
                .await
                .get::<Option<i64>, _>("failed_at")
                .is_some()
        })
        .await,
        "the refused message is given up"
    );
    // Retries would come every 100-300 ms: wait for several of them not to happen.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = given_up().await;
    assert_eq!(
        r.get::<i64, _>("attempts"),
        1,
        "a permanent refusal is not retried"
    );
    let error: String = r.get::<Option<String>, _>("last_error").unwrap();
    assert!(error.contains("rejected permanently"), "{error}");
    assert!(error.contains("550"), "{error}");
    assert!(
        r.get::<Option<String>, _>("body_text").is_none(),
        "the body is erased"
    );
    assert_eq!(sink.count("refused"), 0);
    assert!(
        failed_permanent(&app).await >= before + 1.0,
        "portvakt_mail_failed_total{{reason=\"permanent\"}} counts it"
    );
}

/// `portvakt_mail_failed_total{reason="permanent"}` as scraped (process-wide in tests).
async fn failed_permanent(app: &TestApp) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("portvakt_mail_failed_total{reason=\"permanent\"}"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn sent_and_given_up_messages_are_deleted_after_their_retention_and_waiting_ones_stay() {
    let mut sink = SmtpSink::with_args(&["--reject", "nobody@example.com"]);
    sink.start().await;
    let app = app_with_smtp(
        &sink.url(),
        &[("mail_retention", "1s"), ("mail_failed_retention", "2s")],
    )
    .await;
    let exists = |id: String| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM mail_outbox WHERE id = $1")
                .bind(id)
                .fetch_one(app.state.store.pool())
                .await
                .unwrap()
                == 1
        }
    };
    let failed = |id: String| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM mail_outbox WHERE id = $1 AND failed_at IS NOT NULL",
            )
            .bind(id)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap()
                == 1
        }
    };

    // One waiting far in the future, as after a long backoff: it must never be pruned. Put
    // off in the transaction that queues it, or the worker may deliver it first.
    let mut tx = app.state.store.begin_write().await.unwrap();
    let waiting = app
        .state
        .mail
        .enqueue(&mut tx, &message("later"))
        .await
        .unwrap()
        .to_string();
    sqlx::query("UPDATE mail_outbox SET next_attempt_at = $1 WHERE id = $2")
        .bind(portvakt::store::now_micros() + 3_600_000_000)
        .bind(&waiting)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let sent = enqueue(&app, &message("kept-a-while")).await;
    let mut refused = message("refused");
    refused.to = "nobody@example.com".parse().unwrap();
    let refused = enqueue(&app, &refused).await;

    assert!(wait_sent(&app, &sent).await);
    assert!(exists(sent.clone()).await, "kept right after sending");
    assert!(
        eventually(Duration::from_secs(10), || failed(refused.clone())).await,
        "the refused message is given up"
    );
    assert!(
        exists(refused.clone()).await,
        "kept for operators after giving up"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            !exists(sent.clone()).await
        })
        .await,
        "the sent message is deleted after its retention"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            !exists(refused.clone()).await
        })
        .await,
        "the given-up message is deleted after its retention"
    );
    assert!(exists(waiting).await, "a waiting message is never pruned");
}

#[tokio::test]
async fn a_large_backlog_of_old_mail_is_pruned_in_batches_and_nothing_newer_goes() {
    let app = spawn_app_with(&[("mail_retention", "2s")]).await;
    let now = portvakt::store::now_micros();
    let day = 86_400_000_000i64;
    // More than two batches of sent mail from yesterday, and one sent "tomorrow".
    let mut tx = app.state.store.begin_write().await.unwrap();
    for i in 0..2345 {
        let sent_at = if i == 0 { now + day } else { now - day };
        sqlx::query(
            "INSERT INTO mail_outbox (id, created_at, recipient, subject, attempts, next_attempt_at, sent_at) \
             VALUES ($1, $2, 'ada@example.com', 'old', 1, $2, $3)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(now - day)
        .bind(sent_at)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM mail_outbox")
            .fetch_one(app.state.store.pool())
            .await
            .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(15), || async { count().await == 1 }).await,
        "{} rows left",
        count().await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count().await, 1, "the newer message stays");
}
