//! GDPR: the export of everything stored about the caller, and erasure (by the owner after a
//! password re-check, or by an admin) that leaves nothing personal in any table while the
//! audit chain still verifies.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TokenPair, problem, slug, spawn_app, spawn_app_with};

const BROWSER: &str = "GdprTestBrowser/4.2 (erasable)";

/// Signs up `email` with a display name and logs in from a recognisable browser.
async fn person(app: &TestApp, email: &str, name: &str) -> TokenPair {
    let created = app
        .post_json(
            "/api/v1/users",
            &json!({"email": email, "password": PASSWORD, "name": name}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", BROWSER)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("token pair")
}

async fn user_id(app: &TestApp, token: &str) -> String {
    let me: Value = app.me(token).await.json().await.unwrap();
    me["id"].as_str().unwrap().to_string()
}

async fn export(app: &TestApp, token: &str) -> Value {
    let response = app
        .send(app.authed(Method::GET, "/api/v1/users/me/export", token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn erase(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.send(
        app.authed(Method::POST, "/api/v1/users/me/erase", token)
            .json(&json!({ "password": password })),
    )
    .await
}

/// Tables and columns that hold `needle` (case-insensitive), over every table the database
/// itself lists, so that a table added later is searched too.
async fn where_found(app: &TestApp, needle: &str) -> Vec<String> {
    let pool = app.state.store.pool();
    let postgres = app.state.store.backend() == portvakt::store::Backend::Postgres;
    let tables: Vec<String> = if postgres {
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
            .fetch_all(pool)
            .await
            .unwrap()
    } else {
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(pool)
            .await
            .unwrap()
    };
    assert!(tables.iter().any(|t| t == "audit_log"), "{tables:?}");
    let mut found = Vec::new();
    for table in &tables {
        let columns: Vec<(String, String)> = if postgres {
            sqlx::query_as("SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1")
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap()
        } else {
            sqlx::query_as("SELECT name, type FROM pragma_table_info($1)")
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap()
        };
        assert!(!columns.is_empty(), "columns of {table}");
        for (column, kind) in columns {
            let value = if postgres && kind == "bytea" {
                format!(r#"encode("{column}", 'escape')"#)
            } else {
                format!(r#"CAST("{column}" AS TEXT)"#)
            };
            let sql = format!(
                r#"SELECT COUNT(*) FROM "{table}" WHERE lower({value}) LIKE $1 ESCAPE '\'"#
            );
            let pattern = format!(
                "%{}%",
                needle
                    .to_lowercase()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(pattern)
                .fetch_one(pool)
                .await
                .unwrap();
            if n > 0 {
                found.push(format!("{table}.{column}"));
            }
        }
    }
    found
}

/// After `id` (with `email`, `name`) was erased: nothing names them, the audit trail keeps
/// the id with no address or browser, records the erasure, and still verifies.
async fn assert_erased(app: &TestApp, id: &str, email: &str, name: &str, tokens: &TokenPair) {
    for needle in [email, name, BROWSER] {
        assert_eq!(
            where_found(app, needle).await,
            Vec::<String>::new(),
            "{needle} remains"
        );
    }
    let pool = app.state.store.pool();
    let with_personal: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE (actor_id = $1 OR target_id = $1) AND action <> 'user_erased' AND (ip IS NOT NULL OR user_agent IS NOT NULL OR personal IS NOT NULL)",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        with_personal, 0,
        "audit entries about them keep an IP or browser"
    );
    let trail: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE actor_id = $1 AND action = 'login'",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(trail >= 1, "the pseudonymous trail stays");
    let erased: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'user_erased' AND target_type = 'user' AND target_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(erased, 1);
    for table in ["users", "sessions", "user_roles"] {
        let column = if table == "users" { "id" } else { "user_id" };
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE {column} = $1"
        )))
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table} rows remain");
    }

    problem(app.me(&tokens.access_token).await, 401).await;
    assert_ne!(
        app.refresh(&tokens.refresh_token).await.status(),
        StatusCode::OK
    );
    problem(app.login(email, PASSWORD).await, 401).await;

    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "audit verify failed after erasure: {out}{err}");
}

#[tokio::test]
async fn the_export_holds_profile_roles_every_session_and_only_the_callers_audit_entries() {
    let app = spawn_app().await;
    let email = format!("Ada-{}@Example.com", uuid::Uuid::new_v4().simple());
    let first = person(&app, &email, "Ada Lovelace").await;
    let second = app.login_ok(&email, PASSWORD).await;
    assert_eq!(app.logout(&second.access_token).await.status(), 204);
    problem(app.login(&email, "not the password at all").await, 401).await;
    let (_, other) = app.new_user().await;
    let me = user_id(&app, &first.access_token).await;
    let other_id = user_id(&app, &other.access_token).await;

    let doc = export(&app, &first.access_token).await;

    assert_eq!(doc["user"]["id"], me);
    assert_eq!(doc["user"]["email"], email);
    assert_eq!(doc["user"]["name"], "Ada Lovelace");
    assert_eq!(doc["user"]["roles"], json!(["user"]));
    assert_eq!(doc["mfa"], json!({"totp": false, "passkeys": 0}));
    assert_eq!(doc["oidc_consents"], json!([]));
    assert!(doc["exported_at"].as_str().unwrap().ends_with('Z'));

    let sessions = doc["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "the revoked session is on record too");
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], first.session_id);
    assert_eq!(current[0]["user_agent"], BROWSER);
    let ended = sessions
        .iter()
        .find(|s| s["id"] == second.session_id.as_str())
        .unwrap();
    assert!(ended["revoked_at"].is_string(), "{ended}");

    let audit = doc["audit"].as_array().unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["signup", "login", "logout", "login_failed"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    for e in audit {
        assert_ne!(e["actor_id"], other_id.as_str(), "{e}");
        assert_ne!(e["target_id"], other_id.as_str(), "{e}");
        for key in ["id", "at", "ip", "user_agent", "outcome", "details"] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
    }
    let login = audit
        .iter()
        .find(|e| e["action"] == "login" && e["target_id"] == first.session_id.as_str())
        .unwrap();
    assert_eq!(login["user_agent"], BROWSER, "their own browser is theirs");
}

#[tokio::test]
async fn the_export_includes_failed_logins_that_named_the_address_before_the_account_existed() {
    let app = spawn_app().await;
    let email = format!("early-{}@example.com", uuid::Uuid::new_v4().simple());
    problem(app.login(&email.to_uppercase(), PASSWORD).await, 401).await;
    let tokens = person(&app, &email, "Early Bird").await;

    let doc = export(&app, &tokens.access_token).await;
    let named = doc["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "login_failed")
        .expect("the attempt with their address");
    assert_eq!(named["details"]["email"], email.to_uppercase());
}

#[tokio::test]
async fn the_export_needs_a_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/users/me/export"))
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
}

#[tokio::test]
async fn erasure_with_a_wrong_password_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let email = format!("keep-{}@example.com", uuid::Uuid::new_v4().simple());
    let tokens = person(&app, &email, "Kept Person").await;
    let before = export(&app, &tokens.access_token).await;

    let body = problem(
        erase(&app, &tokens.access_token, "wrong password indeed").await,
        403,
    )
    .await;
    assert_eq!(slug(&body), "wrong-password");

    assert_eq!(app.me(&tokens.access_token).await.status(), 200);
    app.login_ok(&email, PASSWORD).await;
    let after = export(&app, &tokens.access_token).await;
    assert_eq!(after["user"], before["user"]);
    let refused = after["audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "erase_failed" && e["outcome"] == "failure");
    assert!(refused, "the refused attempt is audited");
    assert!(!where_found(&app, &email).await.is_empty());
}

#[tokio::test]
async fn wrong_erasure_passwords_count_towards_the_login_backoff() {
    // A wait far longer than the test, so that no slowness of the machine lets a guess through.
    let app = spawn_app_with(&[("login_backoff_initial", "10m")]).await;
    let email = format!("guess-{}@example.com", uuid::Uuid::new_v4().simple());
    let tokens = person(&app, &email, "Guessed").await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let response = erase(&app, &tokens.access_token, &format!("guess number {i}")).await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [403, 403, 403, 403, 403, 429]);
    // The backoff is the login's: the right password cannot log in now either.
    problem(app.login(&email, PASSWORD).await, 429).await;
}

#[tokio::test]
async fn erasure_leaves_nothing_personal_in_any_table_and_the_audit_chain_verifies() {
    let app = spawn_app().await;
    let email = format!("Grace-{}@Example.org", uuid::Uuid::new_v4().simple());
    let name = format!("Grace Hopper {}", uuid::Uuid::new_v4().simple());
    // An attempt before the account existed keeps the address as the entry's personal data.
    problem(app.login(&email, PASSWORD).await, 401).await;
    let tokens = person(&app, &email, &name).await;
    let second = app.login_ok(&email, PASSWORD).await;
    problem(app.login(&email, "wrong password again").await, 401).await;
    // Someone else (with another browser), who must keep everything.
    let (other_email, other) = app.new_user().await;
    let id = user_id(&app, &tokens.access_token).await;
    // Mail about the account (its address and name on the envelope) goes with it.
    let mut tx = app.state.store.begin_write().await.unwrap();
    let message = portvakt::mail::Message {
        user: portvakt::accounts::UserId::parse(&id),
        to: format!("{name} <{email}>").parse().unwrap(),
        subject: "Welcome".to_string(),
        text: "Hello".to_string(),
        html: None,
    };
    app.state.mail.enqueue(&mut tx, &message).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        !where_found(&app, &email).await.is_empty(),
        "the search finds it before"
    );
    assert!(!where_found(&app, &name).await.is_empty());

    assert_eq!(
        erase(&app, &tokens.access_token, PASSWORD).await.status(),
        204
    );

    assert_erased(&app, &id, &email, &name, &tokens).await;
    problem(app.me(&second.access_token).await, 401).await;
    assert_eq!(app.me(&other.access_token).await.status(), 200);
    assert!(!where_found(&app, &other_email).await.is_empty());
    // The address is free again.
    assert_eq!(app.signup(&email, PASSWORD).await.status(), 201);
}

#[tokio::test]
async fn the_last_enabled_admin_cannot_erase_itself() {
    let app = spawn_app().await;
    let email = format!("root-{}@example.com", uuid::Uuid::new_v4().simple());
    let tokens = app.admin(&email).await;
    let body = problem(erase(&app, &tokens.access_token, PASSWORD).await, 409).await;
    assert_eq!(slug(&body), "last-admin");
    assert_eq!(app.me(&tokens.access_token).await.status(), 200);
}

#[tokio::test]
async fn admin_delete_needs_a_token_and_users_write() {
    let app = spawn_app().await;
    let (_, plain) = app.new_user().await;
    let (_, victim) = app.new_user().await;
    let victim_id = user_id(&app, &victim.access_token).await;
    let path = format!("/api/v1/admin/users/{victim_id}");

    let anonymous = app.client.delete(app.url(&path)).send().await.unwrap();
    problem(anonymous, 401).await;
    problem(
        app.send(app.authed(Method::DELETE, &path, &plain.access_token))
            .await,
        403,
    )
    .await;
    assert_eq!(app.me(&victim.access_token).await.status(), 200);
}

#[tokio::test]
async fn admin_delete_of_an_unknown_or_malformed_id_is_404() {
    let app = spawn_app().await;
    let root = app
        .admin(&format!(
            "root-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ))
        .await;
    for id in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_string()] {
        let path = format!("/api/v1/admin/users/{id}");
        problem(
            app.send(app.authed(Method::DELETE, &path, &root.access_token))
                .await,
            404,
        )
        .await;
    }
}

#[tokio::test]
async fn admin_delete_erases_like_the_owner_would_and_spares_the_last_admin() {
    let app = spawn_app().await;
    let root_email = format!("root-{}@example.com", uuid::Uuid::new_v4().simple());
    let root = app.admin(&root_email).await;
    let root_id = user_id(&app, &root.access_token).await;
    let email = format!("Victim-{}@example.com", uuid::Uuid::new_v4().simple());
    let name = format!("Victim Name {}", uuid::Uuid::new_v4().simple());
    let tokens = person(&app, &email, &name).await;
    problem(app.login(&email, "not it at all").await, 401).await;
    let id = user_id(&app, &tokens.access_token).await;

    let response = app
        .send(app.authed(
            Method::DELETE,
            &format!("/api/v1/admin/users/{id}"),
            &root.access_token,
        ))
        .await;
    assert_eq!(response.status(), 204);
    assert_erased(&app, &id, &email, &name, &tokens).await;
    let actor: Option<String> = sqlx::query_scalar(
        "SELECT actor_id FROM audit_log WHERE action = 'user_erased' AND target_id = $1",
    )
    .bind(&id)
    .fetch_one(app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(actor.as_deref(), Some(root_id.as_str()));

    // The last enabled admin stays.
    let own = format!("/api/v1/admin/users/{root_id}");
    let body = problem(
        app.send(app.authed(Method::DELETE, &own, &root.access_token))
            .await,
        409,
    )
    .await;
    assert_eq!(slug(&body), "last-admin");
    assert_eq!(app.me(&root.access_token).await.status(), 200);
}

#[tokio::test]
async fn an_admin_may_delete_itself_while_another_enabled_admin_remains() {
    let app = spawn_app().await;
    let first = app
        .admin(&format!("a-{}@example.com", uuid::Uuid::new_v4().simple()))
        .await;
    let second = app
        .admin(&format!("b-{}@example.com", uuid::Uuid::new_v4().simple()))
        .await;
    let first_id = user_id(&app, &first.access_token).await;
    let second_id = user_id(&app, &second.access_token).await;
    // A disabled admin does not count as the one that remains.
    let third = app
        .admin(&format!("c-{}@example.com", uuid::Uuid::new_v4().simple()))
        .await;
    let third_id = user_id(&app, &third.access_token).await;
    sqlx::query("UPDATE users SET disabled_at = 1 WHERE id = $1")
        .bind(&third_id)
        .execute(app.state.store.pool())
        .await
        .unwrap();

    let own = format!("/api/v1/admin/users/{first_id}");
    assert_eq!(
        app.send(app.authed(Method::DELETE, &own, &first.access_token))
            .await
            .status(),
        204
    );
    problem(app.me(&first.access_token).await, 401).await;
    let own = format!("/api/v1/admin/users/{second_id}");
    let body = problem(
        app.send(app.authed(Method::DELETE, &own, &second.access_token))
            .await,
        409,
    )
    .await;
    assert_eq!(slug(&body), "last-admin");
}

#[tokio::test]
async fn the_export_holds_the_stored_account_state_the_user_shape_leaves_out() {
    let app = spawn_app().await;
    let email = format!("state-{}@example.com", uuid::Uuid::new_v4().simple());
    let tokens = person(&app, &email, "Stated").await;
    problem(app.login(&email, "not the password at all").await, 401).await;

    let doc = export(&app, &tokens.access_token).await;
    let account = &doc["account"];
    let last_login = account["last_login_at"].as_str().expect("last login time");
    assert!(last_login.ends_with('Z'), "{account}");
    assert_eq!(account["failed_logins"], 1, "{account}");
    assert_eq!(account["locked_at"], Value::Null, "{account}");
    assert_eq!(account["disabled_at"], Value::Null, "{account}");
    assert_eq!(account["email_verified_at"], Value::Null, "{account}");
}

#[tokio::test]
async fn an_admin_deleting_itself_leaves_no_address_or_browser_of_its_own() {
    let app = spawn_app().await;
    app.admin(&format!(
        "other-{}@example.com",
        uuid::Uuid::new_v4().simple()
    ))
    .await;
    let email = format!("self-{}@example.com", uuid::Uuid::new_v4().simple());
    let tokens = person(&app, &email, "Selfless Admin").await;
    let id = user_id(&app, &tokens.access_token).await;
    sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, 'admin')")
        .bind(&id)
        .execute(app.state.store.pool())
        .await
        .unwrap();

    let own = format!("/api/v1/admin/users/{id}");
    let deleted = app
        .send(
            app.authed(Method::DELETE, &own, &tokens.access_token)
                .header("user-agent", BROWSER),
        )
        .await;
    assert_eq!(deleted.status(), 204);
    // The erased person was the admin: the erasure's own entry is about them too.
    assert_erased(&app, &id, &email, "Selfless Admin", &tokens).await;
    let erased_entry: (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT ip, user_agent FROM audit_log WHERE action = 'user_erased' AND target_id = $1",
    )
    .bind(&id)
    .fetch_one(app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(erased_entry, (None, None));
}

/// Mail about the account is part of what is stored about it: the export lists it (envelope
/// and times, never a body), and only the caller's.
#[tokio::test]
async fn the_export_lists_mail_about_the_caller_without_bodies() {
    let app = spawn_app().await;
    let email = format!("mail-{}@example.com", uuid::Uuid::new_v4().simple());
    let tokens = person(&app, &email, "Mia Mail").await;
    let (_, other) = app.new_user().await;
    let mine = portvakt::accounts::UserId::parse(&user_id(&app, &tokens.access_token).await);
    let theirs = portvakt::accounts::UserId::parse(&user_id(&app, &other.access_token).await);
    let mut tx = app.state.store.begin_write().await.unwrap();
    for (user, subject) in [(mine, "Yours"), (theirs, "Not yours")] {
        let message = portvakt::mail::Message {
            user,
            to: format!("Mia Mail <{email}>").parse().unwrap(),
            subject: subject.to_string(),
            text: "secret link https://portvakt.test/x?token=abc".to_string(),
            html: None,
        };
        app.state.mail.enqueue(&mut tx, &message).await.unwrap();
    }
    tx.commit().await.unwrap();

    let doc = export(&app, &tokens.access_token).await;
    let mail = doc["mail"].as_array().unwrap();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["subject"], "Yours");
    assert!(mail[0]["recipient"].as_str().unwrap().contains(&email));
    assert!(mail[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !doc.to_string().contains("token=abc"),
        "a body was exported"
    );
}
