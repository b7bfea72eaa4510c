//! Real relying parties against a live portvakt: Authlib (Python), openid-client (Node, an
//! OpenID-certified library) and the Django example (mozilla-django-oidc) driven by a person
//! in headless Chromium. Each registers its clients over the admin API, signs a user in
//! through portvakt's own login and consent pages, and checks what the library checks.
//!
//! Their tools install themselves on first use: a venv under `~/.cache` from
//! `tests/rp/requirements.txt`, `npm ci` in `tests/rp/node`, and Debian's Chromium. A missing
//! tool that cannot be installed fails the test; it is never skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app_with};

const CLIENTS: &str = "/api/v1/admin/clients";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Where the scripted RPs "live": nothing listens there, the scripts stop at the redirect.
const RP_ORIGIN: &str = "http://localhost:8976";
const SCRIPT_TIME_LIMIT: Duration = Duration::from_secs(180);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cache_dir() -> PathBuf {
    let cache = PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".cache");
    std::fs::create_dir_all(&cache).expect("create ~/.cache");
    cache
}

/// A Python with tests/rp/requirements.txt installed, made once per machine under a file
/// lock and made again when the requirements change.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let cache = cache_dir();
            let venv = cache.join("portvakt-rp-venv");
            let python = venv.join("bin/python");
            let lock = std::fs::File::create(cache.join("portvakt-rp-venv.lock"))
                .expect("create the venv lock file");
            lock.lock().expect("lock the venv lock file");
            let requirements = root().join("tests/rp/requirements.txt");
            let wanted = std::fs::read_to_string(&requirements).expect("read requirements.txt");
            let stamp = venv.join("portvakt-requirements.txt");
            let installed = std::fs::read_to_string(&stamp).ok();
            if installed.as_deref() != Some(wanted.as_str()) || !python.exists() {
                run(
                    Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "creating the relying-party venv (python3 -m venv)",
                );
                run(
                    Command::new(&python)
                        .args(["-m", "pip", "install", "--quiet", "-r"])
                        .arg(&requirements),
                    "installing tests/rp/requirements.txt",
                );
                std::fs::write(&stamp, &wanted).expect("write the venv stamp");
            }
            python
        })
        .clone()
}

/// Debian's Chromium, installed with apt when it is missing (`PORTVAKT_CHROMIUM` names
/// another one instead).
fn chromium() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        if let Some(other) = std::env::var_os("PORTVAKT_CHROMIUM") {
            assert!(
                Path::new(&other).exists(),
                "PORTVAKT_CHROMIUM names {other:?}, which does not exist"
            );
            return;
        }
        if !Path::new(CHROMIUM).exists() {
            run(
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends", "chromium"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                "installing Chromium (apt-get install chromium)",
            );
        }
    });
}

/// tests/rp/node with its locked dependencies (`npm ci`), once per run of the suite.
fn node_project() -> PathBuf {
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = root().join("tests/rp/node");
        let lock = std::fs::File::create(cache_dir().join("portvakt-rp-npm.lock"))
            .expect("create the npm lock file");
        lock.lock().expect("lock the npm lock file");
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
            "npm ci in tests/rp/node",
        );
        dir
    })
    .clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// An instance whose issuer is the URL it really answers on, as discovery requires.
async fn spawn_provider() -> TestApp {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let issuer = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(&[("addr", &addr), ("issuer", &issuer)]).await;
    assert_eq!(app.base, issuer, "the instance answers on its issuer");
    app
}

async fn register(app: &TestApp, admin_token: &str, body: Value) -> Value {
    let response = app
        .send(
            app.authed(reqwest::Method::POST, CLIENTS, admin_token)
                .json(&body),
        )
        .await;
    let status = response.status();
    let created: Value = response.json().await.expect("client JSON");
    assert_eq!(status, 201, "registering {body}: {created}");
    created
}

/// An admin, and a user the relying party signs in as.
async fn admin_and_user(app: &TestApp) -> (String, String) {
    let admin = app.admin("root@example.com").await;
    let email = format!("rp-{}@example.com", uuid::Uuid::new_v4().simple());
    assert_eq!(app.signup(&email, PASSWORD).await.status(), 201);
    (admin.access_token, email)
}

/// Runs a relying-party script to its end (within the time limit) and returns its JSON
/// line after asserting it succeeded.
async fn run_rp(mut command: tokio::process::Command, what: &str) -> Value {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let out = tokio::time::timeout(SCRIPT_TIME_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {SCRIPT_TIME_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let result: Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{what} printed no JSON result (exit {:?}):\n{stdout}\n{stderr}",
                out.status
            )
        });
    assert!(
        out.status.success() && result["ok"] == true,
        "{what} failed (exit {:?}): {result}\nstderr:\n{stderr}",
        out.status
    );
    result
}

fn checks(result: &Value) -> Vec<&str> {
    result["checks"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn authlib_signs_in_with_pkce_refreshes_and_logs_out() {
    let app = spawn_provider().await;
    let (admin, email) = admin_and_user(&app).await;
    let redirect_uri = format!("{RP_ORIGIN}/callback");
    let signed_out = format!("{RP_ORIGIN}/signed-out");
    let client = register(
        &app,
        &admin,
        json!({
            "client_name": "Authlib RP",
            "redirect_uris": [redirect_uri],
            "post_logout_redirect_uris": [signed_out],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "openid profile email",
        }),
    )
    .await;
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let mut command = tokio::process::Command::new(python);
    command
        .arg(root().join("tests/rp/authlib_rp.py"))
        .args(["--issuer", &app.base])
        .args(["--client-id", client["client_id"].as_str().unwrap()])
        .args(["--client-secret", client["client_secret"].as_str().unwrap()])
        .args(["--redirect-uri", &redirect_uri])
        .args(["--post-logout-redirect-uri", &signed_out])
        .args(["--email", &email])
        .args(["--password", PASSWORD]);
    let result = run_rp(command, "the Authlib relying party").await;
    let done = checks(&result);
    for check in [
        "id_token_signature_iss_aud_nonce_at_hash",
        "old_refresh_token_invalid_grant",
        "refresh_token_dies_with_logout",
        "logout_ends_browser_session",
    ] {
        assert!(done.contains(&check), "{check} missing from {result}");
    }
}

#[tokio::test]
async fn openid_client_signs_in_a_public_client_and_introspects_and_revokes() {
    let app = spawn_provider().await;
    let (admin, email) = admin_and_user(&app).await;
    let redirect_uri = format!("{RP_ORIGIN}/node/callback");
    let public = register(
        &app,
        &admin,
        json!({
            "client_name": "SPA (openid-client)",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    assert!(public.get("client_secret").is_none() || public["client_secret"].is_null());
    let resource_server = register(
        &app,
        &admin,
        json!({
            "client_name": "Resource server",
            "redirect_uris": [format!("{RP_ORIGIN}/rs/callback")],
            "token_endpoint_auth_method": "client_secret_post",
        }),
    )
    .await;
    let dir = tokio::task::spawn_blocking(node_project).await.unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(&dir)
        .arg("rp.mjs")
        .args(["--issuer", &app.base])
        .args(["--client-id", public["client_id"].as_str().unwrap()])
        .args(["--redirect-uri", &redirect_uri])
        .args([
            "--introspect-client-id",
            resource_server["client_id"].as_str().unwrap(),
        ])
        .args([
            "--introspect-client-secret",
            resource_server["client_secret"].as_str().unwrap(),
        ])
        .args(["--email", &email])
        .args(["--password", PASSWORD]);
    let result = run_rp(command, "the openid-client relying party").await;
    let done = checks(&result);
    for check in [
        "id_token_validated_by_library",
        "introspection_active",
        "introspection_inactive_after_revocation",
        "refresh_fails_after_revocation",
    ] {
        assert!(done.contains(&check), "{check} missing from {result}");
    }
}

/// The Django example served by `manage.py runserver`, killed when dropped.
struct Django {
    child: tokio::process::Child,
}

impl Drop for Django {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn django_example_signs_a_person_in_and_out_in_a_real_browser() {
    let app = spawn_provider().await;
    let (admin, email) = admin_and_user(&app).await;
    // On `localhost`, not 127.0.0.1: the example's cookies and portvakt's never share a host.
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let client = register(
        &app,
        &admin,
        json!({
            "client_name": "Django example",
            "redirect_uris": [format!("{origin}/oidc/callback/")],
            "post_logout_redirect_uris": [format!("{origin}/")],
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    )
    .await;
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    tokio::task::spawn_blocking(chromium).await.unwrap();
    let site = root().join("examples/django");
    let data = tempfile::tempdir().unwrap();
    let env = [
        (
            "DJANGO_SECRET_KEY",
            "test-only-django-secret-key-0123456789",
        ),
        ("DJANGO_DEBUG", "1"),
        ("PORTVAKT_ISSUER", app.base.as_str()),
        ("OIDC_RP_CLIENT_ID", client["client_id"].as_str().unwrap()),
        (
            "OIDC_RP_CLIENT_SECRET",
            client["client_secret"].as_str().unwrap(),
        ),
        ("PYTHONDONTWRITEBYTECODE", "1"),
    ];
    let db = data.path().join("db.sqlite3");
    let status = tokio::process::Command::new(&python)
        .current_dir(&site)
        .args(["manage.py", "migrate", "--verbosity", "0"])
        .envs(env)
        .env("DJANGO_DB_PATH", &db)
        .status()
        .await
        .expect("run manage.py migrate");
    assert!(status.success(), "manage.py migrate failed");
    let _django = Django {
        child: tokio::process::Command::new(&python)
            .current_dir(&site)
            .args(["manage.py", "runserver", "--noreload", "--skip-checks"])
            .arg(format!("127.0.0.1:{port}"))
            .envs(env)
            .env("DJANGO_DB_PATH", &db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start manage.py runserver"),
    };
    let up = crate::helpers::eventually(Duration::from_secs(30), || async {
        reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(up, "the Django example did not answer within 30 s");

    let mut command = tokio::process::Command::new(&python);
    command
        .arg(site.join("e2e_playwright.py"))
        .args(["--app", &origin])
        .args(["--email", &email])
        .args(["--password", PASSWORD]);
    let result = run_rp(command, "the Django example in Chromium").await;
    let done = checks(&result);
    for check in [
        "private_page_shows_email",
        "rp_initiated_logout_returns_home",
        "portvakt_session_ended",
    ] {
        assert!(done.contains(&check), "{check} missing from {result}");
    }
}
