//! The OIDC token side: `/oauth2/token` (client credentials, authorization codes with PKCE,
//! refresh rotation), ID tokens, userinfo, introspection (RFC 7662), revocation (RFC 7009)
//! and discovery.
//!
//! Code-exchange tests here get their codes from the library's own `codes::issue` for a
//! browser session created with `sessions::create_with`, the same calls the authorize
//! endpoint makes, so the token endpoint is tested without the login pages.

use base64::Engine;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

const CLIENTS: &str = "/api/v1/admin/clients";
const REDIRECT: &str = "https://app.example.com/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A registered client: id and secret (`None` for public clients).
struct Registered {
    id: String,
    secret: Option<String>,
}

async fn register(app: &TestApp, admin: &str, body: Value) -> Registered {
    let response = app
        .send(
            app.authed(reqwest::Method::POST, CLIENTS, admin)
                .json(&body),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "client registration"
    );
    let created: Value = response.json().await.unwrap();
    Registered {
        id: created["client_id"].as_str().unwrap().to_string(),
        secret: created["client_secret"].as_str().map(str::to_string),
    }
}

async fn admin(app: &TestApp) -> String {
    app.admin(&format!("admin-{}@example.com", Uuid::new_v4().simple()))
        .await
        .access_token
}

async fn service_client(app: &TestApp, method: &str) -> Registered {
    let admin = admin(app).await;
    register(
        app,
        &admin,
        json!({
            "client_name": "Service",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": method,
            "scope": "openid reports:read reports:write",
        }),
    )
    .await
}

async fn web_client(app: &TestApp, method: &str) -> Registered {
    let admin = admin(app).await;
    register(
        app,
        &admin,
        json!({
            "client_name": "Web app",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": method,
            "scope": "openid profile email",
        }),
    )
    .await
}

/// Posts a form to `path`, with Basic authentication when `basic` is given.
async fn post_form(
    app: &TestApp,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Response {
    let mut request = app.client.post(app.url(path)).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    request.send().await.unwrap()
}

async fn oauth_error(response: Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string());
    body
}

async fn token_ok(response: Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    body
}

/// The payload of a JWT, unverified (for tests that check what a token says).
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn header(jwt: &str) -> Value {
    let part = jwt.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn client_credentials(app: &TestApp, client: &Registered, scope: Option<&str>) -> Response {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    post_form(
        app,
        "/oauth2/token",
        Some((&client.id, client.secret.as_deref().unwrap())),
        &form,
    )
    .await
}

#[tokio::test]
async fn client_credentials_with_basic_auth_issue_a_client_access_token() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_basic").await;

    let body = token_ok(client_credentials(&app, &client, None).await).await;

    assert!(body.get("refresh_token").is_none());
    assert!(body.get("id_token").is_none());
    // The user scopes of the client's registration are not the client's own.
    assert_eq!(body["scope"], "reports:read reports:write");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(header(token)["typ"], "at+jwt");
    let claims = payload(token);
    assert_eq!(claims["sub"], client.id.as_str());
    assert_eq!(claims["client_id"], client.id.as_str());
    assert_eq!(claims["scope"], "reports:read reports:write");
    assert_eq!(claims["aud"], app.state.config.issuer.as_str());
    assert!(claims.get("sid").is_none());
    // `/api/v1` refuses a client's token.
    assert_eq!(app.me(token).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn client_credentials_with_post_auth_and_a_narrower_scope_and_resource() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_post").await;

    let response = post_form(
        &app,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
            ("client_secret", client.secret.as_deref().unwrap()),
            ("scope", "reports:read"),
            ("resource", "https://reports.example.com/"),
        ],
    )
    .await;

    let body = token_ok(response).await;
    assert_eq!(body["scope"], "reports:read");
    let claims = payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://reports.example.com/");
}

#[tokio::test]
async fn a_client_may_only_use_its_registered_authentication_method() {
    let app = spawn_app().await;
    let post_client = service_client(&app, "client_secret_post").await;

    // Basic for a client registered with client_secret_post.
    let response = client_credentials(&app, &post_client, None).await;

    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"portvakt\""
    );
    oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_client_is_invalid_client() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_basic").await;
    let wrong = Registered {
        id: client.id.clone(),
        secret: Some("not-the-secret".into()),
    };
    let unknown = Registered {
        id: Uuid::now_v7().to_string(),
        secret: client.secret.clone(),
    };

    for who in [&wrong, &unknown] {
        let response = client_credentials(&app, who, None).await;
        assert!(response.headers().contains_key("www-authenticate"));
        oauth_error(response, 401, "invalid_client").await;
    }
    // No authentication at all.
    let response = post_form(
        &app,
        "/oauth2/token",
        None,
        &[("grant_type", "client_credentials")],
    )
    .await;
    oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_public_client_cannot_use_client_credentials() {
    let app = spawn_app().await;
    let public = web_client(&app, "none").await;

    let response = post_form(
        &app,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &public.id),
        ],
    )
    .await;

    oauth_error(response, 400, "unauthorized_client").await;
}

#[tokio::test]
async fn client_credentials_refuse_user_scopes_and_unregistered_scopes() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_basic").await;

    for scope in ["openid", "reports:read email", "reports:delete"] {
        let response = client_credentials(&app, &client, Some(scope)).await;
        oauth_error(response, 400, "invalid_scope").await;
    }
}

#[tokio::test]
async fn malformed_token_requests_are_oauth_errors_never_500() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_basic").await;
    let secret = client.secret.as_deref().unwrap();

    // Unknown grant type, after the client authenticated.
    let response = post_form(
        &app,
        "/oauth2/token",
        Some((&client.id, secret)),
        &[("grant_type", "password")],
    )
    .await;
    oauth_error(response, 400, "unsupported_grant_type").await;
    // No grant type.
    let response = post_form(
        &app,
        "/oauth2/token",
        Some((&client.id, secret)),
        &[("scope", "x")],
    )
    .await;
    oauth_error(response, 400, "invalid_request").await;
    // A repeated parameter (RFC 6749 §3.2).
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth(&client.id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    oauth_error(response, 400, "invalid_request").await;
    // JSON instead of a form.
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    oauth_error(response, 400, "invalid_request").await;
    // A Basic header that does not decode.
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .header("authorization", "Basic %%%")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    oauth_error(response, 401, "invalid_client").await;
    // A resource that is not an absolute URI.
    let response = post_form(
        &app,
        "/oauth2/token",
        Some((&client.id, secret)),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "reports"),
        ],
    )
    .await;
    oauth_error(response, 400, "invalid_target").await;
}

#[tokio::test]
async fn discovery_lists_the_endpoints_and_capabilities() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let meta: Value = response.json().await.unwrap();
    assert_eq!(meta["issuer"], app.state.config.issuer.as_str());
    let issuer = app.state.config.issuer.trim_end_matches('/').to_string();
    for (field, path) in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("userinfo_endpoint", "/oauth2/userinfo"),
        ("jwks_uri", "/oauth2/jwks"),
        ("end_session_endpoint", "/oauth2/logout"),
        ("introspection_endpoint", "/oauth2/introspect"),
        ("revocation_endpoint", "/oauth2/revoke"),
    ] {
        assert_eq!(meta[field], format!("{issuer}{path}"), "{field}");
    }
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        meta["id_token_signing_alg_values_supported"],
        json!(["RS256", "EdDSA", "ES256"])
    );
    assert_eq!(
        meta["scopes_supported"],
        json!(["openid", "profile", "email"])
    );
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert_eq!(meta["request_uri_parameter_supported"], false);
    assert!(
        meta["prompt_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none"))
    );
    assert!(
        meta["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("email_verified"))
    );
    // The JWKS it points to is served.
    let jwks = app
        .client
        .get(app.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
}

async fn introspect(app: &TestApp, client: &Registered, token: &str) -> Response {
    post_form(
        app,
        "/oauth2/introspect",
        Some((&client.id, client.secret.as_deref().unwrap())),
        &[("token", token)],
    )
    .await
}

async fn introspection(app: &TestApp, client: &Registered, token: &str) -> Value {
    let response = introspect(app, client, token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

#[tokio::test]
async fn introspection_describes_live_tokens_and_says_inactive_otherwise() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_basic").await;
    let issued = token_ok(client_credentials(&app, &client, None).await).await;
    let token = issued["access_token"].as_str().unwrap();
    let (_, user) = app.new_user().await;

    let own = introspection(&app, &client, token).await;
    let users = introspection(&app, &client, &user.access_token).await;
    let garbage = introspection(&app, &client, "not-a-token").await;

    assert_eq!(own["active"], true);
    assert_eq!(own["client_id"], client.id.as_str());
    assert_eq!(own["sub"], client.id.as_str());
    assert_eq!(own["scope"], "reports:read reports:write");
    assert_eq!(own["token_type"], "Bearer");
    assert!(own["exp"].as_i64().unwrap() > own["iat"].as_i64().unwrap());
    // A user's API token is ours too; resource servers may ask about it.
    assert_eq!(users["active"], true);
    assert_eq!(users["sid"], user.session_id.as_str());
    assert_eq!(garbage, json!({"active": false}));

    // After logout, the user's token is inactive at once.
    assert_eq!(
        app.logout(&user.access_token).await.status(),
        StatusCode::NO_CONTENT
    );
    let after = introspection(&app, &client, &user.access_token).await;
    assert_eq!(after, json!({"active": false}));
}

#[tokio::test]
async fn introspection_needs_an_authenticated_confidential_client() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_basic").await;
    let public = web_client(&app, "none").await;
    let (_, user) = app.new_user().await;

    let as_public = post_form(
        &app,
        "/oauth2/introspect",
        None,
        &[("token", &user.access_token), ("client_id", &public.id)],
    )
    .await;
    let wrong_secret = post_form(
        &app,
        "/oauth2/introspect",
        Some((&client.id, "wrong")),
        &[("token", &user.access_token)],
    )
    .await;
    let no_token = post_form(
        &app,
        "/oauth2/introspect",
        Some((&client.id, client.secret.as_deref().unwrap())),
        &[],
    )
    .await;

    oauth_error(as_public, 401, "invalid_client").await;
    oauth_error(wrong_secret, 401, "invalid_client").await;
    oauth_error(no_token, 400, "invalid_request").await;
}

async fn revoke(app: &TestApp, client: &Registered, token: &str) -> StatusCode {
    post_form(
        app,
        "/oauth2/revoke",
        Some((&client.id, client.secret.as_deref().unwrap())),
        &[("token", token)],
    )
    .await
    .status()
}

#[tokio::test]
async fn revoking_a_client_credentials_token_makes_it_inactive() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_basic").await;
    let token = token_ok(client_credentials(&app, &client, None).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    assert_eq!(revoke(&app, &client, &token).await, StatusCode::OK);

    assert_eq!(
        introspection(&app, &client, &token).await,
        json!({"active": false})
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'token_revoked'")
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn revoking_unknown_or_another_clients_token_answers_200_and_changes_nothing() {
    let app = spawn_app().await;
    let one = service_client(&app, "client_secret_basic").await;
    let other = service_client(&app, "client_secret_basic").await;
    let token = token_ok(client_credentials(&app, &one, None).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    assert_eq!(revoke(&app, &other, &token).await, StatusCode::OK);
    assert_eq!(revoke(&app, &other, "unknown-token").await, StatusCode::OK);

    assert_eq!(introspection(&app, &one, &token).await["active"], true);
    // Without client authentication: 401.
    let response = post_form(&app, "/oauth2/revoke", None, &[("token", &token)]).await;
    oauth_error(response, 401, "invalid_client").await;
}

async fn userinfo(app: &TestApp, token: Option<&str>) -> Response {
    let mut request = app.client.get(app.url("/oauth2/userinfo"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn userinfo_refuses_missing_user_and_client_credentials_tokens() {
    let app = spawn_app().await;
    let client = service_client(&app, "client_secret_basic").await;
    let cc = token_ok(client_credentials(&app, &client, None).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, user) = app.new_user().await;

    let none = userinfo(&app, None).await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(
        none.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    for token in [cc.as_str(), user.access_token.as_str(), "garbage"] {
        let response = userinfo(&app, Some(token)).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        oauth_error(response, 401, "invalid_token").await;
    }
    // The token twice (header and body) is a bad request (RFC 6750 §2).
    let twice = app
        .client
        .post(app.url("/oauth2/userinfo"))
        .bearer_auth(&cc)
        .form(&[("access_token", cc.as_str())])
        .send()
        .await
        .unwrap();
    oauth_error(twice, 400, "invalid_request").await;
}

// ---- Authorization codes, issued the way the authorize endpoint issues them ----

/// A user with a live browser session, as the login page leaves it.
struct Browser {
    user: portvakt::accounts::UserId,
    session: Uuid,
    email: String,
}

async fn browser_session(app: &TestApp) -> Browser {
    use portvakt::auth::sessions::{self, NewSession};
    let (email, pair) = app.new_user().await;
    let me: Value = app.me(&pair.access_token).await.json().await.unwrap();
    let user = portvakt::accounts::UserId::parse(me["id"].as_str().unwrap()).unwrap();
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    let created = sessions::create_with(
        &mut conn,
        &NewSession {
            ttl: std::time::Duration::from_secs(3600),
            browser_token_hash: Some(&Uuid::new_v4().simple().to_string()),
            refresh: false,
            ..NewSession::api(user, "127.0.0.1")
        },
    )
    .await
    .unwrap();
    Browser {
        user,
        session: created.session_id,
        email,
    }
}

async fn issue_code(
    app: &TestApp,
    browser: &Browser,
    client: &Registered,
    scope: &str,
    challenge: Option<&str>,
) -> String {
    use portvakt::oidc::clients::ClientId;
    use portvakt::oidc::codes::{self, NewCode};
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    codes::issue(
        &mut conn,
        &NewCode {
            client_id: ClientId::parse(&client.id).unwrap(),
            user_id: browser.user,
            browser_session: browser.session,
            redirect_uri: REDIRECT.into(),
            scope: scope.into(),
            nonce: Some("n-0S6_WzA2Mj".into()),
            code_challenge: challenge.map(str::to_string),
            auth_time: portvakt::store::now_micros() - 5_000_000,
            mfa_method: None,
        },
    )
    .await
    .unwrap()
}

async fn exchange(
    app: &TestApp,
    client: &Registered,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    match &client.secret {
        Some(secret) => post_form(app, "/oauth2/token", Some((&client.id, secret)), &form).await,
        None => {
            form.push(("client_id", &client.id));
            post_form(app, "/oauth2/token", None, &form).await
        }
    }
}

async fn refresh(app: &TestApp, client: &Registered, refresh_token: &str) -> Response {
    post_form(
        app,
        "/oauth2/token",
        Some((&client.id, client.secret.as_deref().unwrap())),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Verifies an ID token with the published JWKS and returns its claims.
async fn verified_id_token(app: &TestApp, id_token: &str, audience: &str) -> Value {
    let jwks: Value = app
        .client
        .get(app.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let head = jsonwebtoken::decode_header(id_token).unwrap();
    let kid = head.kid.unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the ID token's key is in the JWKS");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(head.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[&app.state.config.issuer]);
    jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn a_code_with_pkce_gives_access_refresh_and_a_verifiable_id_token() {
    let app = spawn_app().await;
    let client = web_client(&app, "client_secret_basic").await;
    let browser = browser_session(&app).await;
    let code = issue_code(
        &app,
        &browser,
        &client,
        "openid email profile",
        Some(CHALLENGE),
    )
    .await;

    let body = token_ok(exchange(&app, &client, &code, REDIRECT, Some(VERIFIER)).await).await;

    assert_eq!(body["scope"], "openid email profile");
    assert!(body["refresh_token"].is_string());
    let access = body["access_token"].as_str().unwrap();
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["alg"], "RS256");
    let claims = verified_id_token(&app, id_token, &client.id).await;
    assert_eq!(claims["sub"], browser.user.to_string());
    assert_eq!(claims["azp"], client.id.as_str());
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["sid"], browser.session.to_string());
    assert_eq!(claims["email"], browser.email.as_str());
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["amr"], json!(["pwd"]));
    let auth_time = claims["auth_time"].as_i64().unwrap();
    assert!(auth_time <= claims["iat"].as_i64().unwrap());
    // at_hash: left half of SHA-256 of the access token (OIDC Core §3.1.3.6).
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
    assert_eq!(claims["at_hash"], expected.as_str());
    // The access token is the grant's (RFC 9068), and userinfo answers for it.
    let at = payload(access);
    assert_eq!(at["client_id"], client.id.as_str());
    assert_eq!(at["scope"], "openid email profile");
    assert_ne!(at["sid"], browser.session.to_string());
    let info = userinfo(&app, Some(access)).await;
    assert_eq!(info.status(), StatusCode::OK);
    assert_eq!(info.headers()["cache-control"], "no-store");
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["sub"], browser.user.to_string());
    assert_eq!(info["email"], browser.email.as_str());
    assert_eq!(info["email_verified"], false);
    let issued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'token_issued'")
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(issued, 1);
}

#[tokio::test]
async fn userinfo_gives_only_the_claims_of_the_granted_scope() {
    let app = spawn_app().await;
    let client = web_client(&app, "client_secret_basic").await;
    let browser = browser_session(&app).await;
    let code = issue_code(&app, &browser, &client, "openid", None).await;

    let body = token_ok(exchange(&app, &client, &code, REDIRECT, None).await).await;
    let access = body["access_token"].as_str().unwrap();
    let info: Value = userinfo(&app, Some(access)).await.json().await.unwrap();

    assert_eq!(info, json!({"sub": browser.user.to_string()}));
    let id = payload(body["id_token"].as_str().unwrap());
    assert!(id.get("email").is_none());
}

#[tokio::test]
async fn a_wrong_or_missing_verifier_or_redirect_uri_is_invalid_grant() {
    let app = spawn_app().await;
    let client = web_client(&app, "client_secret_basic").await;
    let browser = browser_session(&app).await;
    let wrong_verifier = "A".repeat(43);

    for (verifier, redirect) in [
        (None, REDIRECT),
        (Some(wrong_verifier.as_str()), REDIRECT),
        (Some(VERIFIER), "https://app.example.com/other"),
    ] {
        let code = issue_code(&app, &browser, &client, "openid", Some(CHALLENGE)).await;
        let response = exchange(&app, &client, &code, redirect, verifier).await;
        oauth_error(response, 400, "invalid_grant").await;
    }
    // A verifier for a code that had no challenge.
    let code = issue_code(&app, &browser, &client, "openid", None).await;
    let response = exchange(&app, &client, &code, REDIRECT, Some(VERIFIER)).await;
    oauth_error(response, 400, "invalid_grant").await;
}

#[tokio::test]
async fn a_public_client_needs_pkce() {
    let app = spawn_app().await;
    let public = web_client(&app, "none").await;
    let browser = browser_session(&app).await;

    let without = issue_code(&app, &browser, &public, "openid", None).await;
    let with = issue_code(&app, &browser, &public, "openid", Some(CHALLENGE)).await;

    oauth_error(
        exchange(&app, &public, &without, REDIRECT, None).await,
        400,
        "invalid_grant",
    )
    .await;
    token_ok(exchange(&app, &public, &with, REDIRECT, Some(VERIFIER)).await).await;
}

#[tokio::test]
async fn a_reused_code_is_refused_and_kills_the_tokens_of_its_first_use() {
    let app = spawn_app().await;
    let client = web_client(&app, "client_secret_basic").await;
    let browser = browser_session(&app).await;
    let code = issue_code(&app, &browser, &client, "openid", Some(CHALLENGE)).await;
    let first = token_ok(exchange(&app, &client, &code, REDIRECT, Some(VERIFIER)).await).await;
    let access = first["access_token"].as_str().unwrap();

    let second = exchange(&app, &client, &code, REDIRECT, Some(VERIFIER)).await;

    oauth_error(second, 400, "invalid_grant").await;
    assert_eq!(
        userinfo(&app, Some(access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refreshed = refresh(&app, &client, first["refresh_token"].as_str().unwrap()).await;
    oauth_error(refreshed, 400, "invalid_grant").await;
}

#[tokio::test]
async fn a_code_of_another_client_or_unknown_is_invalid_grant_and_stays_usable_by_its_owner() {
    let app = spawn_app().await;
    let owner = web_client(&app, "client_secret_basic").await;
    let thief = web_client(&app, "client_secret_basic").await;
    let browser = browser_session(&app).await;
    let code = issue_code(&app, &browser, &owner, "openid", None).await;

    oauth_error(
        exchange(&app, &thief, &code, REDIRECT, None).await,
        400,
        "invalid_grant",
    )
    .await;
    oauth_error(
        exchange(&app, &owner, "unknown", REDIRECT, None).await,
        400,
        "invalid_grant",
    )
    .await;

    token_ok(exchange(&app, &owner, &code, REDIRECT, None).await).await;
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let app = spawn_app().await;
    let client = web_client(&app, "client_secret_basic").await;
    let browser = browser_session(&app).await;
    let code = issue_code(&app, &browser, &client, "openid", None).await;
    // Age the code past its 60 seconds instead of waiting for them.
    sqlx::query("UPDATE oidc_codes SET expires_at = $1")
        .bind(portvakt::store::now_micros() - 1)
        .execute(app.state.store.pool())
        .await
        .unwrap();

    oauth_error(
        exchange(&app, &client, &code, REDIRECT, None).await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn refresh_rotates_keeps_the_id_token_facts_and_reuse_ends_the_grant() {
    let app = spawn_app().await;
    let client = web_client(&app, "client_secret_basic").await;
    let other = web_client(&app, "client_secret_basic").await;
    let browser = browser_session(&app).await;
    let code = issue_code(&app, &browser, &client, "openid email", None).await;
    let first = token_ok(exchange(&app, &client, &code, REDIRECT, None).await).await;
    let first_refresh = first["refresh_token"].as_str().unwrap();
    let first_id = payload(first["id_token"].as_str().unwrap());

    // Another client cannot use it, and that does not burn it.
    oauth_error(
        refresh(&app, &other, first_refresh).await,
        400,
        "invalid_grant",
    )
    .await;
    let second = token_ok(refresh(&app, &client, first_refresh).await).await;

    let second_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(second_refresh, first_refresh);
    let second_id = verified_id_token(&app, second["id_token"].as_str().unwrap(), &client.id).await;
    assert!(second_id.get("nonce").is_none());
    assert_eq!(second_id["auth_time"], first_id["auth_time"]);
    assert_eq!(second_id["sid"], first_id["sid"]);
    // Introspection of the refresh token by its holder.
    let described = introspection(&app, &client, second_refresh).await;
    assert_eq!(described["active"], true);
    assert_eq!(described["token_type"], "refresh_token");
    assert_eq!(
        introspection(&app, &other, second_refresh).await,
        json!({"active": false})
    );
    // A narrower scope on refresh; a wider one is refused.
    let narrowed = post_form(
        &app,
        "/oauth2/token",
        Some((&client.id, client.secret.as_deref().unwrap())),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", second_refresh),
            ("scope", "openid profile"),
        ],
    )
    .await;
    oauth_error(narrowed, 400, "invalid_scope").await;
    // A narrower one is granted for this answer, and the refused request did not spend the token.
    let narrowed = post_form(
        &app,
        "/oauth2/token",
        Some((&client.id, client.secret.as_deref().unwrap())),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", second_refresh),
            ("scope", "openid"),
        ],
    )
    .await;
    let narrowed = token_ok(narrowed).await;
    assert_eq!(narrowed["scope"], "openid");
    assert!(
        payload(narrowed["id_token"].as_str().unwrap())
            .get("email")
            .is_none()
    );
    let third_refresh = narrowed["refresh_token"].as_str().unwrap();

    // Reusing the first token ends the grant: the current one dies with it.
    oauth_error(
        refresh(&app, &client, first_refresh).await,
        400,
        "invalid_grant",
    )
    .await;
    oauth_error(
        refresh(&app, &client, third_refresh).await,
        400,
        "invalid_grant",
    )
    .await;
    let access = second["access_token"].as_str().unwrap();
    assert_eq!(
        userinfo(&app, Some(access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_grant_and_its_access_tokens() {
    let app = spawn_app().await;
    let client = web_client(&app, "client_secret_basic").await;
    let browser = browser_session(&app).await;
    let code = issue_code(&app, &browser, &client, "openid", None).await;
    let tokens = token_ok(exchange(&app, &client, &code, REDIRECT, None).await).await;
    let access = tokens["access_token"].as_str().unwrap();

    assert_eq!(
        revoke(&app, &client, tokens["refresh_token"].as_str().unwrap()).await,
        StatusCode::OK
    );

    assert_eq!(
        userinfo(&app, Some(access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        introspection(&app, &client, access).await,
        json!({"active": false})
    );
}

// ---- The whole code flow, through the authorize endpoint and its pages ----

#[tokio::test]
async fn the_code_flow_through_the_pages_ends_in_tokens_for_the_signed_in_user() {
    use crate::oidc_flow::authorize_code;
    let app = spawn_app().await;
    let client = web_client(&app, "client_secret_basic").await;
    let (email, _) = app.new_user().await;
    let code = authorize_code(
        &app,
        &client.id,
        REDIRECT,
        &[
            ("scope", "openid profile email"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("nonce", "flow-nonce"),
            ("state", "s1"),
        ],
        &email,
        crate::helpers::PASSWORD,
    )
    .await;

    // A wrong verifier burns the code.
    let wrong = exchange(&app, &client, &code, REDIRECT, Some(&"B".repeat(43))).await;
    oauth_error(wrong, 400, "invalid_grant").await;
    let code = authorize_code(
        &app,
        &client.id,
        REDIRECT,
        &[
            ("scope", "openid profile email"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("nonce", "flow-nonce"),
        ],
        &email,
        crate::helpers::PASSWORD,
    )
    .await;
    let body = token_ok(exchange(&app, &client, &code, REDIRECT, Some(VERIFIER)).await).await;

    let claims = verified_id_token(&app, body["id_token"].as_str().unwrap(), &client.id).await;
    assert_eq!(claims["nonce"], "flow-nonce");
    assert_eq!(claims["email"], email.as_str());
    let access = body["access_token"].as_str().unwrap();
    // The ID token's sid is the browser session that authorized the grant.
    let grant = payload(access)["sid"].as_str().unwrap().to_string();
    let parent: Option<String> = sqlx::query_scalar("SELECT parent_id FROM sessions WHERE id = $1")
        .bind(&grant)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(claims["sid"], parent.unwrap().as_str());
    let info: Value = userinfo(&app, Some(access)).await.json().await.unwrap();
    assert_eq!(info["email"], email.as_str());
    assert_eq!(info["sub"], claims["sub"]);
    // Reusing the code ends the grant of its first use.
    oauth_error(
        exchange(&app, &client, &code, REDIRECT, Some(VERIFIER)).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        userinfo(&app, Some(access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refreshed = refresh(&app, &client, body["refresh_token"].as_str().unwrap()).await;
    oauth_error(refreshed, 400, "invalid_grant").await;
}

#[tokio::test]
async fn a_client_that_chose_eddsa_gets_eddsa_id_tokens_with_a_sha512_at_hash() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let client = register(
        &app,
        &admin,
        json!({
            "client_name": "Modern",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "client_secret_post",
            "id_token_signed_response_alg": "EdDSA",
        }),
    )
    .await;
    let browser = browser_session(&app).await;
    let code = issue_code(&app, &browser, &client, "openid", None).await;

    let response = post_form(
        &app,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client.id),
            ("client_secret", client.secret.as_deref().unwrap()),
        ],
    )
    .await;

    let body = token_ok(response).await;
    // No refresh_token grant registered: no refresh token.
    assert!(body.get("refresh_token").is_none());
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["alg"], "EdDSA");
    let claims = verified_id_token(&app, id_token, &client.id).await;
    let access = body["access_token"].as_str().unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, access.as_bytes());
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..32]);
    assert_eq!(claims["at_hash"], expected.as_str());
}

#[tokio::test]
async fn odd_bodies_and_headers_never_make_a_server_error() {
    let app = spawn_app().await;
    let bodies: [(&str, &[u8]); 4] = [
        (
            "application/x-www-form-urlencoded",
            b"%FF%FE=%00&token=%zz&&==",
        ),
        ("application/x-www-form-urlencoded", b"\xff\xfe\x00token"),
        ("text/plain", b"token=abc"),
        ("application/json", b"{\"token\": 1}"),
    ];
    for path in [
        "/oauth2/token",
        "/oauth2/introspect",
        "/oauth2/revoke",
        "/oauth2/userinfo",
    ] {
        for (content_type, body) in bodies {
            for auth in [
                "Basic Og==",
                "Basic OmFiYw==",
                "Bearer ",
                "Basic",
                "Digest x",
            ] {
                let response = app
                    .client
                    .post(app.url(path))
                    .header("content-type", content_type)
                    .header("authorization", auth)
                    .body(body.to_vec())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                assert!(
                    (400..500).contains(&status),
                    "{path} {content_type} {auth}: {status}"
                );
                let error: Value = response.json().await.unwrap();
                assert!(error["error"].is_string(), "{path}: {error}");
            }
        }
    }
}
