//! The `portvakt` binary as an operator runs it: CLI commands, configuration guards, logs,
//! and signals.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{OTHER_PASSWORD, PASSWORD};

const STRONG_SECRET: &str = "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8";

/// `portvakt` in a scratch directory with a clean environment.
pub(crate) fn portvakt(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portvakt"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTVAKT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A `portvakt serve` child whose stdout lines are collected.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Server {
    pub(crate) fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = portvakt(dir);
        cmd.arg("serve")
            .env("PORTVAKT_ADDR", "127.0.0.1:0")
            .env("PORTVAKT_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("portvakt starts");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = Server {
            child,
            base: String::new(),
            lines: rx,
            seen: Vec::new(),
        };
        let ready = server.wait_for("portvakt is ready");
        let addr = ready["addr"]
            .as_str()
            .expect("ready line names the address")
            .to_string();
        server.base = format!("http://{addr}");
        server
    }

    /// Reads log lines until one has `message`; returns it parsed.
    pub(crate) fn wait_for(&mut self, message: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no `{message}` in:\n{}", self.seen.join("\n")));
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == message
            {
                return v;
            }
        }
    }

    /// Sends `signal` (a `libc::SIG*`) to the server.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().expect("portvakt exits");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn version_and_help_speak_to_a_newcomer() {
    let dir = tempfile::tempdir().unwrap();
    let out = portvakt(dir.path()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("portvakt {}", env!("CARGO_PKG_VERSION"))
    );
    let help = portvakt(dir.path()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for word in ["serve", "migrate", "user", "check", "SQLite"] {
        assert!(text.contains(word), "help mentions {word}:\n{text}");
    }
}

/// Runs `portvakt user create` with the password on stdin.
fn create_user(dir: &Path, args: &[&str], password: &str) -> std::process::Output {
    with_password(dir, &[&["user", "create"], args].concat(), password)
}

/// Runs `portvakt <args> --password-stdin`, writing `password` to its standard input.
fn with_password(dir: &Path, args: &[&str], password: &str) -> std::process::Output {
    let mut child = portvakt(dir)
        .args(args)
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn user_create_works_on_a_fresh_data_dir_and_the_user_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = create_user(
        dir.path(),
        &["--email", "root@example.com", "--admin"],
        PASSWORD,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("root@example.com") && said.contains("admin"),
        "{said}"
    );
    assert!(!said.contains(PASSWORD) && !String::from_utf8_lossy(&out.stderr).contains(PASSWORD));

    let mut server = Server::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({ "email": "root@example.com", "password": PASSWORD }));
    let pair: Value = login.send().await.unwrap().json().await.unwrap();
    let token = pair["access_token"].as_str().unwrap();
    let me = client
        .get(format!("{}/api/v1/users/me", server.base))
        .bearer_auth(token);
    let me: Value = me.send().await.unwrap().json().await.unwrap();
    assert_eq!(me["roles"], json!(["admin", "user"]));
    assert!(server.terminate().success());

    let taken = create_user(dir.path(), &["--email", "ROOT@example.com"], OTHER_PASSWORD);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already exists"));

    let weak = create_user(dir.path(), &["--email", "weak@example.com"], "password");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password rejected"));
}

#[test]
fn production_refuses_an_unsafe_configuration_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = portvakt(dir.path())
        .arg("serve")
        .env("PORTVAKT_ENV", "production")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORTVAKT_SECRET_KEY"), "{err}");
    assert!(err.contains("PORTVAKT_ISSUER"), "{err}");
    assert!(err.contains("portvakt check"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was created");

    let out = portvakt(dir.path())
        .arg("serve")
        .env("PORTVAKT_ENV", "production")
        .env("PORTVAKT_SECRET_KEY", "tooshort")
        .env("PORTVAKT_ISSUER", "http://id.example.com")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32 random bytes"), "{err}");
    assert!(err.contains("not https"), "{err}");
    assert!(
        !err.contains("tooshort"),
        "the secret itself is never printed: {err}"
    );
}

#[test]
fn check_reports_each_item_and_fails_on_unsafe_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = portvakt(dir.path())
        .arg("check")
        .env("PORTVAKT_ENV", "production")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[fail] secret_key"), "{text}");
    assert!(text.contains("fix:"), "{text}");

    // No database yet is a failure in production: nothing could be served.
    let prod = |cmd: &mut Command| {
        cmd.env("PORTVAKT_ENV", "production")
            .env("PORTVAKT_SECRET_KEY", STRONG_SECRET)
            .env("PORTVAKT_ISSUER", "https://id.example.com");
    };
    let mut cmd = portvakt(dir.path());
    prod(cmd.arg("check"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[fail] database"));

    let mut cmd = portvakt(dir.path());
    prod(cmd.arg("migrate"));
    assert!(cmd.output().unwrap().status.success());
    let mut cmd = portvakt(dir.path());
    prod(cmd.arg("check"));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(STRONG_SECRET));
    assert!(text.contains("[pass] migrations"), "{text}");
    assert!(text.contains("score: "), "{text}");
}

/// The deep report as JSON: every item of the issue, a score, and the exit code following
/// the failures.
#[test]
fn check_json_reports_the_database_and_scores_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = create_user(
        dir.path(),
        &["--email", "root@example.com", "--admin"],
        PASSWORD,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = portvakt(dir.path());
        cmd.args(["check", "--json"])
            .env("PORTVAKT_ENV", "production")
            .env("PORTVAKT_SECRET_KEY", STRONG_SECRET)
            .env("PORTVAKT_ISSUER", "https://id.example.com");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("JSON: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), report)
    };
    // `create_user` used the development secret; the audit log and keys were made with it,
    // but nothing `check` reads needs to decrypt them.
    let (code, report) = run(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    let items: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["item"].as_str().unwrap())
        .collect();
    for item in [
        "secret_key",
        "issuer",
        "cors_origins",
        "tls",
        "proxy",
        "database",
        "migrations",
        "signing_key",
        "admins",
        "smtp",
        "login_alerts",
        "log_format",
        "rate_limits",
        "metrics",
        "backups",
    ] {
        assert!(items.contains(&item), "{item} missing from {items:?}");
    }
    let score = report["score"].as_u64().unwrap();
    assert!(
        score > 0 && score < 100,
        "warnings lower the score: {score}"
    );
    let admins = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["item"] == "admins")
        .unwrap();
    assert_eq!(admins["level"], "warn");
    assert!(admins["message"].as_str().unwrap().starts_with("1 admin"));

    let finding = |report: &Value, item: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["item"] == item)
            .cloned()
            .unwrap()
    };
    assert_eq!(finding(&report, "backups")["message"], "no backup recorded");
    let out = portvakt(dir.path())
        .args(["backup", "--out", "now.backup.gz"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, after_backup) = run(&[]);
    let backups = finding(&after_backup, "backups");
    assert_eq!(backups["level"], "pass");
    assert!(
        backups["message"]
            .as_str()
            .unwrap()
            .starts_with("last backup 0 h ago")
    );
    assert!(after_backup["score"].as_u64().unwrap() > score);

    let (code, worse) = run(&[("PORTVAKT_CORS_ORIGINS", "*")]);
    assert_eq!(code, Some(1));
    assert_eq!(worse["failures"], 1);
    assert!(worse["score"].as_u64().unwrap() < score);
    let cors = worse["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["item"] == "cors_origins")
        .unwrap();
    assert_eq!(cors["level"], "fail");
    assert!(!cors["fix"].as_str().unwrap().is_empty());
}

#[test]
fn invalid_settings_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = portvakt(dir.path())
        .arg("serve")
        .env("PORTVAKT_DB_POOL_MAX", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORTVAKT_DB_POOL_MAX"));
}

#[test]
fn the_env_example_and_the_readme_document_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = portvakt(dir.path()).arg("config").output().unwrap();
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example"))
            .unwrap();
    assert_eq!(
        committed, generated,
        ".env.example is stale: run `portvakt config > .env.example`"
    );
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for s in portvakt::config::SETTINGS {
        assert!(committed.contains(&s.env_name()));
        assert!(
            readme.contains(&format!("| `{}` |", s.env_name())),
            "README documents {}",
            s.env_name()
        );
    }
}

#[test]
fn migrate_creates_and_then_reports_a_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let first = portvakt(dir.path()).arg("migrate").output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("migrated from version 0"));
    let second = portvakt(dir.path()).arg("migrate").output().unwrap();
    assert!(String::from_utf8_lossy(&second.stdout).contains("current"));
}

#[tokio::test]
async fn logs_are_json_lines_with_request_fields_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[("PORTVAKT_LOG", "debug")]);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);
    client
        .post(url("/api/v1/users"))
        .json(&json!({ "email": "log@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let pair: Value = client
        .post(url("/api/v1/auth/login"))
        .json(&json!({ "email": "log@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = pair["access_token"].as_str().unwrap().to_string();
    let refresh = pair["refresh_token"].as_str().unwrap().to_string();
    let me = client
        .get(url("/api/v1/users/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let user_id = me.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pair2: Value = client
        .post(url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    client
        .post(url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap();
    client
        .post(url("/api/v1/auth/login"))
        .json(&json!({ "email": "log@example.com", "password": "wrong horse battery" }))
        .send()
        .await
        .unwrap();
    client
        .post(url("/api/v1/users/me/password"))
        .bearer_auth(pair2["access_token"].as_str().unwrap())
        .json(&json!({ "current_password": PASSWORD, "new_password": OTHER_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert!(server.terminate().success());

    let db = format!(
        "sqlite://{}",
        dir.path().join("data").join("portvakt.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    let secret = std::fs::read_to_string(dir.path().join("data").join("secret.key")).unwrap();
    let all = server.seen.join("\n");
    for (what, needle) in [
        ("password", PASSWORD),
        ("new password", OTHER_PASSWORD),
        ("wrong password", "wrong horse battery"),
        ("access token", access.as_str()),
        ("access token signature", access.rsplit('.').next().unwrap()),
        ("refresh token", refresh.as_str()),
        (
            "rotated refresh token",
            pair2["refresh_token"].as_str().unwrap(),
        ),
        ("secret key", secret.trim()),
        ("password hash", hash.as_str()),
        ("argon2 salt and output", hash.rsplit('$').next().unwrap()),
    ] {
        assert!(!needle.is_empty(), "{what} is known");
        assert!(!all.contains(needle), "the logs contain the {what}");
    }

    let requests: Vec<Value> = server
        .seen
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|_| panic!("not a JSON line: {l}"))
        })
        .filter(|v| v["message"] == "request")
        .collect();
    let me_line = requests
        .iter()
        .find(|v| v["route"] == "/api/v1/users/me")
        .expect("a request line for /users/me");
    assert_eq!(me_line["method"], "GET");
    assert_eq!(me_line["user_id"], user_id.as_str());
    assert_eq!(me_line["status"], 200);
    assert!(me_line["latency_ms"].is_number());
    assert!(me_line["request_id"].is_string());
    assert!(me_line["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(me_line["level"], "INFO");
    let reuse = server
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("refresh token reused"))
        })
        .expect("the reuse is a logged security event");
    assert_eq!(reuse["level"], "WARN");
    assert_eq!(
        reuse["route"], "/api/v1/auth/refresh",
        "events inside a request carry its context"
    );
    assert!(reuse["request_id"].is_string());
    assert!(
        server.seen.iter().any(|l| l.contains("\"stopped\"")),
        "shutdown is logged"
    );
}

#[test]
fn production_refuses_an_open_cors_policy_or_a_proxy_list_that_trusts_everyone() {
    for (variable, value, item) in [
        ("PORTVAKT_CORS_ORIGINS", "*", "cors_origins"),
        ("PORTVAKT_TRUSTED_PROXIES", "0.0.0.0/0", "trusted_proxies"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = portvakt(dir.path())
            .arg("check")
            .env("PORTVAKT_ENV", "production")
            .env("PORTVAKT_SECRET_KEY", STRONG_SECRET)
            .env("PORTVAKT_ISSUER", "https://id.example.com")
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{variable}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("[fail] {item}")), "{text}");

        let out = portvakt(dir.path())
            .arg("serve")
            .env("PORTVAKT_ENV", "production")
            .env("PORTVAKT_SECRET_KEY", STRONG_SECRET)
            .env("PORTVAKT_ISSUER", "https://id.example.com")
            .env("PORTVAKT_ADDR", "127.0.0.1:0")
            .env(variable, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{variable}: serve must refuse");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(item),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Operator recovery: `user show` and `user reset-password` on the configured database while
/// the service runs.
#[tokio::test]
async fn an_operator_shows_an_account_and_resets_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[("PORTVAKT_CACHE_TTL", "1s")]);
    let client = reqwest::Client::new();
    let email = "Recover.Me@example.com";
    let body = json!({"email": email, "password": PASSWORD, "name": "Rec Over"});
    let r = client
        .post(format!("{}/api/v1/users", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let login = |password: &'static str| {
        let client = client.clone();
        let url = format!("{}/api/v1/auth/login", server.base);
        async move {
            client
                .post(url)
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let pair: Value = login(PASSWORD).await.json().await.unwrap();
    let token = pair["access_token"].as_str().unwrap().to_string();

    let out = portvakt(dir.path())
        .args(["user", "show", "--email", "recover.me@EXAMPLE.com"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains(email) && shown.contains("Rec Over") && shown.contains("user"),
        "{shown}"
    );

    // A weak password is refused like anywhere else.
    let reset = ["user", "reset-password", "--email", email];
    let out = with_password(dir.path(), &reset, "password");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password rejected"));

    let out = with_password(dir.path(), &reset, OTHER_PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s) ended"));

    assert_eq!(login(PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login(OTHER_PASSWORD).await.status(), StatusCode::OK);
    // The running service learns of the ended session within its cache lifetime (SQLite
    // has no cross-process announcements).
    let me = format!("{}/api/v1/users/me", server.base);
    let ended = crate::helpers::eventually(Duration::from_secs(10), || {
        let (client, me, token) = (client.clone(), me.clone(), token.clone());
        async move {
            client
                .get(me)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                == StatusCode::UNAUTHORIZED
        }
    })
    .await;
    assert!(ended, "the old session's token still works");
    assert!(server.terminate().success());
}

/// The operator's CLI over the admin rules: list, set-role, disable/enable, delete, with the
/// last enabled admin protected and every change audited.
#[test]
fn operator_commands_follow_the_admin_rules() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--email", "Ada.Admin@example.com", "--admin"][..],
        &["--email", "bob.user@example.com", "--name", "Bob Builder"][..],
    ] {
        let out = create_user(dir.path(), args, PASSWORD);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cli = |args: &[&str]| {
        let out = portvakt(dir.path()).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, _) = cli(&["user", "list", "--q", "BOB"]);
    assert!(
        ok && listed.contains("bob.user@example.com") && !listed.contains("Ada"),
        "{listed}"
    );
    assert!(listed.contains("1 of 1 account(s)"), "{listed}");
    let (ok, listed, _) = cli(&["user", "list", "--q", "bob b"]);
    assert!(
        ok && listed.contains("Bob Builder"),
        "by name too: {listed}"
    );

    // The only admin cannot be disabled.
    let (ok, _, err) = cli(&["user", "disable", "--email", "ada.admin@example.com"]);
    assert!(!ok && err.contains("no enabled admin"), "{err}");
    let (ok, out, err) = cli(&[
        "user",
        "set-role",
        "--email",
        "bob.user@example.com",
        "--roles",
        "admin",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("admin, user") || out.contains("user, admin"),
        "{out}"
    );
    let (ok, _, err) = cli(&["user", "disable", "--email", "ada.admin@example.com"]);
    assert!(ok, "{err}");
    let (_, shown, _) = cli(&["user", "show", "--email", "ada.admin@example.com"]);
    assert!(!shown.contains("disabled:       -"), "{shown}");
    let (ok, _, err) = cli(&["user", "enable", "--email", "ada.admin@example.com"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&[
        "user",
        "set-role",
        "--email",
        "bob.user@example.com",
        "--roles",
        "no such role!",
    ]);
    assert!(!ok && err.contains("--roles"), "{err}");

    let (ok, _, err) = cli(&["user", "delete", "--email", "bob.user@example.com"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, _, err) = cli(&["user", "delete", "--email", "bob.user@example.com", "--yes"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["user", "show", "--email", "bob.user@example.com"]);
    assert!(!ok && err.contains("no account"), "{err}");
    let (ok, out, err) = cli(&["audit", "verify"]);
    assert!(ok, "{out}{err}");
}
