//! Passkeys (issue 6): registration, passwordless login, passkey as the second factor, and
//! removal. The client is a real Chromium with a virtual authenticator (`browser.rs`); the
//! test drives the HTTP API like an app would and hands the ceremonies to the browser.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{PASSWORD, TestApp, TokenPair, problem, slug, spawn_app};

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.send(app.authed(Method::POST, path, token).json(&body))
        .await
}

/// The origin the browser's page runs on: the app's port on `localhost` (browsers refuse
/// passkeys on IP addresses, and the relying party defaults to `localhost`).
fn origin(app: &TestApp) -> String {
    app.base.replace("127.0.0.1", "localhost")
}

/// Finishes a passwordless login with `answer` for the ceremony `token` names.
async fn passwordless(app: &TestApp, token: &Value, answer: &Value) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/passkey",
        &json!({"passkey_token": token, "credential": answer}),
    )
    .await
}

/// Starts a passkey registration with the right password.
async fn start_registration(app: &TestApp, token: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/users/me/passkeys/registration",
        token,
        json!({"password": PASSWORD}),
    )
    .await
}

/// Registers a passkey on the account of `token`; returns the registration response body.
async fn register(app: &TestApp, browser: &mut Browser, token: &str, name: &str) -> Value {
    let r = post(
        app,
        "/api/v1/users/me/passkeys/registration",
        token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let start: Value = r.json().await.unwrap();
    let credential = browser
        .create(&start["options"]["publicKey"])
        .await
        .expect("the browser creates a passkey");
    let r = post(
        app,
        "/api/v1/users/me/passkeys",
        token,
        json!({
            "registration_token": start["registration_token"],
            "name": name,
            "credential": credential,
        }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/users/me/passkeys/{}", body["id"].as_str().unwrap())
    );
    body
}

/// A passwordless login through the browser: the answer, and the token it must go with.
async fn passwordless_answer(app: &TestApp, browser: &mut Browser) -> (String, Value) {
    let r = app
        .post_json("/api/v1/auth/passkey/options", &json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let start: Value = r.json().await.unwrap();
    assert_eq!(
        start["options"]["publicKey"]["allowCredentials"]
            .as_array()
            .map_or(0, Vec::len),
        0,
        "a passwordless login names no credential: {start}"
    );
    let answer = browser
        .get(&start["options"]["publicKey"])
        .await
        .expect("the browser answers with the discoverable passkey");
    (start["passkey_token"].as_str().unwrap().to_owned(), answer)
}

#[tokio::test]
async fn a_passkey_registers_and_logs_in_without_a_password() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let mut browser = Browser::open(&origin(&app)).await;

    // The password is checked before a passkey can be added.
    let r = post(
        &app,
        "/api/v1/users/me/passkeys/registration",
        &pair.access_token,
        json!({"password": "not the password"}),
    )
    .await;
    assert_eq!(slug(&problem(r, 403).await), "wrong-password");

    let r = start_registration(&app, &pair.access_token).await;
    let start: Value = r.json().await.unwrap();
    let public_key = &start["options"]["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(
        public_key["authenticatorSelection"]["userVerification"],
        "required"
    );
    assert_eq!(
        public_key["authenticatorSelection"]["residentKey"],
        "preferred"
    );
    let credential = browser.create(public_key).await.unwrap();
    let r = post(
        &app,
        "/api/v1/users/me/passkeys",
        &pair.access_token,
        json!({"registration_token": start["registration_token"], "name": "Laptop", "credential": credential}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let registered: Value = r.json().await.unwrap();
    assert_eq!(registered["name"], "Laptop");
    assert_eq!(registered["last_used_at"], Value::Null);
    // The first second factor comes with recovery codes.
    assert_eq!(registered["recovery_codes"].as_array().unwrap().len(), 10);

    // The registration token works once.
    let r = post(
        &app,
        "/api/v1/users/me/passkeys",
        &pair.access_token,
        json!({"registration_token": start["registration_token"], "credential": credential}),
    )
    .await;
    assert_eq!(slug(&problem(r, 400).await), "invalid-token");

    // The authenticator made it discoverable, so it logs in alone.
    let held = browser.credentials().await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["isResidentCredential"], true);

    let me: Value = app.me(&pair.access_token).await.json().await.unwrap();
    assert_eq!(me["mfa_enabled"], true);

    let (token, answer) = passwordless_answer(&app, &mut browser).await;
    let r = passwordless(&app, &json!(token), &answer).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let session: TokenPair = r.json().await.unwrap();
    let me2: Value = app.me(&session.access_token).await.json().await.unwrap();
    assert_eq!(me2["id"], me["id"]);
    // The passkey verified the user: multi-factor on its own (RFC 8176 values).
    assert_eq!(
        crate::role_mfa::claims(&session.access_token)["amr"],
        json!(["swk", "user", "mfa"])
    );

    // Neither the token nor the answer is good twice.
    let r = passwordless(&app, &json!(token), &answer).await;
    assert_eq!(slug(&problem(r, 400).await), "invalid-token");
    let r = app
        .post_json("/api/v1/auth/passkey/options", &json!({}))
        .await;
    let fresh: Value = r.json().await.unwrap();
    let r = passwordless(&app, &json!(fresh["passkey_token"]), &answer).await;
    assert_eq!(slug(&problem(r, 401).await), "invalid-credentials");

    // The list shows it, used now.
    let r = app
        .send(app.authed(Method::GET, "/api/v1/users/me/passkeys", &pair.access_token))
        .await;
    let list: Value = r.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], registered["id"]);
    assert!(items[0]["last_used_at"].is_string());

    // The audit log names what happened.
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY seq")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap();
    assert!(actions.iter().any(|a| a == "passkey_registered"));
    assert!(actions.iter().any(|a| a == "mfa_enabled"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "passkey_login_failed"));

    // The export counts it; erasure takes it with the account.
    let r = app
        .send(app.authed(Method::GET, "/api/v1/users/me/export", &pair.access_token))
        .await;
    let export: Value = r.json().await.unwrap();
    assert_eq!(export["mfa"]["passkeys"], 1);
    let r = post(
        &app,
        "/api/v1/users/me/erase",
        &pair.access_token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let left: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM passkeys")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
    let (token, answer) = passwordless_answer(&app, &mut browser).await;
    let r = passwordless(&app, &json!(token), &answer).await;
    assert_eq!(slug(&problem(r, 401).await), "invalid-credentials");
}

#[tokio::test]
async fn wrong_passwords_do_not_lock_the_passkey_out() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let mut browser = Browser::open(&origin(&app)).await;
    register(&app, &mut browser, &pair.access_token, "Key").await;
    // Anyone who knows the address can fail password logins until they wait.
    let mut waited = false;
    for _ in 0..10 {
        let r = app.login(&email, "not the password").await;
        waited |= r.status() == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(waited, "password logins back off");
    let (token, answer) = passwordless_answer(&app, &mut browser).await;
    let r = passwordless(&app, &json!(token), &answer).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_tampered_answer_is_refused() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let mut browser = Browser::open(&origin(&app)).await;
    register(&app, &mut browser, &pair.access_token, "Key").await;

    let (token, mut answer) = passwordless_answer(&app, &mut browser).await;
    // Another signature: a valid base64url value that signs nothing.
    answer["response"]["signature"] = json!("MEUCIQDx");
    let r = passwordless(&app, &json!(token), &answer).await;
    assert_eq!(slug(&problem(r, 401).await), "invalid-credentials");

    // Not an assertion at all: 400 naming the field, nothing spent but the token.
    let r = app
        .post_json("/api/v1/auth/passkey/options", &json!({}))
        .await;
    let start: Value = r.json().await.unwrap();
    let r = app
        .post_json(
            "/api/v1/auth/passkey",
            &json!({"passkey_token": start["passkey_token"], "credential": {"id": 5}}),
        )
        .await;
    let p = problem(r, 400).await;
    assert_eq!(p["errors"][0]["field"], "credential", "{p}");

    // An unknown token.
    let r = passwordless(&app, &json!("nope"), &answer).await;
    assert_eq!(slug(&problem(r, 400).await), "invalid-token");
}

#[tokio::test]
async fn a_passkey_is_the_second_factor_after_a_password() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let mut browser = Browser::open(&origin(&app)).await;
    let registered = register(&app, &mut browser, &pair.access_token, "Phone").await;
    let codes = registered["recovery_codes"].as_array().unwrap().clone();

    let r = app.login(&email, PASSWORD).await;
    let challenge: Value = r.json().await.unwrap();
    assert_eq!(challenge["mfa_required"], true);
    assert_eq!(challenge["methods"], json!(["recovery_code", "webauthn"]));
    let mfa_token = challenge["mfa_token"].as_str().unwrap();

    // An answer before the options were asked for signs no challenge of this login.
    let (_, stray) = passwordless_answer(&app, &mut browser).await;
    let r = app
        .post_json(
            "/api/v1/auth/mfa",
            &json!({"mfa_token": mfa_token, "credential": stray}),
        )
        .await;
    assert_eq!(slug(&problem(r, 401).await), "invalid-credentials");

    let r = app
        .post_json(
            "/api/v1/auth/mfa/webauthn",
            &json!({"mfa_token": mfa_token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let options: Value = r.json().await.unwrap();
    let allowed = options["options"]["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap();
    assert_eq!(allowed.len(), 1, "{options}");

    // Neither both answers nor none.
    let r = app
        .post_json(
            "/api/v1/auth/mfa",
            &json!({"mfa_token": mfa_token, "code": "123456", "credential": stray}),
        )
        .await;
    problem(r, 400).await;
    let r = app
        .post_json("/api/v1/auth/mfa", &json!({"mfa_token": mfa_token}))
        .await;
    problem(r, 400).await;

    let answer = browser.get(&options["options"]["publicKey"]).await.unwrap();
    let r = app
        .post_json(
            "/api/v1/auth/mfa",
            &json!({"mfa_token": mfa_token, "credential": answer}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let session: TokenPair = r.json().await.unwrap();
    assert_eq!(app.me(&session.access_token).await.status(), 200);
    assert_eq!(
        crate::role_mfa::claims(&session.access_token)["amr"],
        json!(["pwd", "swk", "mfa"])
    );
    // The login is spent.
    let r = app
        .post_json(
            "/api/v1/auth/mfa",
            &json!({"mfa_token": mfa_token, "credential": answer}),
        )
        .await;
    assert_eq!(slug(&problem(r, 400).await), "invalid-token");

    // The recovery codes made with the passkey answer a login too.
    let r = app.login(&email, PASSWORD).await;
    let challenge: Value = r.json().await.unwrap();
    let r = app
        .post_json(
            "/api/v1/auth/mfa",
            &json!({"mfa_token": challenge["mfa_token"], "code": codes[0]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn removing_the_last_passkey_turns_mfa_off() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let mut browser = Browser::open(&origin(&app)).await;
    let registered = register(&app, &mut browser, &pair.access_token, "Key").await;
    let id = registered["id"].as_str().unwrap();
    let path = format!("/api/v1/users/me/passkeys/{id}");

    let r = app
        .send(
            app.authed(Method::DELETE, &path, &pair.access_token)
                .json(&json!({"password": "wrong"})),
        )
        .await;
    assert_eq!(slug(&problem(r, 403).await), "wrong-password");
    let r = app
        .send(
            app.authed(
                Method::DELETE,
                "/api/v1/users/me/passkeys/0190b7a4-0000-7000-8000-000000000000",
                &pair.access_token,
            )
            .json(&json!({"password": PASSWORD})),
        )
        .await;
    problem(r, 404).await;

    // Another account cannot remove it.
    let (_, other) = app.new_user().await;
    let r = app
        .send(
            app.authed(Method::DELETE, &path, &other.access_token)
                .json(&json!({"password": PASSWORD})),
        )
        .await;
    problem(r, 404).await;

    let r = app
        .send(
            app.authed(Method::DELETE, &path, &pair.access_token)
                .json(&json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let me: Value = app.me(&pair.access_token).await.json().await.unwrap();
    assert_eq!(me["mfa_enabled"], false);
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY seq")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap();
    let tail: Vec<&str> = actions.iter().rev().take(2).map(String::as_str).collect();
    assert_eq!(tail, ["passkey_removed", "mfa_disabled"]);
    // A password alone logs in again, and the recovery codes went with the last factor.
    let r = app.login(&email, PASSWORD).await;
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    let left: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM mfa_recovery_codes r JOIN users u ON u.id = r.user_id WHERE u.email_key = $1",
    )
    .bind(&email)
    .fetch_one(app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(left, 0);
    // The passkey no longer logs in.
    let (token, answer) = passwordless_answer(&app, &mut browser).await;
    let r = passwordless(&app, &json!(token), &answer).await;
    assert_eq!(slug(&problem(r, 401).await), "invalid-credentials");
}

/// What needs no browser: tokens of the wrong kind or owner, and accounts without passkeys.
#[tokio::test]
async fn ceremony_tokens_belong_to_their_ceremony_and_account() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let (_, other) = app.new_user().await;

    let r = start_registration(&app, &pair.access_token).await;
    let start: Value = r.json().await.unwrap();
    let fake = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"}
    });
    // Someone else's registration token is no token.
    let r = post(
        &app,
        "/api/v1/users/me/passkeys",
        &other.access_token,
        json!({"registration_token": start["registration_token"], "credential": fake}),
    )
    .await;
    assert_eq!(slug(&problem(r, 400).await), "invalid-token");
    // A login token is not a registration token.
    let r = app
        .post_json("/api/v1/auth/passkey/options", &json!({}))
        .await;
    let login: Value = r.json().await.unwrap();
    let r = post(
        &app,
        "/api/v1/users/me/passkeys",
        &pair.access_token,
        json!({"registration_token": login["passkey_token"], "credential": fake}),
    )
    .await;
    assert_eq!(slug(&problem(r, 400).await), "invalid-token");
    // An answer that is not an attestation.
    let r = start_registration(&app, &pair.access_token).await;
    let start: Value = r.json().await.unwrap();
    let r = post(
        &app,
        "/api/v1/users/me/passkeys",
        &pair.access_token,
        json!({"registration_token": start["registration_token"], "credential": fake}),
    )
    .await;
    assert_eq!(slug(&problem(r, 400).await), "invalid-credential");
    // Bad names are refused before anything is spent.
    let r = post(
        &app,
        "/api/v1/users/me/passkeys",
        &pair.access_token,
        json!({"registration_token": "x", "name": "a\u{7}b", "credential": fake}),
    )
    .await;
    problem(r, 400).await;

    // Unauthenticated, the account routes are 401.
    for (method, path) in [
        (Method::GET, "/api/v1/users/me/passkeys"),
        (Method::POST, "/api/v1/users/me/passkeys/registration"),
    ] {
        let r = app
            .send(app.client.request(method, app.url(path)).json(&json!({})))
            .await;
        problem(r, 401).await;
    }

    // Without MFA there is no login challenge; with TOTP only, no passkey options.
    let r = app
        .post_json("/api/v1/auth/mfa/webauthn", &json!({"mfa_token": "nope"}))
        .await;
    assert_eq!(slug(&problem(r, 400).await), "invalid-token");
    crate::mfa::enable(&app, &pair.access_token).await;
    let r = app.login(&email, PASSWORD).await;
    let challenge: Value = r.json().await.unwrap();
    assert_eq!(challenge["methods"], json!(["totp", "recovery_code"]));
    let r = app
        .post_json(
            "/api/v1/auth/mfa/webauthn",
            &json!({"mfa_token": challenge["mfa_token"]}),
        )
        .await;
    assert_eq!(slug(&problem(r, 409).await), "no-passkeys");
}
