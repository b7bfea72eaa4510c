//! The client registry (`/api/v1/admin/clients`, `portvakt client`): permissions, RFC 7591
//! validation, secrets shown once and stored hashed, changes, deletion and their audit.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem, slug, spawn_app};

const CLIENTS: &str = "/api/v1/admin/clients";

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.authed(method, path, token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

async fn ok_json(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

fn web_app() -> Value {
    json!({
        "client_name": "Web app",
        "redirect_uris": ["https://app.example.com/oidc/callback"],
        "token_endpoint_auth_method": "client_secret_basic",
    })
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    ok_json(
        call(app, Method::POST, CLIENTS, token, Some(body)).await,
        201,
    )
    .await
}

fn path(id: &str) -> String {
    format!("{CLIENTS}/{id}")
}

/// The stored secret hash of a client, read from the database.
async fn stored_hash(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT secret_hash FROM oidc_clients WHERE client_id = $1")
        .bind(id)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
}

/// What the token endpoint will do with a presented secret.
async fn secret_works(app: &TestApp, id: &str, secret: &str) -> bool {
    use portvakt::oidc::clients::{self, ClientId};
    let client = clients::find(&app.state, ClientId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("client exists");
    clients::verify_secret(&client, secret)
}

fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn error_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn every_client_route_answers_401_without_a_token_and_403_without_the_permission() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let id = create(&app, &root.access_token, web_app()).await["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, plain) = app.new_user().await;
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, CLIENTS.into(), None),
        (Method::POST, CLIENTS.into(), Some(web_app())),
        (Method::GET, path(&id), None),
        (
            Method::PATCH,
            path(&id),
            Some(json!({"client_name": "Renamed"})),
        ),
        (Method::DELETE, path(&id), None),
        (Method::POST, format!("{}/secret", path(&id)), None),
    ];
    for (method, path, body) in &routes {
        let mut anonymous = app.client.request(method.clone(), app.url(path));
        if let Some(body) = body {
            anonymous = anonymous.json(body);
        }
        let response = app.send(anonymous).await;
        assert_eq!(response.status(), 401, "{method} {path} without a token");
        assert!(response.headers().contains_key("www-authenticate"));

        let response = call(
            &app,
            method.clone(),
            path,
            &plain.access_token,
            body.clone(),
        )
        .await;
        let body = problem(response, 403).await;
        assert_eq!(slug(&body), "forbidden", "{method} {path}");
    }

    // clients:read reads and writes nothing.
    let reader_email = "reader@example.com";
    let reader = {
        let signed_up = app
            .post_json(
                "/api/v1/users",
                &json!({"email": reader_email, "password": crate::helpers::PASSWORD}),
            )
            .await;
        let reader_id = ok_json(signed_up, 201).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let role = call(
            &app,
            Method::POST,
            "/api/v1/admin/roles",
            &root.access_token,
            Some(json!({"name": "client-reader", "permissions": ["clients:read"]})),
        )
        .await;
        assert_eq!(role.status(), 201);
        let assigned = call(
            &app,
            Method::PATCH,
            &format!("/api/v1/admin/users/{reader_id}"),
            &root.access_token,
            Some(json!({"roles": ["user", "client-reader"]})),
        )
        .await;
        assert_eq!(assigned.status(), 200);
        app.login_ok(reader_email, crate::helpers::PASSWORD).await
    };
    for (method, path, body) in routes {
        let response = call(&app, method.clone(), &path, &reader.access_token, body).await;
        if method == Method::GET {
            assert_eq!(response.status(), 200, "{method} {path} with clients:read");
        } else {
            let body = problem(response, 403).await;
            assert_eq!(slug(&body), "forbidden", "{method} {path}");
        }
    }
    // Nothing was changed on the way.
    let kept = ok_json(
        call(
            &app,
            Method::GET,
            &self::path(&id),
            &root.access_token,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(kept["client_name"], "Web app");
}

#[tokio::test]
async fn a_confidential_client_sees_its_secret_once_and_only_a_hash_is_stored() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;

    let created = create(&app, token, web_app()).await;
    let id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 43, "256 random bits, base64url");
    assert_eq!(created["client_secret_expires_at"], 0);
    assert_eq!(created["client_name"], "Web app");
    assert_eq!(created["grant_types"], json!(["authorization_code"]));
    assert_eq!(created["response_types"], json!(["code"]));
    assert_eq!(created["scope"], "openid profile email");
    assert_eq!(created["id_token_signed_response_alg"], "RS256");
    assert_eq!(created["post_logout_redirect_uris"], json!([]));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    // The database holds the SHA-256 of the secret, never the secret.
    let hash = stored_hash(&app, id)
        .await
        .expect("a confidential client has a hash");
    assert_eq!(hash, sha256_hex(secret));
    let leaked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM oidc_clients WHERE client_name LIKE $1 OR redirect_uris LIKE $1 OR secret_hash LIKE $1",
    )
    .bind(format!("%{secret}%"))
    .fetch_one(app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    assert!(secret_works(&app, id, secret).await);
    assert!(!secret_works(&app, id, &format!("{secret}x")).await);

    // Never shown again: not on the client, not in the list, not in the audit log.
    let shown = ok_json(call(&app, Method::GET, &path(id), token, None).await, 200).await;
    assert!(shown.get("client_secret").is_none(), "{shown}");
    assert_eq!(shown["client_id"], id);
    let list = ok_json(call(&app, Method::GET, CLIENTS, token, None).await, 200).await;
    assert_eq!(list["total"], 1);
    assert!(list["items"][0].get("client_secret").is_none());
    let audit = ok_json(
        call(
            &app,
            Method::GET,
            "/api/v1/admin/audit?action=client_created",
            token,
            None,
        )
        .await,
        200,
    )
    .await;
    let text = audit.to_string();
    assert!(!text.contains(secret) && !text.contains(&hash));
}

#[tokio::test]
async fn a_public_client_has_no_secret_to_show_store_or_rotate() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    let created = create(
        &app,
        token,
        json!({
            "client_name": "CLI tool",
            "redirect_uris": ["http://127.0.0.1:8400/callback", "http://localhost/cb", "http://[::1]:9/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": "openid email",
            "id_token_signed_response_alg": "EdDSA",
        }),
    )
    .await;
    let id = created["client_id"].as_str().unwrap();
    assert!(created.get("client_secret").is_none(), "{created}");
    assert!(created.get("client_secret_expires_at").is_none());
    assert_eq!(
        created["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(created["id_token_signed_response_alg"], "EdDSA");
    assert_eq!(stored_hash(&app, id).await, None);
    assert!(!secret_works(&app, id, "").await);

    let refused = call(
        &app,
        Method::POST,
        &format!("{}/secret", path(id)),
        token,
        None,
    )
    .await;
    assert_eq!(slug(&problem(refused, 409).await), "public-client");
}

#[tokio::test]
async fn a_service_client_needs_no_redirect_uri() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let created = create(
        &app,
        &root.access_token,
        json!({
            "client_name": "Billing worker",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "scope": "billing:read",
        }),
    )
    .await;
    assert_eq!(created["response_types"], json!([]));
    assert!(created["client_secret"].is_string());
}

#[tokio::test]
async fn invalid_registrations_are_400_naming_every_field_and_store_nothing() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let with = |patch: Value| {
        let mut body = web_app();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (with(json!({"client_name": null})), vec!["client_name"]),
        (
            with(json!({"token_endpoint_auth_method": null})),
            vec!["token_endpoint_auth_method"],
        ),
        (with(json!({"client_uri": "https://x"})), vec!["client_uri"]),
        (
            with(json!({"client_secret": "mine"})),
            vec!["client_secret"],
        ),
        (with(json!({"client_name": "  "})), vec!["client_name"]),
        (
            with(json!({"client_name": "x".repeat(201)})),
            vec!["client_name"],
        ),
        (
            with(json!({"redirect_uris": ["http://app.example.com/cb"]})),
            vec!["redirect_uris[0]"],
        ),
        (
            with(
                json!({"redirect_uris": ["https://app.example.com/cb", "https://app.example.com/cb#frag"]}),
            ),
            vec!["redirect_uris[1]"],
        ),
        (
            with(json!({"redirect_uris": ["/relative"]})),
            vec!["redirect_uris[0]"],
        ),
        (
            with(json!({"redirect_uris": ["https://a.example/cb", "https://a.example/cb"]})),
            vec!["redirect_uris[1]"],
        ),
        (with(json!({"redirect_uris": []})), vec!["redirect_uris"]),
        (
            with(json!({"post_logout_redirect_uris": ["http://app.example.com/bye"]})),
            vec!["post_logout_redirect_uris[0]"],
        ),
        (
            with(json!({"grant_types": ["password"]})),
            vec!["grant_types"],
        ),
        (with(json!({"grant_types": []})), vec!["grant_types"]),
        (
            with(json!({"grant_types": ["refresh_token"]})),
            vec!["grant_types"],
        ),
        (
            with(
                json!({"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
            ),
            vec!["grant_types"],
        ),
        (
            with(json!({"token_endpoint_auth_method": "private_key_jwt"})),
            vec!["token_endpoint_auth_method"],
        ),
        (with(json!({"scope": ""})), vec!["scope"]),
        (with(json!({"scope": "openid caf\u{e9}"})), vec!["scope"]),
        (
            with(json!({"id_token_signed_response_alg": "HS256"})),
            vec!["id_token_signed_response_alg"],
        ),
        // Every broken rule at once, each named.
        (
            json!({
                "client_name": "",
                "redirect_uris": ["http://evil.example/cb"],
                "grant_types": ["implicit"],
                "token_endpoint_auth_method": "none",
                "scope": "\"",
                "id_token_signed_response_alg": "none",
            }),
            vec![
                "client_name",
                "redirect_uris[0]",
                "grant_types",
                "scope",
                "id_token_signed_response_alg",
            ],
        ),
    ];
    for (body, fields) in cases {
        let response = call(
            &app,
            Method::POST,
            CLIENTS,
            &root.access_token,
            Some(body.clone()),
        )
        .await;
        let p = problem(response, 400).await;
        assert_eq!(slug(&p), "validation-failed", "{body}");
        assert_eq!(error_fields(&p), fields, "{body}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_clients")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn patch_changes_only_the_fields_given_and_checks_the_result_whole() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    let created = create(&app, token, web_app()).await;
    let id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();

    let changed = ok_json(
        call(
            &app,
            Method::PATCH,
            &path(id),
            token,
            Some(json!({
                "client_name": "Renamed",
                "post_logout_redirect_uris": ["https://app.example.com/bye"],
                "grant_types": ["authorization_code", "refresh_token"],
            })),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(changed["client_name"], "Renamed");
    assert_eq!(
        changed["post_logout_redirect_uris"],
        json!(["https://app.example.com/bye"])
    );
    assert_eq!(changed["redirect_uris"], created["redirect_uris"]);
    assert_eq!(changed["scope"], created["scope"]);
    assert_eq!(changed["created_at"], created["created_at"]);
    assert!(changed.get("client_secret").is_none());
    // Switching between the confidential methods keeps the secret.
    let post = ok_json(
        call(
            &app,
            Method::PATCH,
            &path(id),
            token,
            Some(json!({"token_endpoint_auth_method": "client_secret_post"})),
        )
        .await,
        200,
    )
    .await;
    assert!(post.get("client_secret").is_none());
    assert!(secret_works(&app, id, secret).await);

    // A change that breaks a rule is refused whole, naming what the request changed.
    for (body, field) in [
        (
            json!({"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
            "grant_types",
        ),
        (
            json!({"redirect_uris": ["http://x.example/"]}),
            "redirect_uris[0]",
        ),
        (json!({"redirect_uris": []}), "redirect_uris"),
        (json!({"secret": "x"}), "secret"),
        (json!({"client_name": 7}), "client_name"),
    ] {
        let response = call(&app, Method::PATCH, &path(id), token, Some(body.clone())).await;
        let p = problem(response, 400).await;
        assert_eq!(error_fields(&p), [field], "{body}");
    }
    let service = ok_json(
        call(
            &app,
            Method::PATCH,
            &path(id),
            token,
            Some(json!({"grant_types": ["client_credentials"]})),
        )
        .await,
        200,
    )
    .await;
    let response = call(
        &app,
        Method::PATCH,
        &path(id),
        token,
        Some(json!({"token_endpoint_auth_method": "none"})),
    )
    .await;
    assert_eq!(
        error_fields(&problem(response, 400).await),
        ["token_endpoint_auth_method"]
    );
    let unchanged = ok_json(call(&app, Method::GET, &path(id), token, None).await, 200).await;
    assert_eq!(unchanged, service.clone());

    // Unknown or malformed ids are 404 before the body is judged.
    let nobody = uuid::Uuid::now_v7().to_string();
    for target in [nobody.as_str(), "not-a-client"] {
        for body in [json!({"bogus": 1}), json!({"client_name": "x"})] {
            let response = call(&app, Method::PATCH, &path(target), token, Some(body)).await;
            assert_eq!(slug(&problem(response, 404).await), "not-found");
        }
    }
}

#[tokio::test]
async fn going_public_deletes_the_secret_and_going_confidential_issues_a_new_one() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    let created = create(&app, token, web_app()).await;
    let id = created["client_id"].as_str().unwrap();
    let first = created["client_secret"].as_str().unwrap();

    let public = ok_json(
        call(
            &app,
            Method::PATCH,
            &path(id),
            token,
            Some(json!({"token_endpoint_auth_method": "none"})),
        )
        .await,
        200,
    )
    .await;
    assert!(public.get("client_secret").is_none());
    assert_eq!(stored_hash(&app, id).await, None);
    assert!(!secret_works(&app, id, first).await);

    let confidential = ok_json(
        call(
            &app,
            Method::PATCH,
            &path(id),
            token,
            Some(json!({"token_endpoint_auth_method": "client_secret_basic"})),
        )
        .await,
        200,
    )
    .await;
    let second = confidential["client_secret"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(stored_hash(&app, id).await, Some(sha256_hex(second)));
    assert!(secret_works(&app, id, second).await);
    assert!(!secret_works(&app, id, first).await);
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one_at_once() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    let created = create(&app, token, web_app()).await;
    let id = created["client_id"].as_str().unwrap();
    let old = created["client_secret"].as_str().unwrap();

    let rotated = ok_json(
        call(
            &app,
            Method::POST,
            &format!("{}/secret", path(id)),
            token,
            None,
        )
        .await,
        200,
    )
    .await;
    let new = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(rotated["client_id"], id);
    assert_eq!(rotated["client_secret_expires_at"], 0);
    assert!(secret_works(&app, id, new).await);
    assert!(!secret_works(&app, id, old).await);

    let nobody = uuid::Uuid::now_v7().to_string();
    let response = call(
        &app,
        Method::POST,
        &format!("{}/secret", path(&nobody)),
        token,
        None,
    )
    .await;
    problem(response, 404).await;
}

#[tokio::test]
async fn a_deleted_client_is_gone() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    let id = create(&app, token, web_app()).await["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = call(&app, Method::DELETE, &path(&id), token, None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let response = call(&app, method, &path(&id), token, None).await;
        assert_eq!(slug(&problem(response, 404).await), "not-found");
    }
    let response = call(&app, Method::GET, &path("not-a-uuid"), token, None).await;
    problem(response, 404).await;
}

#[tokio::test]
async fn clients_are_listed_oldest_first_a_page_at_a_time() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    for name in ["One", "Two", "Three"] {
        let mut body = web_app();
        body["client_name"] = json!(name);
        create(&app, token, body).await;
    }
    let page = ok_json(
        call(
            &app,
            Method::GET,
            &format!("{CLIENTS}?page=2&per_page=2"),
            token,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(page["page"], 2);
    assert_eq!(page["per_page"], 2);
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["client_name"], "Three");
    let all = ok_json(call(&app, Method::GET, CLIENTS, token, None).await, 200).await;
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["One", "Two", "Three"]);
    assert_eq!(all["per_page"], 50);

    let response = call(
        &app,
        Method::GET,
        &format!("{CLIENTS}?per_page=0"),
        token,
        None,
    )
    .await;
    assert_eq!(error_fields(&problem(response, 400).await), ["per_page"]);
}

#[tokio::test]
async fn every_client_change_is_audited_with_its_actor_and_no_secret() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    let me: Value = app.me(token).await.json().await.unwrap();
    let created = create(&app, token, web_app()).await;
    let id = created["client_id"].as_str().unwrap();
    let p = path(id);
    ok_json(
        call(
            &app,
            Method::PATCH,
            &p,
            token,
            Some(json!({"client_name": "Renamed", "scope": "openid"})),
        )
        .await,
        200,
    )
    .await;
    // A change to the same values records nothing.
    ok_json(
        call(
            &app,
            Method::PATCH,
            &p,
            token,
            Some(json!({"client_name": "Renamed"})),
        )
        .await,
        200,
    )
    .await;
    let rotated = ok_json(
        call(&app, Method::POST, &format!("{p}/secret"), token, None).await,
        200,
    )
    .await;
    assert_eq!(
        call(&app, Method::DELETE, &p, token, None).await.status(),
        204
    );

    let audit = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/admin/audit?actor={}", me["id"].as_str().unwrap()),
            token,
            None,
        )
        .await,
        200,
    )
    .await;
    let entries: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_type"] == "client")
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "client_deleted",
            "client_secret_rotated",
            "client_updated",
            "client_created"
        ]
    );
    for e in &entries {
        assert_eq!(e["target_id"], id);
        assert_eq!(e["outcome"], "success");
        assert!(e["ip"].is_string());
    }
    assert_eq!(
        entries[2]["details"]["fields"],
        json!(["client_name", "scope"])
    );
    assert_eq!(entries[3]["details"]["client_name"], "Web app");
    let text = audit.to_string();
    for secret in [&created["client_secret"], &rotated["client_secret"]] {
        assert!(!text.contains(secret.as_str().unwrap()));
    }
}

#[tokio::test]
async fn the_cli_registers_lists_and_deletes_clients() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;

    let (ok, out, err) = app
        .cli(&[
            "client",
            "create",
            "--name",
            "Django site",
            "--redirect-uri",
            "https://django.example.com/oidc/callback/",
            "--redirect-uri",
            "http://localhost:8000/oidc/callback/",
            "--grant",
            "authorization_code,refresh_token",
        ])
        .await;
    assert!(ok, "{err}");
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in {out}"))
    };
    let id = value("client_id:");
    let secret = value("client_secret:");
    assert!(secret_works(&app, &id, &secret).await);
    let shown = ok_json(
        call(&app, Method::GET, &path(&id), &root.access_token, None).await,
        200,
    )
    .await;
    assert_eq!(shown["client_name"], "Django site");
    assert_eq!(
        shown["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(shown["token_endpoint_auth_method"], "client_secret_basic");

    let (ok, out, err) = app
        .cli(&[
            "client",
            "create",
            "--name",
            "SPA",
            "--redirect-uri",
            "https://spa.example.com/cb",
            "--public",
            "--scope",
            "openid",
        ])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("client_secret: none"), "{out}");

    let (ok, out, err) = app
        .cli(&[
            "client",
            "create",
            "--name",
            "Bad",
            "--redirect-uri",
            "http://bad.example.com/cb",
        ])
        .await;
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("redirect_uris[0]"), "{err}");

    let (ok, out, err) = app.cli(&["client", "list"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("Django site") && out.contains("SPA"));
    assert!(out.contains("2 client(s)"), "{out}");
    assert!(!out.contains(&secret));

    let (ok, out, err) = app.cli(&["client", "delete", &id]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&id), "{out}");
    let response = call(&app, Method::GET, &path(&id), &root.access_token, None).await;
    problem(response, 404).await;
    let (ok, _, err) = app.cli(&["client", "delete", &id]).await;
    assert!(!ok);
    assert!(err.contains("no such client"), "{err}");

    // The operator's changes are audited as the CLI's.
    let audit = ok_json(
        call(
            &app,
            Method::GET,
            "/api/v1/admin/audit?action=client_deleted",
            &root.access_token,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(audit["items"][0]["details"]["via"], "cli");
    assert!(audit["items"][0]["actor_id"].is_null());
}

/// Backups carry clients (on SQLite and PostgreSQL alike); the restore here goes to SQLite.
#[tokio::test]
async fn clients_and_their_secrets_survive_a_backup_and_restore() {
    let secret_key = portvakt::crypto::secret::generate();
    let app = crate::helpers::spawn_app_with(&[("secret_key", secret_key.as_str())]).await;
    let root = app.admin("root@example.com").await;
    let created = create(&app, &root.access_token, web_app()).await;
    let id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();

    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("clients.backup.gz");
    let file = file.to_str().unwrap();
    let env = [("PORTVAKT_SECRET_KEY", secret_key.as_str())];
    let (ok, out, err) = app.cli_with(&env, &["backup", "--out", file]).await;
    assert!(ok, "{out}{err}");

    let target = tempfile::tempdir().unwrap();
    let mut restore = tokio::process::Command::new(env!("CARGO_BIN_EXE_portvakt"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTVAKT_") {
            restore.env_remove(key);
        }
    }
    let out = restore
        .current_dir(target.path())
        .env("PORTVAKT_DATA_DIR", target.path())
        .env("PORTVAKT_SECRET_KEY", &secret_key)
        .args(["restore", file])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let data_dir = target.path().to_str().unwrap();
    let restored = crate::helpers::spawn_app_on(
        crate::helpers::TestDatabase::Sqlite,
        &[("data_dir", data_dir), ("secret_key", secret_key.as_str())],
    )
    .await;
    let admin = restored
        .login_ok("root@example.com", crate::helpers::PASSWORD)
        .await;
    let shown = ok_json(
        call(&restored, Method::GET, &path(id), &admin.access_token, None).await,
        200,
    )
    .await;
    assert_eq!(shown["client_name"], "Web app");
    assert!(secret_works(&restored, id, secret).await);
}
