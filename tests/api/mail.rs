//! Email: the outbox and its delivery worker against a real SMTP server (aiosmtpd, run from
//! `tests/smtp_sink.py` on 127.0.0.1), which writes every message it accepts to a folder.
//! aiosmtpd comes from a Python with it installed, or is installed into a venv of its own
//! under `~/.cache` on first use.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use portvakt::mail::Message;
use sqlx::Row;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{TestApp, eventually, spawn_app_with};

/// The aiosmtpd release the tests install when no Python has it.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// A Python that can `import aiosmtpd`: CI's venv, the tests' own, or one made now. The
/// install runs under a file lock, so parallel tests (and test binaries) make it once.
pub(crate) fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let home = PathBuf::from(std::env::var("HOME").expect("HOME is set"));
            let cache = home.join(".cache");
            let own = cache.join("portvakt-mail-venv");
            let has_aiosmtpd = |python: &Path| {
                std::process::Command::new(python)
                    .args(["-c", "import aiosmtpd"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let candidates = [
                cache.join("portvakt-venv/bin/python"),
                own.join("bin/python"),
                PathBuf::from("python3"),
            ];
            if let Some(found) = candidates.iter().find(|p| has_aiosmtpd(p)) {
                return found.clone();
            }
            std::fs::create_dir_all(&cache).expect("create ~/.cache");
            let lock = std::fs::File::create(cache.join("portvakt-mail-venv.lock"))
                .expect("create the venv lock file");
            lock.lock().expect("lock the venv lock file");
            let python = own.join("bin/python");
            if !has_aiosmtpd(&python) {
                let run = |cmd: &mut std::process::Command| {
                    let out = cmd.output().expect("run python3");
                    assert!(
                        out.status.success(),
                        "installing aiosmtpd for the email tests failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                };
                run(std::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&own));
                run(std::process::Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", AIOSMTPD]));
            }
            python
        })
        .clone()
}

/// A running aiosmtpd and the folder it delivers into.
pub(crate) struct SmtpSink {
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    /// Options of `tests/smtp_sink.py` (TLS, AUTH, rejected recipients).
    args: Vec<String>,
    child: Option<tokio::process::Child>,
}

impl SmtpSink {
    /// A sink on a free port, not started yet.
    pub(crate) fn new() -> SmtpSink {
        SmtpSink::with_args(&[])
    }

    /// A sink with options of `tests/smtp_sink.py`, not started yet.
    pub(crate) fn with_args(args: &[&str]) -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        SmtpSink {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        }
    }

    pub(crate) async fn started() -> SmtpSink {
        let mut sink = SmtpSink::new();
        sink.start().await;
        sink
    }

    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Failed AUTH attempts the server saw.
    pub(crate) fn auth_failures(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("auth-failures"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Starts the server (again) on its port and waits until it listens.
    pub(crate) async fn start(&mut self) {
        let python = tokio::task::spawn_blocking(python).await.unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        for _ in 0..50 {
            let mut child = tokio::process::Command::new(&python)
                .arg(&script)
                .arg(self.port.to_string())
                .arg(self.dir.path())
                .args(&self.args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start the SMTP sink");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
            if let Ok(Ok(Some(line))) = ready
                && line == "ready"
            {
                self.child = Some(child);
                return;
            }
            // The port may still be held by the server just stopped: try again.
            let _ = child.kill().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the SMTP sink did not start on port {}", self.port);
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("stop the SMTP sink");
        }
    }

    /// Every message delivered so far, as received (headers and body).
    pub(crate) fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        out.sort();
        out
    }

    /// How many delivered messages have this subject.
    pub(crate) fn count(&self, subject: &str) -> usize {
        let header = format!("Subject: {subject}\r\n");
        self.messages()
            .iter()
            .filter(|m| m.contains(&header))
            .count()
    }

    pub(crate) async fn wait_for(&self, subject: &str) -> bool {
        eventually(Duration::from_secs(20), || async {
            self.count(subject) > 0
        })
        .await
    }
}

/// An app whose worker delivers to `sink`, retrying quickly.
async fn app_sending_to(sink: &SmtpSink) -> TestApp {
    spawn_app_with(&[
        ("smtp_url", &sink.url()),
        ("mail_retry_initial", "100ms"),
        ("mail_retry_max", "400ms"),
    ])
    .await
}

pub(crate) fn message(subject: &str) -> Message {
    Message {
        user: None,
        to: "Ada Lovelace <ada@example.com>".parse().unwrap(),
        subject: subject.to_string(),
        text: format!("Hello Ada,\r\nopen https://portvakt.test/verify?token={subject}\r\n"),
        html: None,
    }
}

/// Enqueues `message` in a transaction of its own and commits it.
pub(crate) async fn enqueue(app: &TestApp, message: &Message) -> String {
    let mut tx = app.state.store.begin_write().await.unwrap();
    let id = app.state.mail.enqueue(&mut tx, message).await.unwrap();
    tx.commit().await.unwrap();
    id.to_string()
}

/// (attempts, sent_at set, body_text still stored, last_error)
pub(crate) async fn row(app: &TestApp, id: &str) -> (i64, bool, bool, Option<String>) {
    let r = sqlx::query(
        "SELECT attempts, sent_at, body_text, last_error FROM mail_outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_one(app.state.store.pool())
    .await
    .unwrap();
    (
        r.get::<i64, _>("attempts"),
        r.get::<Option<i64>, _>("sent_at").is_some(),
        r.get::<Option<String>, _>("body_text").is_some(),
        r.get::<Option<String>, _>("last_error"),
    )
}

#[tokio::test]
async fn a_message_enqueued_in_a_transaction_that_rolls_back_is_never_sent() {
    let sink = SmtpSink::started().await;
    let app = app_sending_to(&sink).await;

    let mut tx = app.state.store.begin_write().await.unwrap();
    let dropped = app
        .state
        .mail
        .enqueue(&mut tx, &message("rolled-back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // A later message is delivered after any earlier one would have been.
    enqueue(&app, &message("committed")).await;

    assert!(sink.wait_for("committed").await, "{:?}", sink.messages());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.count("rolled-back"), 0, "{:?}", sink.messages());
    assert_eq!(sink.messages().len(), 1);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE id = $1")
        .bind(dropped.to_string())
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_committed_message_arrives_exactly_once_with_its_subject_and_bodies() {
    let sink = SmtpSink::started().await;
    let app = app_sending_to(&sink).await;
    let mut m = message("welcome");
    m.html = Some("<p>Hello <b>Ada</b></p>".into());
    let id = enqueue(&app, &m).await;

    assert!(sink.wait_for("welcome").await);
    // Give a second send every chance to happen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let got = &messages[0];
    assert!(
        got.starts_with("X-Envelope-To: ada@example.com\r\n"),
        "{got}"
    );
    assert!(
        got.contains("To: \"Ada Lovelace\" <ada@example.com>")
            || got.contains("To: Ada Lovelace <ada@example.com>"),
        "{got}"
    );
    assert!(
        got.contains("https://portvakt.test/verify?token=welcome"),
        "{got}"
    );
    assert!(got.contains("<p>Hello <b>Ada</b></p>"), "{got}");
    assert!(got.contains("multipart/alternative"), "{got}");
    assert!(got.contains(&format!("Message-ID: <{id}@")), "{got}");

    // Sent is recorded, and the body (with its one-time link) is gone from the database.
    assert!(
        eventually(Duration::from_secs(5), || async { row(&app, &id).await.1 }).await,
        "sent_at is recorded"
    );
    let (attempts, _, body_kept, error) = row(&app, &id).await;
    assert_eq!(attempts, 1);
    assert!(!body_kept, "the body is erased once sent");
    assert_eq!(error, None);
}

#[tokio::test]
async fn a_message_waits_for_a_down_smtp_server_and_arrives_once_it_is_up() {
    let mut sink = SmtpSink::new();
    let app = app_sending_to(&sink).await;
    let id = enqueue(&app, &message("patience")).await;

    // Refused connections are attempts that fail, retried with backoff.
    assert!(
        eventually(Duration::from_secs(20), || async {
            row(&app, &id).await.0 >= 3
        })
        .await,
        "the worker retries"
    );
    let (_, sent, body_kept, error) = row(&app, &id).await;
    assert!(!sent);
    assert!(body_kept, "the body waits, sealed, for the next attempt");
    assert!(error.is_some());
    assert_eq!(sink.messages().len(), 0);

    sink.start().await;
    assert!(sink.wait_for("patience").await);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.count("patience"), 1, "{:?}", sink.messages());
    assert_eq!(sink.messages().len(), 1);
    assert!(row(&app, &id).await.1);
}

#[tokio::test]
async fn an_smtp_server_that_goes_away_mid_way_loses_nothing_and_duplicates_nothing() {
    let mut sink = SmtpSink::started().await;
    let app = app_sending_to(&sink).await;
    enqueue(&app, &message("first")).await;
    assert!(sink.wait_for("first").await);

    sink.stop().await;
    let mut ids = Vec::new();
    for subject in ["second", "third", "fourth"] {
        ids.push(enqueue(&app, &message(subject)).await);
    }
    // Every one of them has failed at least once against the stopped server.
    assert!(
        eventually(Duration::from_secs(20), || async {
            for id in &ids {
                if row(&app, id).await.3.is_none() {
                    return false;
                }
            }
            true
        })
        .await,
        "attempts fail while the server is down"
    );

    sink.start().await;
    for subject in ["second", "third", "fourth"] {
        assert!(sink.wait_for(subject).await, "{subject} arrives");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    for subject in ["first", "second", "third", "fourth"] {
        assert_eq!(sink.count(subject), 1, "{subject}: {:?}", sink.messages());
    }
    assert_eq!(sink.messages().len(), 4);
    for id in &ids {
        assert!(row(&app, id).await.1, "{id} is recorded as sent");
    }
}

#[tokio::test]
async fn without_smtp_each_message_is_written_to_the_outbox_folder() {
    let app = spawn_app_with(&[]).await;
    let id = enqueue(&app, &message("no-smtp")).await;
    let file = app.data_dir().join("outbox").join(format!("{id}.eml"));
    assert!(
        eventually(Duration::from_secs(10), || async { file.exists() }).await,
        "{} is written",
        file.display()
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("Subject: no-smtp\r\n"), "{text}");
    assert!(
        text.contains("https://portvakt.test/verify?token=no-smtp"),
        "{text}"
    );
    assert!(
        eventually(Duration::from_secs(5), || async { row(&app, &id).await.1 }).await,
        "the message is recorded as sent"
    );
    assert!(
        !row(&app, &id).await.2,
        "the body is erased from the database"
    );
}

#[tokio::test]
async fn a_message_claimed_by_a_worker_that_died_is_sent_once_its_lease_ends() {
    let sink = SmtpSink::started().await;
    let app = app_sending_to(&sink).await;
    // A worker of another instance claimed the message and died: its lease runs 1.5 s more.
    let mut tx = app.state.store.begin_write().await.unwrap();
    let id = app
        .state
        .mail
        .enqueue(&mut tx, &message("orphan"))
        .await
        .unwrap()
        .to_string();
    let until = portvakt::store::now_micros() + 1_500_000;
    sqlx::query(
        "UPDATE mail_outbox SET claimed_by = 'dead-worker', claimed_until = $1, attempts = 1 WHERE id = $2",
    )
    .bind(until)
    .bind(&id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        sink.count("orphan"),
        0,
        "a held claim keeps other workers off"
    );
    assert!(sink.wait_for("orphan").await, "taken over after the lease");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.count("orphan"), 1);
    let (attempts, sent, _, _) = row(&app, &id).await;
    assert!(sent);
    assert_eq!(attempts, 2, "the dead worker's attempt counts");
}

#[tokio::test]
async fn two_instances_on_one_database_send_each_message_once() {
    let db = crate::helpers::fresh_database().await;
    let Some(url) = db.url().map(str::to_string) else {
        crate::helpers::skipped(
            "two_instances_on_one_database_send_each_message_once",
            "needs PostgreSQL (PORTVAKT_TEST_DATABASE_URL)",
        );
        return;
    };
    let sink = SmtpSink::started().await;
    // Instances of one deployment share the secret key that seals the bodies.
    let secret = portvakt::crypto::secret::generate();
    let smtp = sink.url();
    let settings = [
        ("smtp_url", smtp.as_str()),
        ("secret_key", secret.as_str()),
        ("mail_retry_initial", "100ms"),
        ("mail_retry_max", "400ms"),
    ];
    let a = crate::helpers::spawn_app_on(db, &settings).await;
    let mut with_url = settings.to_vec();
    with_url.push(("database_url", url.as_str()));
    let b = crate::helpers::spawn_app_on(crate::helpers::TestDatabase::Sqlite, &with_url).await;

    const MESSAGES: usize = 30;
    let subjects: Vec<String> = (0..MESSAGES).map(|i| format!("crowd-{i}")).collect();
    // Both instances enqueue, and both workers are woken for every message (NOTIFY).
    let enqueues = subjects.iter().enumerate().map(|(i, s)| {
        let app = if i % 2 == 0 { &a } else { &b };
        async move { enqueue(app, &message(s)).await }
    });
    futures::future::join_all(enqueues).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            sink.messages().len() >= MESSAGES
        })
        .await,
        "{} of {MESSAGES} arrived",
        sink.messages().len()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    for s in &subjects {
        assert_eq!(sink.count(s), 1, "{s}");
    }
    assert_eq!(sink.messages().len(), MESSAGES);
}
