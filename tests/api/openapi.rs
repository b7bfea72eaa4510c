//! `/openapi.json` and `/docs`: the description covers every route of the contract that this
//! version serves, every documented route is really served, and the reference page works
//! with nothing from outside the binary.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

/// Every route of the HTTP contract (API.md), and the issue that brings the ones not built
/// yet (`None` = built). A route leaves the pending list when its issue lands; the tests
/// below fail if a pending route is served or a built one is missing from the description.
const CONTRACT: &[(&str, &str, Option<u32>)] = &[
    ("post", "/api/v1/users", None),
    ("post", "/api/v1/auth/login", None),
    ("post", "/api/v1/auth/mfa", None),
    ("post", "/api/v1/auth/refresh", None),
    ("post", "/api/v1/auth/logout", None),
    ("get", "/api/v1/users/me", None),
    ("patch", "/api/v1/users/me", None),
    ("post", "/api/v1/users/me/password", None),
    ("get", "/api/v1/users/me/sessions", None),
    ("delete", "/api/v1/users/me/sessions/{id}", None),
    ("get", "/api/v1/users/me/export", None),
    ("post", "/api/v1/users/me/erase", None),
    ("post", "/api/v1/auth/verify-email/request", None),
    ("post", "/api/v1/auth/verify-email", None),
    ("post", "/api/v1/auth/password-reset/request", None),
    ("post", "/api/v1/auth/password-reset", None),
    ("post", "/api/v1/users/me/mfa/totp", None),
    ("post", "/api/v1/users/me/mfa/totp/confirm", None),
    ("post", "/api/v1/users/me/mfa/totp/disable", None),
    ("post", "/api/v1/users/me/mfa/recovery-codes", None),
    ("get", "/api/v1/admin/users", None),
    ("get", "/api/v1/admin/users/{id}", None),
    ("patch", "/api/v1/admin/users/{id}", None),
    ("delete", "/api/v1/admin/users/{id}", None),
    ("post", "/api/v1/admin/users/{id}/sessions/revoke", None),
    ("post", "/api/v1/admin/users/{id}/unlock", None),
    ("get", "/api/v1/admin/roles", None),
    ("post", "/api/v1/admin/roles", None),
    ("put", "/api/v1/admin/roles/{name}", None),
    ("delete", "/api/v1/admin/roles/{name}", None),
    ("get", "/api/v1/admin/audit", None),
    ("get", "/api/v1/admin/clients", None),
    ("post", "/api/v1/admin/clients", None),
    ("get", "/api/v1/admin/clients/{client_id}", None),
    ("patch", "/api/v1/admin/clients/{client_id}", None),
    ("delete", "/api/v1/admin/clients/{client_id}", None),
    ("post", "/api/v1/admin/keys/rotate", None),
    ("get", "/api/v1/events", None),
    ("get", "/.well-known/openid-configuration", None),
    ("get", "/oauth2/jwks", None),
    ("get", "/oauth2/authorize", None),
    ("post", "/oauth2/token", None),
    ("get", "/oauth2/userinfo", None),
    ("post", "/oauth2/userinfo", None),
    ("post", "/oauth2/introspect", None),
    ("post", "/oauth2/revoke", None),
    ("get", "/oauth2/logout", None),
    ("get", "/health", None),
    ("get", "/ready", None),
    ("get", "/metrics", None),
    ("get", "/openapi.json", None),
    ("get", "/docs/", None),
];

async fn document(app: &crate::helpers::TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    response.json().await.unwrap()
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "0190a5a0-0000-7000-8000-000000000000")
        .replace("{name}", "auditor")
        .replace("{client_id}", "some-client")
}

#[tokio::test]
async fn every_built_contract_route_is_described_with_its_answers() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut missing = Vec::new();
    for (method, path, pending) in CONTRACT {
        let op = &doc["paths"][*path][*method];
        match pending {
            None if op.is_null() => missing.push(format!("{method} {path}")),
            None => {
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|s| s.starts_with('2') || s == "101"),
                    "{method} {path} documents no success"
                );
                if path.starts_with("/api/") && *path != "/api/v1/events" {
                    let problem = &responses["500"]["content"]["application/problem+json"];
                    assert_eq!(problem["schema"]["$ref"], "#/components/schemas/Problem");
                }
            }
            Some(issue) => assert!(
                op.is_null(),
                "{method} {path} is described but listed as pending (issue {issue})"
            ),
        }
    }
    assert!(missing.is_empty(), "not described: {missing:?}");
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail", "request_id"] {
        assert!(
            problem["required"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field)
        );
    }
    let login = &doc["components"]["schemas"]["LoginRequest"];
    assert_eq!(
        login["additionalProperties"], false,
        "unknown fields are refused"
    );
}

/// The description promises nothing that is not served, and pending routes really are absent.
#[tokio::test]
async fn described_routes_are_served_and_pending_ones_are_not() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .client
                .request(m, app.url(&concrete(path)))
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is described but answers {status}"
            );
            let documented = item[method]["responses"].get(status.as_str()).is_some()
                || item[method]["responses"].get("default").is_some();
            assert!(documented, "{method} {path} answered undocumented {status}");
        }
    }
    for (method, path, pending) in CONTRACT {
        if pending.is_none() {
            continue;
        }
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let status = app
            .client
            .request(m, app.url(&concrete(path)))
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is served ({status}) but still listed as pending"
        );
    }
}

/// The description follows the instance's configuration where it shapes what is accepted.
#[tokio::test]
async fn the_password_length_follows_the_configuration() {
    let app = crate::helpers::spawn_app_with(&[("password_min_length", "14")]).await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["SignupRequest"]["properties"]["password"]["minLength"],
        14
    );
    assert_eq!(
        schemas["ChangePasswordRequest"]["properties"]["new_password"]["minLength"],
        14
    );
}

#[tokio::test]
async fn the_reference_page_is_served_from_the_binary() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(asset), "{asset} is referenced");
        let response = app
            .client
            .get(app.url(&format!("/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty());
        if asset == "swagger-initializer.js" {
            assert!(
                body.contains("validatorUrl") && body.contains("\"none\""),
                "no validity badge fetched from swagger.io: {body}"
            );
            assert!(
                body.contains("/openapi.json"),
                "the page loads our description"
            );
        }
    }
    // Nothing is fetched from another origin.
    for needle in ["src=\"http", "href=\"http", "cdn."] {
        assert!(!html.contains(needle), "{needle} in the page");
    }
}
