//! Signing keys (issue 7, item 3): rotation by API, CLI and schedule; the new key signs, the
//! retired one keeps verifying until every token it signed has expired and then leaves the
//! JWKS; an RSA key is always published for ID tokens.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{
    TestApp, TestDatabase, eventually, problem, skipped, spawn_app, spawn_app_on, spawn_app_with,
};

async fn jwks(app: &TestApp) -> Vec<Value> {
    let response = app
        .client
        .get(app.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["keys"].as_array().expect("keys").clone()
}

fn kids(keys: &[Value]) -> Vec<String> {
    keys.iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

async fn rotate(app: &TestApp, token: &str) -> reqwest::Response {
    app.send(app.authed(Method::POST, "/api/v1/admin/keys/rotate", token))
        .await
}

async fn rotated_kid(app: &TestApp, token: &str) -> String {
    let response = rotate(app, token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["kid"].as_str().expect("kid").to_string()
}

async fn rotations(app: &TestApp, admin: &str) -> Vec<Value> {
    let response = app
        .send(app.authed(Method::GET, "/api/v1/admin/audit?action=key_rotated", admin))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn the_jwks_publishes_one_signing_key_of_each_algorithm_rsa_included() {
    let app = spawn_app().await;
    let keys = jwks(&app).await;
    let mut algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    for k in &keys {
        assert_eq!(k["use"], "sig", "{k}");
    }
    let rsa = keys.iter().find(|k| k["alg"] == "RS256").unwrap();
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["e"], "AQAB");
    // 2048 bits: 256 bytes of modulus, 342 base64url characters.
    assert_eq!(rsa["n"].as_str().unwrap().len(), 342);
    let ec = keys.iter().find(|k| k["alg"] == "ES256").unwrap();
    assert_eq!((&ec["kty"], &ec["crv"]), (&"EC".into(), &"P-256".into()));
    // The published RSA key verifies what the ring's RSA key signs (the coming ID tokens).
    let signer = app
        .state
        .keys
        .signer_for(portvakt::crypto::keys::SigningAlg::RS256)
        .expect("an RSA signing key");
    assert_eq!(rsa["kid"].as_str(), Some(signer.kid.as_str()));
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &serde_json::json!({ "sub": "someone", "exp": 4_000_000_000u64 }),
        &signer.encoding,
    )
    .unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(rsa.clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .expect("the published RSA key verifies");
}

#[tokio::test]
async fn after_a_rotation_the_new_key_signs_and_the_old_one_still_verifies() {
    let app = spawn_app().await;
    let admin = app.admin("root@example.com").await;
    let (_, before) = app.new_user().await;
    let old_kid = kid_of(&before.access_token);
    assert!(kids(&jwks(&app).await).contains(&old_kid));

    let new_kid = rotated_kid(&app, &admin.access_token).await;

    assert_ne!(new_kid, old_kid);
    let published = kids(&jwks(&app).await);
    assert!(published.contains(&new_kid), "the new key is published");
    assert!(
        published.contains(&old_kid),
        "the retired key stays published"
    );
    assert_eq!(published.len(), 6, "three new keys and three retired ones");
    let (_, after) = app.new_user().await;
    assert_eq!(kid_of(&after.access_token), new_kid);
    assert_eq!(app.me(&before.access_token).await.status(), StatusCode::OK);
    assert_eq!(app.me(&after.access_token).await.status(), StatusCode::OK);
    let refreshed: Value = app
        .refresh(&before.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(kid_of(refreshed["access_token"].as_str().unwrap()), new_kid);

    let entries = rotations(&app, &admin.access_token).await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    let me: Value = app.me(&admin.access_token).await.json().await.unwrap();
    assert_eq!(e["actor_id"], me["id"]);
    assert_eq!(e["outcome"], "success");
    assert_eq!(e["target_type"], "signing_key");
    assert_eq!(e["target_id"], new_kid.as_str());
    assert_eq!(e["details"]["kid"], new_kid.as_str());
    assert_eq!(e["details"]["previous_kid"], old_kid.as_str());
    assert_eq!(e["details"]["alg"], "EdDSA");
    assert_eq!(e["details"]["retired"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_retired_key_leaves_the_jwks_once_its_tokens_have_expired() {
    let app = spawn_app().await;
    let admin = app.admin("root@example.com").await;
    let (_, old) = app.new_user().await;
    let first = kid_of(&old.access_token);
    let second = rotated_kid(&app, &admin.access_token).await;
    assert_eq!(app.me(&old.access_token).await.status(), StatusCode::OK);

    // Make the first keys' retirement older than the retention, as time would.
    let retention = app.state.keys.retention();
    assert_eq!(retention, Duration::from_secs(3600 + 30));
    let shift = i64::try_from(retention.as_micros()).unwrap() + 1_000_000;
    sqlx::query(
        "UPDATE signing_keys SET retired_at = retired_at - $1 WHERE retired_at IS NOT NULL",
    )
    .bind(shift)
    .execute(app.state.store.pool())
    .await
    .unwrap();
    let third = rotated_kid(&app, &admin.access_token).await;

    let published = kids(&jwks(&app).await);
    assert!(!published.contains(&first), "the expired key is gone");
    assert!(
        published.contains(&second),
        "the key retired just now stays"
    );
    assert!(published.contains(&third));
    assert_eq!(published.len(), 6);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE kid = $1")
        .bind(&first)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0, "the expired key is deleted");
    // Even though this instance had verified it before, a token of a deleted key fails.
    problem(app.me(&old.access_token).await, 401).await;
}

#[tokio::test]
async fn rotation_needs_a_token_and_the_keys_rotate_permission() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v1/admin/keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, 401).await;
    let (_, user) = app.new_user().await;
    let before = kids(&jwks(&app).await);
    problem(rotate(&app, &user.access_token).await, 403).await;
    assert_eq!(kids(&jwks(&app).await), before, "nothing rotated");

    // A custom role with `keys:rotate` is enough.
    let admin = app.admin("root@example.com").await;
    let created = app
        .send(
            app.authed(Method::POST, "/api/v1/admin/roles", &admin.access_token)
                .json(&serde_json::json!({ "name": "keykeeper", "permissions": ["keys:rotate"] })),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let (email, _) = app.new_user().await;
    let (ok, _, stderr) = app
        .cli(&[
            "user",
            "set-role",
            "--email",
            &email,
            "--roles",
            "keykeeper",
        ])
        .await;
    assert!(ok, "{stderr}");
    let keeper = app.login_ok(&email, crate::helpers::PASSWORD).await;
    assert_eq!(
        rotate(&app, &keeper.access_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_cli_rotates_keys_as_the_operator_and_the_running_service_follows() {
    let app = spawn_app().await;
    let admin = app.admin("root@example.com").await;
    let old = kid_of(&admin.access_token);

    let (ok, stdout, stderr) = app.cli(&["keys", "rotate"]).await;

    assert!(ok, "{stderr}");
    let new = stdout
        .lines()
        .find_map(|l| l.strip_prefix("new signing key "))
        .expect("the new kid is printed")
        .trim()
        .to_string();
    assert_ne!(new, old);
    assert!(stdout.contains(&format!("previous key {old}")), "{stdout}");
    let (ok, listed, stderr) = app.cli(&["keys", "list"]).await;
    assert!(ok, "{stderr}");
    let line = |kid: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(kid))
            .map(str::to_string)
    };
    assert!(line(&new).unwrap().contains("signing"), "{listed}");
    assert!(line(&old).unwrap().contains("retired"), "{listed}");
    // The service notices (at once on PostgreSQL, at its next refresh on SQLite): new tokens
    // name the new key, and the old one still verifies.
    let app_ref = &app;
    let wait = portvakt::crypto::keys::REFRESH_INTERVAL + Duration::from_secs(5);
    let new_ref = new.as_str();
    assert!(
        eventually(wait, || async move {
            let pair = app_ref
                .login_ok("root@example.com", crate::helpers::PASSWORD)
                .await;
            kid_of(&pair.access_token) == new_ref
        })
        .await,
        "the service signs with the key the CLI made"
    );
    assert_eq!(app.me(&admin.access_token).await.status(), StatusCode::OK);
    let entries = rotations(&app, &admin.access_token).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor_id"], Value::Null);
    assert_eq!(entries[0]["details"]["via"], "cli");
    assert_eq!(entries[0]["details"]["previous_kid"], old.as_str());
}

#[tokio::test]
async fn deleting_the_previous_keys_makes_their_tokens_fail_at_once() {
    let app = spawn_app().await;
    let (_, victim) = app.new_user().await;
    let leaked = kid_of(&victim.access_token);
    assert_eq!(app.me(&victim.access_token).await.status(), StatusCode::OK);

    let (ok, stdout, stderr) = app.cli(&["keys", "rotate", "--delete-previous"]).await;

    assert!(ok, "{stderr}");
    assert!(stdout.contains("deleted"), "{stdout}");
    let app_ref = &app;
    let wait = portvakt::crypto::keys::REFRESH_INTERVAL + Duration::from_secs(5);
    let token = victim.access_token.as_str();
    assert!(
        eventually(wait, || async move {
            app_ref.me(token).await.status() == StatusCode::UNAUTHORIZED
        })
        .await,
        "the leaked key's token fails"
    );
    assert!(!kids(&jwks(&app).await).contains(&leaked));
    // Refresh tokens are not signed with the keys: the user gets a new access token.
    let refreshed = app.refresh(&victim.refresh_token).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
}

#[tokio::test]
async fn keys_rotate_on_the_configured_schedule() {
    let app = spawn_app_with(&[("key_rotation_interval", "2s")]).await;
    let admin = app.admin("root@example.com").await;
    let first = kid_of(&admin.access_token);
    let app_ref = &app;
    let first_ref = first.as_str();
    assert!(
        eventually(Duration::from_secs(15), || async move {
            let pair = app_ref
                .login_ok("root@example.com", crate::helpers::PASSWORD)
                .await;
            kid_of(&pair.access_token) != first_ref
        })
        .await,
        "a scheduled rotation happened"
    );
    let entries = rotations(&app, &admin.access_token).await;
    assert!(!entries.is_empty());
    assert_eq!(entries[0]["details"]["via"], "schedule");
    assert_eq!(entries[0]["actor_id"], Value::Null);
    // Tokens of the first key still verify: it is within its retention.
    assert_eq!(app.me(&admin.access_token).await.status(), StatusCode::OK);
    assert!(kids(&jwks(&app).await).contains(&first));
}

#[tokio::test]
async fn access_tokens_may_be_signed_rs256_or_es256() {
    for alg in ["RS256", "ES256"] {
        let app = spawn_app_with(&[("access_token_alg", alg)]).await;
        let (_, pair) = app.new_user().await;
        let header = jsonwebtoken::decode_header(&pair.access_token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        let kid = header.kid.unwrap();
        let published = jwks(&app).await;
        let key = published.iter().find(|k| k["kid"] == kid.as_str()).unwrap();
        assert_eq!(key["alg"], alg);
        assert_eq!(app.me(&pair.access_token).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_token_whose_alg_is_not_its_keys_is_refused() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let claims = crate::role_mfa::claims(&pair.access_token);
    // Signed by our RSA key but naming our Ed25519 key: the key decides the algorithm.
    let rsa = app
        .state
        .keys
        .signer_for(portvakt::crypto::keys::SigningAlg::RS256)
        .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid_of(&pair.access_token));
    header.typ = Some("at+jwt".into());
    let confused = jsonwebtoken::encode(&header, &claims, &rsa.encoding).unwrap();
    problem(app.me(&confused).await, 401).await;
    // Control: the same claims under the RSA key's own kid verify.
    header.kid = Some(rsa.kid.clone());
    let honest = jsonwebtoken::encode(&header, &claims, &rsa.encoding).unwrap();
    assert_eq!(app.me(&honest).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn another_instance_signs_with_the_new_key_at_once_on_postgresql() {
    let db = crate::helpers::fresh_database().await;
    let Some(url) = db.url().map(str::to_string) else {
        skipped(
            "another_instance_signs_with_the_new_key_at_once_on_postgresql",
            "two instances share a database only on PostgreSQL; set PORTVAKT_TEST_DATABASE_URL",
        );
        return;
    };
    let secret = portvakt::crypto::secret::generate();
    let a = spawn_app_on(db, &[("secret_key", &secret)]).await;
    let b = spawn_app_on(
        TestDatabase::Sqlite,
        &[("secret_key", &secret), ("database_url", &url)],
    )
    .await;
    let admin = a.admin("root@example.com").await;
    let new = rotated_kid(&a, &admin.access_token).await;
    let b = &b;
    let new = new.as_str();
    // Well within the periodic refresh: the announcement did it.
    assert!(
        eventually(Duration::from_secs(5), || async move {
            let pair = b
                .login_ok("root@example.com", crate::helpers::PASSWORD)
                .await;
            kid_of(&pair.access_token) == new
        })
        .await,
        "the other instance signs with the new key"
    );
    assert_eq!(b.me(&admin.access_token).await.status(), StatusCode::OK);
}
