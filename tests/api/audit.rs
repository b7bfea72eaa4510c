//! The audit log: what each action records, that an entry commits with its change or not at
//! all, and that `portvakt audit verify` names the entry someone altered or removed.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::{
    OTHER_PASSWORD, PASSWORD, TestApp, TokenPair, problem, spawn_app, spawn_app_on,
};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Every entry, in chain order, as JSON with the stored column names.
async fn entries(app: &TestApp) -> Vec<Value> {
    let rows = sqlx::query(
        "SELECT seq, id, at, actor_id, action, target_type, target_id, outcome, details, ip, user_agent, personal, personal_salt, personal_digest, prev_hash, hash FROM audit_log ORDER BY seq",
    )
    .fetch_all(app.state.store.pool())
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            let text = |c: &str| -> Value {
                r.try_get::<Option<String>, _>(c)
                    .unwrap()
                    .map_or(Value::Null, Value::String)
            };
            let json_of = |c: &str| -> Value {
                r.try_get::<Option<String>, _>(c)
                    .unwrap()
                    .map_or(Value::Null, |t| serde_json::from_str(&t).unwrap())
            };
            json!({
                "seq": r.try_get::<i64, _>("seq").unwrap(),
                "id": text("id"),
                "at": r.try_get::<i64, _>("at").unwrap(),
                "actor_id": text("actor_id"),
                "action": text("action"),
                "target_type": text("target_type"),
                "target_id": text("target_id"),
                "outcome": text("outcome"),
                "details": json_of("details"),
                "ip": text("ip"),
                "user_agent": text("user_agent"),
                "personal": json_of("personal"),
                "personal_salt": text("personal_salt"),
                "personal_digest": text("personal_digest"),
                "prev_hash": text("prev_hash"),
                "hash": text("hash"),
            })
        })
        .collect()
}

async fn actions(app: &TestApp) -> Vec<String> {
    entries(app)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

/// Tampers with the database directly, as an attacker with SQL access would.
async fn sql(app: &TestApp, statement: &str) {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(app.state.store.pool())
        .await
        .unwrap();
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
}

async fn login_as(app: &TestApp, email: &str, password: &str, agent: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", agent)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn user_id(app: &TestApp, pair: &TokenPair) -> String {
    let me: Value = app.me(&pair.access_token).await.json().await.unwrap();
    me["id"].as_str().unwrap().to_string()
}

fn now_micros() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

#[tokio::test]
async fn signup_and_login_record_who_did_what_from_where() {
    let app = spawn_app().await;
    let before = now_micros();
    let created = app
        .client
        .post(app.url("/api/v1/users"))
        .header("user-agent", "audit-test/1.0")
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let user: Value = created.json().await.unwrap();
    let pair: TokenPair = login_as(&app, "ada@example.com", PASSWORD, "audit-test/2.0")
        .await
        .json()
        .await
        .unwrap();

    let log = entries(&app).await;
    assert_eq!(log.len(), 2, "{log:#?}");
    let (signup, login) = (&log[0], &log[1]);
    assert_eq!(signup["seq"], 1);
    assert_eq!(signup["action"], "signup");
    assert_eq!(signup["actor_id"], user["id"]);
    assert_eq!(signup["target_type"], "user");
    assert_eq!(signup["target_id"], user["id"]);
    assert_eq!(signup["outcome"], "success");
    assert_eq!(signup["ip"], "127.0.0.1");
    assert_eq!(signup["user_agent"], "audit-test/1.0");
    assert_eq!(signup["details"], json!({ "roles": ["user"] }));
    assert_eq!(signup["prev_hash"], GENESIS);
    let id = uuid::Uuid::parse_str(signup["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    let at = signup["at"].as_i64().unwrap();
    assert!(at >= before && at <= now_micros(), "{at}");

    assert_eq!(login["seq"], 2);
    assert_eq!(login["action"], "login");
    assert_eq!(login["actor_id"], user["id"]);
    assert_eq!(login["target_type"], "session");
    assert_eq!(login["target_id"], pair.session_id.as_str());
    assert_eq!(login["user_agent"], "audit-test/2.0");
    assert_eq!(login["prev_hash"], signup["hash"], "entries are chained");
    assert_ne!(login["id"], signup["id"]);
}

#[tokio::test]
async fn failed_logins_record_the_reason_and_never_the_password() {
    let app = spawn_app().await;
    app.signup("known@example.com", PASSWORD).await;
    app.signup("off@example.com", PASSWORD).await;
    sql(
        &app,
        "UPDATE users SET disabled_at = 1 WHERE email_key = 'off@example.com'",
    )
    .await;
    let wrong = "Wrong-Horse-Battery-1";
    problem(login_as(&app, "known@example.com", wrong, "ua").await, 401).await;
    problem(login_as(&app, "Ghost@Example.com", wrong, "ua").await, 401).await;
    problem(login_as(&app, "off@example.com", PASSWORD, "ua").await, 401).await;

    let log = entries(&app).await;
    let failed: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "login_failed")
        .collect();
    assert_eq!(failed.len(), 3, "{log:#?}");
    let known_id = &log[0]["target_id"];
    let off_id = &log[1]["target_id"];
    for (entry, reason) in failed
        .iter()
        .zip(["wrong_password", "unknown_email", "disabled"])
    {
        assert_eq!(entry["outcome"], "failure");
        assert_eq!(entry["actor_id"], Value::Null, "nobody was authenticated");
        assert_eq!(entry["details"], json!({ "reason": reason }));
        assert_eq!(entry["ip"], "127.0.0.1");
    }
    assert_eq!(failed[0]["target_type"], "user");
    assert_eq!(&failed[0]["target_id"], known_id);
    assert_eq!(failed[0]["personal"], Value::Null);
    // An unknown email is no account: no target, and the address only as erasable personal data.
    assert_eq!(failed[1]["target_type"], Value::Null);
    assert_eq!(failed[1]["target_id"], Value::Null);
    assert_eq!(
        failed[1]["personal"],
        json!({ "email": "Ghost@Example.com" })
    );
    assert_eq!(&failed[2]["target_id"], off_id);

    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(wrong) && !text.contains(PASSWORD));
}

#[tokio::test]
async fn logout_revocation_reuse_and_password_change_are_recorded() {
    let app = spawn_app().await;
    let (email, phone) = app.new_user().await;
    let me = user_id(&app, &phone).await;
    let laptop = app.login_ok(&email, PASSWORD).await;

    let revoke = app.authed(
        Method::DELETE,
        &format!("/api/v1/users/me/sessions/{}", phone.session_id),
        &laptop.access_token,
    );
    assert_eq!(app.send(revoke).await.status(), StatusCode::NO_CONTENT);
    let rotated: TokenPair = app
        .refresh(&laptop.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    problem(app.refresh(&laptop.refresh_token).await, 401).await;

    let tablet = app.login_ok(&email, PASSWORD).await;
    let desktop = app.login_ok(&email, PASSWORD).await;
    let change = app
        .authed(
            Method::POST,
            "/api/v1/users/me/password",
            &tablet.access_token,
        )
        .json(&json!({ "current_password": PASSWORD, "new_password": OTHER_PASSWORD }));
    assert_eq!(app.send(change).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.logout(&tablet.access_token).await.status(),
        StatusCode::NO_CONTENT
    );
    // Nothing happened, so nothing is recorded: the session was already ended.
    assert_eq!(
        app.logout(&tablet.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let log = entries(&app).await;
    let names: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "signup",
            "login",
            "login",
            "session_revoked",
            "refresh_reuse_detected",
            "login",
            "login",
            "password_changed",
            "logout"
        ]
    );
    for e in &log {
        assert_eq!(e["actor_id"], me.as_str(), "{e}");
    }
    let revoked = &log[3];
    assert_eq!(revoked["target_type"], "session");
    assert_eq!(revoked["target_id"], phone.session_id.as_str());
    assert_eq!(revoked["outcome"], "success");
    let reuse = &log[4];
    assert_eq!(reuse["target_id"], laptop.session_id.as_str());
    assert_eq!(reuse["outcome"], "failure");
    assert_eq!(reuse["details"], json!({ "session_revoked": true }));
    assert_eq!(rotated.session_id, laptop.session_id);
    let changed = &log[7];
    assert_eq!(changed["target_type"], "user");
    assert_eq!(changed["target_id"], me.as_str());
    assert_eq!(
        changed["details"],
        json!({ "revoked_sessions": 1 }),
        "the desktop session ended with it"
    );
    let logout = &log[8];
    assert_eq!(logout["target_id"], tablet.session_id.as_str());
    problem(app.me(&desktop.access_token).await, 401).await;
}

#[tokio::test]
async fn an_entry_commits_with_its_change_or_not_at_all() {
    let app = spawn_app().await;
    assert_eq!(
        app.signup("first@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    // The change fails (the email is taken): no entry.
    problem(app.signup("FIRST@example.com", PASSWORD).await, 409).await;
    assert_eq!(actions(&app).await, ["signup"]);

    // The entry cannot be written: the change does not happen either.
    sql(&app, "ALTER TABLE audit_log RENAME TO audit_log_away").await;
    problem(app.signup("second@example.com", PASSWORD).await, 500).await;
    problem(app.login("first@example.com", PASSWORD).await, 500).await;
    sql(&app, "ALTER TABLE audit_log_away RENAME TO audit_log").await;
    assert_eq!(
        count(&app, "users").await,
        1,
        "no account without its entry"
    );
    assert_eq!(
        count(&app, "sessions").await,
        0,
        "no session without its entry"
    );

    // The failed attempts left no trace in the chain's head either.
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 entries checked"), "{out}");
    assert_eq!(
        app.signup("second@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(actions(&app).await, ["signup", "signup"]);
}

/// An instance with a few entries in its chain.
async fn app_with_entries() -> TestApp {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    problem(app.login(&email, OTHER_PASSWORD).await, 401).await;
    app.login_ok(&email, PASSWORD).await;
    assert_eq!(entries(&app).await.len(), 4);
    app
}

#[tokio::test]
async fn verify_passes_on_an_intact_chain_and_names_an_edited_entry() {
    let app = app_with_entries().await;
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("audit log OK: 4 entries checked through entry 4"),
        "{out}"
    );

    let second = entries(&app).await[1]["id"].as_str().unwrap().to_string();
    sql(
        &app,
        r#"UPDATE audit_log SET details = '{"reason":"nothing to see"}' WHERE seq = 2"#,
    )
    .await;
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!("entry 2 (id {second}) was altered")),
        "{err}"
    );
}

#[tokio::test]
async fn verify_names_an_entry_whose_ip_was_changed() {
    let app = app_with_entries().await;
    sql(
        &app,
        "UPDATE audit_log SET ip = '203.0.113.9' WHERE seq = 3",
    )
    .await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains("entry 3 (id "), "{err}");
    assert!(err.contains("IP, user agent or personal data"), "{err}");
}

#[tokio::test]
async fn verify_notices_personal_data_cleared_from_an_entry() {
    let app = app_with_entries().await;
    sql(
        &app,
        "UPDATE audit_log SET ip = NULL, user_agent = NULL, personal = NULL, personal_salt = NULL WHERE seq = 3",
    )
    .await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains("entry 3 (id "), "{err}");
}

#[tokio::test]
async fn verify_notices_a_log_wiped_back_to_empty() {
    let app = app_with_entries().await;
    sql(&app, "DELETE FROM audit_log").await;
    sql(
        &app,
        &format!(
            "UPDATE audit_head SET seq = 0, hash = '{}', signature = '' WHERE id = 1",
            "0".repeat(64)
        ),
    )
    .await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok, "{err}");
    assert!(err.contains("unsigned head"), "{err}");
    // Starting the service (here through a CLI command that opens it) must not bless the
    // reset by signing the empty head again.
    app.cli(&["user", "unlock", "--email", "nobody@example.com"])
        .await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok, "{err}");
    assert!(err.contains("unsigned head"), "{err}");
}

#[tokio::test]
async fn a_database_made_by_portvakt_migrate_starts_with_a_signed_head() {
    let app = crate::helpers::spawn_app().await;
    if app.state.store.backend() == portvakt::store::Backend::Postgres {
        // The same code path; one backend is enough for a fresh SQLite file.
        return;
    }
    let fresh = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portvakt"))
            .args(args)
            .env_clear()
            .env("PORTVAKT_DATA_DIR", fresh.path())
            .current_dir(fresh.path())
            .output()
            .unwrap()
    };
    let out = run(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the key that signed it, verify says so rather than calling the log forged.
    std::fs::remove_file(fresh.path().join(portvakt::config::DEV_SECRET_FILE)).unwrap();
    let out = run(&["audit", "verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no secret key"), "{err}");
}

#[tokio::test]
async fn verify_names_an_entry_deleted_from_the_middle() {
    let app = app_with_entries().await;
    sql(&app, "DELETE FROM audit_log WHERE seq = 2").await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains("entry 2 is missing"), "{err}");
}

#[tokio::test]
async fn verify_notices_entries_deleted_from_the_end() {
    let app = app_with_entries().await;
    sql(&app, "DELETE FROM audit_log WHERE seq >= 3").await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains("entry 3 is missing"), "{err}");
    assert!(err.contains("removed from the end"), "{err}");

    // Moving the head back to match needs the secret key.
    let second = entries(&app).await[1]["hash"].as_str().unwrap().to_string();
    sql(
        &app,
        &format!("UPDATE audit_head SET seq = 2, hash = '{second}' WHERE id = 1"),
    )
    .await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains("signature is invalid"), "{err}");
}

#[tokio::test]
async fn verify_names_a_reordered_entry() {
    let app = app_with_entries().await;
    sql(&app, "UPDATE audit_log SET seq = 100 WHERE seq = 2").await;
    sql(&app, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    sql(&app, "UPDATE audit_log SET seq = 3 WHERE seq = 100").await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains("entry 2 (id "), "{err}");
    assert!(err.contains("does not follow the entry before it"), "{err}");
}

#[tokio::test]
async fn pruning_keeps_the_chain_verifiable_and_a_forged_checkpoint_is_caught() {
    let app = spawn_app().await;
    app.new_user().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.new_user().await;
    assert_eq!(entries(&app).await.len(), 4);

    let (ok, out, err) = app.cli(&["audit", "prune", "--older-than", "1s"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("pruned 2 audit entries; the signed checkpoint is at entry 2"),
        "{out}"
    );
    let kept = entries(&app).await;
    assert_eq!(
        kept.iter().map(|e| e["seq"].clone()).collect::<Vec<_>>(),
        [3, 4]
    );
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("2 entries checked through entry 4 (entries up to 2 pruned"),
        "{out}"
    );
    // Nothing newer is due: a second run prunes nothing and breaks nothing.
    let (ok, out, _) = app.cli(&["audit", "prune", "--older-than", "1h"]).await;
    assert!(ok && out.contains("pruned 0 audit entries"), "{out}");

    // Deleting the next entry is caught at the checkpoint...
    sql(&app, "DELETE FROM audit_log WHERE seq = 3").await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains("entry 3 is missing"), "{err}");
    // ...and moving the checkpoint over the gap needs the secret key.
    let third = &kept[0];
    sql(
        &app,
        &format!(
            "UPDATE audit_checkpoint SET seq = 3, hash = '{}', at = {} WHERE id = 1",
            third["hash"].as_str().unwrap(),
            third["at"]
        ),
    )
    .await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(
        err.contains("checkpoint whose signature is invalid"),
        "{err}"
    );
    // Pruning refuses to go on from a forged checkpoint.
    let (ok, _, err) = app.cli(&["audit", "prune", "--older-than", "0s"]).await;
    assert!(!ok);
    assert!(err.contains("BROKEN"), "{err}");
}

#[tokio::test]
async fn the_audit_log_holds_no_password_token_or_hash() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let wrong = "Not-The-Password-77";
    problem(app.login(&email, wrong).await, 401).await;
    let second: TokenPair = app
        .refresh(&first.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    problem(app.refresh(&first.refresh_token).await, 401).await;
    let pair = app.login_ok(&email, PASSWORD).await;
    let change = app
        .authed(
            Method::POST,
            "/api/v1/users/me/password",
            &pair.access_token,
        )
        .json(&json!({ "current_password": PASSWORD, "new_password": OTHER_PASSWORD }));
    assert_eq!(app.send(change).await.status(), StatusCode::NO_CONTENT);

    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    let secret = std::fs::read_to_string(app_secret_file(&app)).unwrap();
    let log = serde_json::to_string(&entries(&app).await).unwrap();
    for (what, needle) in [
        ("password", PASSWORD.to_string()),
        ("new password", OTHER_PASSWORD.to_string()),
        ("wrong password", wrong.to_string()),
        ("access token", first.access_token.clone()),
        ("refresh token", first.refresh_token.clone()),
        ("rotated refresh token", second.refresh_token.clone()),
        (
            "stored refresh token hash",
            portvakt::crypto::token_hash(&first.refresh_token),
        ),
        ("password hash", hash.clone()),
        (
            "argon2 output",
            hash.rsplit('$').next().unwrap().to_string(),
        ),
        ("secret key", secret.trim().to_string()),
    ] {
        assert!(!log.contains(&needle), "the audit log contains the {what}");
    }
}

fn app_secret_file(app: &TestApp) -> std::path::PathBuf {
    app.data_dir().join("secret.key")
}

#[tokio::test]
async fn concurrent_logins_and_signups_leave_a_verifiable_chain() {
    let db = crate::helpers::fresh_database().await;
    let url = db.url().map(str::to_string);
    // Instances of one deployment share the secret key that signs the chain.
    let secret = portvakt::crypto::secret::generate();
    let a = spawn_app_on(db, &[("secret_key", &secret)]).await;
    // On PostgreSQL a second instance appends to the same chain at the same time.
    let b = match &url {
        Some(url) => Some(
            spawn_app_on(
                crate::helpers::TestDatabase::Sqlite,
                &[("database_url", url), ("secret_key", &secret)],
            )
            .await,
        ),
        None => None,
    };
    let apps: Vec<&TestApp> = [Some(&a), b.as_ref()].into_iter().flatten().collect();
    const USERS: usize = 12;
    let emails: Vec<String> = (0..USERS)
        .map(|i| format!("crowd{i}@example.com"))
        .collect();
    let signups = emails
        .iter()
        .enumerate()
        .map(|(i, e)| apps[i % apps.len()].signup(e, PASSWORD));
    for r in futures::future::join_all(signups).await {
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let logins = emails.iter().enumerate().map(|(i, e)| {
        let password = if i % 3 == 0 { OTHER_PASSWORD } else { PASSWORD };
        apps[(i + 1) % apps.len()].login(e, password)
    });
    for r in futures::future::join_all(logins).await {
        assert!(
            matches!(r.status(), StatusCode::OK | StatusCode::UNAUTHORIZED),
            "{}",
            r.status()
        );
    }

    let log = entries(&a).await;
    assert_eq!(log.len(), 2 * USERS);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["seq"], i + 1);
    }
    let report = portvakt::audit::verify(&a.state.store, &a.state.audit)
        .await
        .expect("the chain verifies");
    assert_eq!(report.entries, 2 * USERS as u64);
    assert_eq!(report.head_seq, 2 * USERS as i64);
}
