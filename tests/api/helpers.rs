//! `spawn_app()`: a real portvakt on a random port with a fresh database (a temporary SQLite
//! file, or a new PostgreSQL database when `PORTVAKT_TEST_DATABASE_URL` is set), and typed
//! helpers that speak the HTTP API like a client would.

use std::sync::Once;
use std::time::Duration;

use portvakt::{AppState, Application, Config};
use reqwest::{Client, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery staple 42";
pub const OTHER_PASSWORD: &str = "violet tangerine umbrella 1987";

/// A running instance and everything needed to talk to it.
pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub state: AppState,
    _db: TestDatabase,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub session_id: String,
}

static INIT: Once = Once::new();

fn init() {
    INIT.call_once(|| {
        // Set PORTVAKT_TEST_LOG=debug to see the server's logs while debugging a test.
        if let Ok(filter) = std::env::var("PORTVAKT_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

/// Where a test's data lives. PostgreSQL databases are dropped when the test ends.
pub enum TestDatabase {
    Sqlite,
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDatabase {
    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDatabase::Postgres { .. })
    }

    pub fn url(&self) -> Option<&str> {
        match self {
            TestDatabase::Sqlite => None,
            TestDatabase::Postgres { url, .. } => Some(url),
        }
    }
}

/// A fresh, empty PostgreSQL database when the suite runs against PostgreSQL.
pub async fn fresh_database() -> TestDatabase {
    let Ok(admin_url) = std::env::var("PORTVAKT_TEST_DATABASE_URL") else {
        return TestDatabase::Sqlite;
    };
    use sqlx::Connection;
    let name = format!("pv_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to PORTVAKT_TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin_url).expect("PORTVAKT_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    TestDatabase::Postgres {
        admin_url,
        name,
        url: url.to_string(),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres {
            admin_url, name, ..
        } = self
        {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Spawns an instance with settings (lowercase keys as in `portvakt.toml`) over the test defaults.
pub async fn spawn_app_with(settings: &[(&str, &str)]) -> TestApp {
    let db = fresh_database().await;
    spawn_app_on(db, settings).await
}

/// Spawns an instance on an existing database (two instances can share one).
pub async fn spawn_app_on(db: TestDatabase, settings: &[(&str, &str)]) -> TestApp {
    init();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pairs: Vec<(String, String)> = vec![
        ("addr".into(), "127.0.0.1:0".into()),
        ("data_dir".into(), dir.path().display().to_string()),
        // Suites log in and sign up far more often than a person would; the tests of the
        // limits themselves set them back.
        ("rate_limit_per_second".into(), "100000".into()),
        ("rate_limit_burst".into(), "100000".into()),
        ("auth_rate_limit_per_minute".into(), "100000".into()),
        ("auth_rate_limit_burst".into(), "100000".into()),
    ];
    if let Some(url) = db.url() {
        pairs.push(("database_url".into(), url.to_string()));
    }
    for (k, v) in settings {
        pairs.retain(|(key, _)| key != k);
        pairs.push((k.to_string(), v.to_string()));
    }
    let config = Config::from_pairs(pairs).expect("valid test configuration");
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let app = Application::build(config)
        .await
        .expect("the application starts");
    let base = format!("{scheme}://{}", app.local_addr());
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        base,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
        state,
        _db: db,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// This instance's data directory (the SQLite database and the development secret key).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Runs the `portvakt` binary against this instance's database and secret key, with
    /// nothing else from the environment. Returns (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        self.cli_with(&[], args).await
    }

    /// [`TestApp::cli`] with more `PORTVAKT_*` variables.
    pub async fn cli_with(&self, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portvakt"));
        cmd.current_dir(self._dir.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("PORTVAKT_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PORTVAKT_DATA_DIR", self._dir.path());
        if let Some(url) = self._db.url() {
            cmd.env("PORTVAKT_DATABASE_URL", url);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.args(args).output().await.expect("portvakt runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Begins a graceful shutdown and returns the server task to await.
    pub fn stop(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server still running")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/users",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/api/v1/auth/refresh",
            &json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    /// A request with a bearer token.
    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        access_token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(access_token)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        request.send().await.expect("request")
    }

    pub async fn me(&self, access_token: &str) -> Response {
        self.client
            .get(self.url("/api/v1/users/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request")
    }

    pub async fn logout(&self, access_token: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/logout"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request")
    }

    /// Signs up a new account with a unique email and logs in.
    pub async fn new_user(&self) -> (String, TokenPair) {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        assert_eq!(
            self.signup(&email, PASSWORD).await.status(),
            StatusCode::CREATED
        );
        let pair = self.login_ok(&email, PASSWORD).await;
        (email, pair)
    }

    /// Signs up `email`, gives it the `admin` role and logs it in.
    pub async fn admin(&self, email: &str) -> TokenPair {
        assert_eq!(
            self.signup(email, PASSWORD).await.status(),
            StatusCode::CREATED
        );
        sqlx::query(
            "INSERT INTO user_roles (user_id, role) SELECT id, 'admin' FROM users WHERE email_key = $1",
        )
        .bind(email)
        .execute(self.state.store.pool())
        .await
        .expect("grant admin");
        self.login_ok(email, PASSWORD).await
    }

    pub async fn login_ok(&self, email: &str, password: &str) -> TokenPair {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {email} failed");
        response.json().await.expect("token pair")
    }
}

/// Reads a problem+json body and checks the parts every problem must have.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap_or("")
            .starts_with("https://portvakt.dev/problems/"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(
        body["request_id"].as_str(),
        request_id.as_deref(),
        "request_id matches the header"
    );
    body
}

/// The problem type's slug.
pub fn slug(problem: &Value) -> &str {
    problem["type"]
        .as_str()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
}

/// Polls until `f` is true or the deadline passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Says on the terminal, past the test harness's output capture, that a test did not run.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
