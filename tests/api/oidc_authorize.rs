//! The authorization endpoint and its pages: login, consent, the code redirect, and every way a
//! request is refused (OIDC Core §3.1.2, RFC 6749 §4.1.2.1, RFC 7636, RFC 9207).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TokenPair, spawn_app_with};
use crate::oidc_flow::{
    Browser, authorize_path, consent_if_asked, hidden, redirect_params, redirect_target,
    register_client, sign_in,
};

const CALLBACK: &str = "https://app.example.com/oidc/callback";
const AFTER_LOGOUT: &str = "https://app.example.com/bye";
/// A valid S256 challenge (RFC 7636 appendix B).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct World {
    app: TestApp,
    admin: String,
    client_id: String,
    email: String,
    /// An API session of the same user.
    api: TokenPair,
}

async fn world() -> World {
    world_with(&[]).await
}

async fn world_with(settings: &[(&str, &str)]) -> World {
    let app = spawn_app_with(settings).await;
    let admin = app.admin("admin@example.com").await.access_token;
    let client = register_client(&app, &admin, confidential()).await;
    let (email, api) = app.new_user().await;
    World {
        client_id: client["client_id"].as_str().unwrap().to_owned(),
        app,
        admin,
        email,
        api,
    }
}

fn confidential() -> Value {
    json!({
        "client_name": "Web app",
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": [AFTER_LOGOUT],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
    })
}

fn public() -> Value {
    json!({
        "client_name": "Single-page app",
        "redirect_uris": [CALLBACK],
        "token_endpoint_auth_method": "none",
    })
}

async fn page(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.headers().get("location").is_none(), "no redirect");
    response.text().await.unwrap()
}

#[tokio::test]
async fn the_code_flow_logs_in_asks_consent_and_redirects_with_code_state_and_iss() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);

    let login = browser
        .get(&authorize_path(
            &w.client_id,
            CALLBACK,
            &[
                ("state", "s-123"),
                ("nonce", "n-1"),
                ("scope", "openid email"),
            ],
        ))
        .await;
    let headers = login.headers().clone();
    let html = page(login, StatusCode::OK).await;
    assert!(html.contains("<label for=\"email\">Email</label>"));
    assert!(html.contains("<label for=\"password\">Password</label>"));
    assert!(html.contains(">Sign in</button>"));
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("form-action"));

    let consent = browser
        .submit(
            &html,
            "/oauth2/login",
            &[("email", &w.email), ("password", PASSWORD)],
        )
        .await;
    let html = page(consent, StatusCode::OK).await;
    assert!(html.contains("Web app") && html.contains("<li>email</li>"));
    assert!(
        browser.cookie("portvakt_session").is_some(),
        "a browser session"
    );

    let done = browser
        .submit(&html, "/oauth2/consent", &[("decision", "allow")])
        .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(redirect_target(&done), CALLBACK);
    let params = redirect_params(&done);
    assert!(params["code"].len() >= 43);
    assert_eq!(params["state"], "s-123");
    assert_eq!(params["iss"], w.app.state.config.issuer);

    // The session and the consent now skip both pages.
    let again = browser
        .get(&authorize_path(&w.client_id, CALLBACK, &[("state", "2")]))
        .await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let params = redirect_params(&again);
    assert!(params.contains_key("code"));
    assert_eq!(params["state"], "2");
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_with_401() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);
    let login = browser
        .get(&authorize_path(&w.client_id, CALLBACK, &[]))
        .await;
    let html = page(login, StatusCode::OK).await;
    let again = browser
        .submit(
            &html,
            "/oauth2/login",
            &[("email", &w.email), ("password", "not the password at all")],
        )
        .await;
    let html = page(again, StatusCode::UNAUTHORIZED).await;
    assert!(html.contains("The email or password is not right."));
    assert!(html.contains("action=\"/oauth2/login\""));
    assert!(browser.cookie("portvakt_session").is_none());
}

#[tokio::test]
async fn an_unknown_client_or_unregistered_redirect_uri_is_a_page_never_a_redirect() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);
    let unknown = browser
        .get(&authorize_path(
            "0190d7a4-0000-7000-8000-000000000000",
            CALLBACK,
            &[],
        ))
        .await;
    page(unknown, StatusCode::BAD_REQUEST).await;
    let garbage = browser.get("/oauth2/authorize?client_id=%FF%FE").await;
    page(garbage, StatusCode::BAD_REQUEST).await;
    let wrong = browser
        .get(&authorize_path(
            &w.client_id,
            "https://evil.example.com/cb",
            &[],
        ))
        .await;
    page(wrong, StatusCode::BAD_REQUEST).await;
    let prefix = browser
        .get(&authorize_path(
            &w.client_id,
            "https://app.example.com/oidc/callback/x",
            &[],
        ))
        .await;
    page(prefix, StatusCode::BAD_REQUEST).await;
}

async fn refused(app: &TestApp, path: &str) -> std::collections::HashMap<String, String> {
    let mut browser = Browser::new(app);
    let response = browser.get(path).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
    assert_eq!(redirect_target(&response), CALLBACK);
    let params = redirect_params(&response);
    assert_eq!(params["iss"], app.state.config.issuer);
    assert!(!params.contains_key("code"));
    params
}

#[tokio::test]
async fn request_errors_go_back_to_the_client_with_the_rfc_codes() {
    let w = world().await;
    let spa = register_client(&w.app, &w.admin, public()).await;
    let spa = spa["client_id"].as_str().unwrap();
    type Case<'a> = (String, &'a str, &'a [(&'a str, &'a str)]);
    let cases: Vec<Case> = vec![
        (spa.to_owned(), "invalid_request", &[("state", "st")]),
        (
            spa.to_owned(),
            "invalid_request",
            &[
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "plain"),
            ],
        ),
        (
            spa.to_owned(),
            "invalid_request",
            &[("code_challenge", CHALLENGE)],
        ),
        (
            w.client_id.clone(),
            "invalid_scope",
            &[("scope", "openid admin")],
        ),
        (
            w.client_id.clone(),
            "invalid_request",
            &[("prompt", "none login")],
        ),
        (w.client_id.clone(), "invalid_request", &[("max_age", "-1")]),
        (
            w.client_id.clone(),
            "request_not_supported",
            &[("request", "eyJ.x.y")],
        ),
        (
            w.client_id.clone(),
            "request_uri_not_supported",
            &[("request_uri", "https://x.example/r")],
        ),
        (
            w.client_id.clone(),
            "invalid_request",
            &[("response_mode", "fragment")],
        ),
        // PostgreSQL cannot store NUL in text; no control character belongs in a nonce.
        (
            w.client_id.clone(),
            "invalid_request",
            &[("nonce", "n\u{0}1")],
        ),
    ];
    for (client, error, extra) in cases {
        let params = refused(&w.app, &authorize_path(&client, CALLBACK, extra)).await;
        assert_eq!(params["error"], error, "{extra:?}");
    }
    // RFC 6749 §4.1.2.1: a client registered without the code flow may not ask for a code.
    let machine = register_client(
        &w.app,
        &w.admin,
        json!({
            "client_name": "Batch job",
            "redirect_uris": [CALLBACK],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
        }),
    )
    .await;
    let machine = machine["client_id"].as_str().unwrap();
    let params = refused(&w.app, &authorize_path(machine, CALLBACK, &[])).await;
    assert_eq!(params["error"], "unauthorized_client");

    let params = refused(&w.app, &authorize_path(spa, CALLBACK, &[("state", "st")])).await;
    assert_eq!(params["state"], "st", "state comes back with an error");

    let token = refused(
        &w.app,
        &format!(
            "/oauth2/authorize?client_id={}&redirect_uri={CALLBACK}&response_type=token&scope=openid",
            w.client_id
        ),
    )
    .await;
    assert_eq!(token["error"], "unsupported_response_type");
    let twice = refused(
        &w.app,
        &format!(
            "{}&scope=email",
            authorize_path(&w.client_id, CALLBACK, &[])
        ),
    )
    .await;
    assert_eq!(twice["error"], "invalid_request");

    // A public client with S256 gets the login page.
    let mut browser = Browser::new(&w.app);
    let ok = browser
        .get(&authorize_path(
            spa,
            CALLBACK,
            &[
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
        ))
        .await;
    page(ok, StatusCode::OK).await;
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let w = world().await;
    let params = refused(
        &w.app,
        &authorize_path(
            &w.client_id,
            CALLBACK,
            &[("prompt", "none"), ("state", "q")],
        ),
    )
    .await;
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], "q");
}

#[tokio::test]
async fn prompt_none_without_consent_is_consent_required() {
    let w = world().await;
    let other = register_client(&w.app, &w.admin, confidential()).await;
    let other = other["client_id"].as_str().unwrap();
    let mut browser = Browser::new(&w.app);
    let done = sign_in(
        &mut browser,
        &w.client_id,
        CALLBACK,
        &[],
        &w.email,
        PASSWORD,
    )
    .await;
    assert!(redirect_params(&done).contains_key("code"));

    let response = browser
        .get(&authorize_path(other, CALLBACK, &[("prompt", "none")]))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(redirect_params(&response)["error"], "consent_required");
    // The client that has consent gets its code without a page.
    let response = browser
        .get(&authorize_path(
            &w.client_id,
            CALLBACK,
            &[("prompt", "none")],
        ))
        .await;
    assert!(redirect_params(&response).contains_key("code"));
}

#[tokio::test]
async fn denying_consent_sends_access_denied() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);
    let login = browser
        .get(&authorize_path(&w.client_id, CALLBACK, &[("state", "d")]))
        .await;
    let html = page(login, StatusCode::OK).await;
    let consent = browser
        .submit(
            &html,
            "/oauth2/login",
            &[("email", &w.email), ("password", PASSWORD)],
        )
        .await;
    let html = page(consent, StatusCode::OK).await;
    let denied = browser
        .submit(&html, "/oauth2/consent", &[("decision", "deny")])
        .await;
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    let params = redirect_params(&denied);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "d");
    // The request is finished: its form cannot be used again.
    let again = browser
        .submit(&html, "/oauth2/consent", &[("decision", "allow")])
        .await;
    page(again, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_form_without_the_right_csrf_token_is_refused() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);
    let login = browser
        .get(&authorize_path(&w.client_id, CALLBACK, &[]))
        .await;
    let html = page(login, StatusCode::OK).await;
    let request = hidden(&html, "request").unwrap();
    let forged = browser
        .post_form(
            "/oauth2/login",
            &[
                ("request", &request),
                ("csrf", "00"),
                ("email", &w.email),
                ("password", PASSWORD),
            ],
        )
        .await;
    page(forged, StatusCode::FORBIDDEN).await;

    // The right field from another browser (without its cookie) fails too.
    let mut other = Browser::new(&w.app);
    let stolen = other
        .submit(
            &html,
            "/oauth2/login",
            &[("email", &w.email), ("password", PASSWORD)],
        )
        .await;
    page(stolen, StatusCode::FORBIDDEN).await;
    // A login form's token does not work on the consent form.
    let skipped = browser
        .submit(&html, "/oauth2/consent", &[("decision", "allow")])
        .await;
    page(skipped, StatusCode::FORBIDDEN).await;
    assert!(browser.cookie("portvakt_session").is_none());
}

#[tokio::test]
async fn max_age_zero_and_prompt_login_ask_for_the_password_again() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);
    let done = sign_in(
        &mut browser,
        &w.client_id,
        CALLBACK,
        &[],
        &w.email,
        PASSWORD,
    )
    .await;
    assert!(redirect_params(&done).contains_key("code"));
    for extra in [[("max_age", "0")], [("prompt", "login")]] {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let response = browser
            .get(&authorize_path(&w.client_id, CALLBACK, &extra))
            .await;
        let html = page(response, StatusCode::OK).await;
        assert!(html.contains("action=\"/oauth2/login\""), "{extra:?}");
        let done = browser
            .submit(
                &html,
                "/oauth2/login",
                &[("email", &w.email), ("password", PASSWORD)],
            )
            .await;
        let done = consent_if_asked(&mut browser, done).await;
        assert!(redirect_params(&done).contains_key("code"), "{extra:?}");
        assert_eq!(
            session_ids(&w.app, &w.api.access_token).await.len(),
            2,
            "the new browser session replaced the old one"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let none = browser
        .get(&authorize_path(
            &w.client_id,
            CALLBACK,
            &[("prompt", "none"), ("max_age", "0")],
        ))
        .await;
    assert_eq!(redirect_params(&none)["error"], "login_required");
}

#[tokio::test]
async fn an_account_with_totp_passes_the_second_factor_page() {
    let w = world().await;
    let (_totp, recovery) = crate::mfa::enable(&w.app, &w.api.access_token).await;
    let mut browser = Browser::new(&w.app);
    let login = browser
        .get(&authorize_path(&w.client_id, CALLBACK, &[]))
        .await;
    let html = page(login, StatusCode::OK).await;
    let mfa = browser
        .submit(
            &html,
            "/oauth2/login",
            &[("email", &w.email), ("password", PASSWORD)],
        )
        .await;
    let html = page(mfa, StatusCode::OK).await;
    assert!(html.contains("<label for=\"code\">Authentication code</label>"));
    assert!(html.contains(">Verify</button>"));
    assert!(browser.cookie("portvakt_session").is_none(), "not yet");

    let wrong = browser
        .submit(&html, "/oauth2/mfa", &[("code", "not-a-code")])
        .await;
    let html = page(wrong, StatusCode::UNAUTHORIZED).await;
    assert!(html.contains("action=\"/oauth2/mfa\""));

    let consent = browser
        .submit(&html, "/oauth2/mfa", &[("code", &recovery[0])])
        .await;
    let done = consent_if_asked(&mut browser, consent).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert!(redirect_params(&done).contains_key("code"));
    let mfa: Option<String> =
        sqlx::query_scalar("SELECT mfa_method FROM sessions WHERE browser_token_hash IS NOT NULL")
            .fetch_one(w.app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(mfa.as_deref(), Some("recovery_code"));
}

async fn session_ids(app: &TestApp, token: &str) -> Vec<String> {
    let r = app
        .send(app.authed(reqwest::Method::GET, "/api/v1/users/me/sessions", token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn logout_without_a_hint_asks_then_ends_the_browser_session_only() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);
    let done = sign_in(
        &mut browser,
        &w.client_id,
        CALLBACK,
        &[],
        &w.email,
        PASSWORD,
    )
    .await;
    assert!(redirect_params(&done).contains_key("code"));
    let before = session_ids(&w.app, &w.api.access_token).await;
    assert_eq!(before.len(), 2, "the API session and the browser session");

    let ask = browser
        .get(&format!(
            "/oauth2/logout?client_id={}&post_logout_redirect_uri={AFTER_LOGOUT}&state=bye",
            w.client_id
        ))
        .await;
    let html = page(ask, StatusCode::OK).await;
    assert!(html.contains("action=\"/oauth2/logout\""));
    assert_eq!(
        session_ids(&w.app, &w.api.access_token).await.len(),
        2,
        "not yet"
    );

    let out = browser.submit(&html, "/oauth2/logout", &[]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(redirect_target(&out), AFTER_LOGOUT);
    assert_eq!(redirect_params(&out)["state"], "bye");
    assert!(
        browser.cookie("portvakt_session").is_none(),
        "cookie cleared"
    );
    let after = session_ids(&w.app, &w.api.access_token).await;
    assert_eq!(after.len(), 1, "only the API session is left");
    assert!(before.contains(&after[0]));

    let none = browser
        .get(&authorize_path(
            &w.client_id,
            CALLBACK,
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(redirect_params(&none)["error"], "login_required");
}

/// An ID token for `sid`, signed with our RS256 key, expired an hour ago.
fn id_token(app: &TestApp, user: &str, client: &str, sid: &str) -> String {
    let key = app
        .state
        .keys
        .signer_for(portvakt::crypto::keys::SigningAlg::RS256)
        .unwrap();
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": app.state.config.issuer, "sub": user, "aud": client, "sid": sid,
        "iat": now - 7200, "exp": now - 3600,
    });
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

/// A browser signed in through the pages, and a grant of the client that is a child of its
/// session (what the token endpoint creates). Returns the browser and its session id; the
/// user then has three live sessions: the API one, the browser's and the grant.
async fn signed_in_with_a_grant(w: &World) -> (Browser, String) {
    let mut browser = Browser::new(&w.app);
    let done = sign_in(
        &mut browser,
        &w.client_id,
        CALLBACK,
        &[],
        &w.email,
        PASSWORD,
    )
    .await;
    assert!(redirect_params(&done).contains_key("code"));
    let browser_sid = session_ids(&w.app, &w.api.access_token)
        .await
        .into_iter()
        .find(|s| *s != w.api.session_id)
        .unwrap();
    let grant = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, client_id, parent_id) SELECT $1, user_id, created_at, last_seen_at, expires_at, $2, id FROM sessions WHERE id = $3",
    )
    .bind(&grant)
    .bind(&w.client_id)
    .bind(&browser_sid)
    .execute(w.app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(session_ids(&w.app, &w.api.access_token).await.len(), 3);
    (browser, browser_sid)
}

#[tokio::test]
async fn an_expired_id_token_hint_logs_out_its_own_browser_at_once_and_no_other() {
    let w = world().await;
    let (mut browser, browser_sid) = signed_in_with_a_grant(&w).await;
    let me: Value = w.app.me(&w.api.access_token).await.json().await.unwrap();
    let user = me["id"].as_str().unwrap();

    let hint = id_token(&w.app, user, &w.client_id, &browser_sid);
    // Another browser (or anyone who got hold of the ID token): the hint alone ends nothing
    // (RP-Initiated Logout 1.0 §2).
    let mut elsewhere = Browser::new(&w.app);
    let wrong_uri = elsewhere
        .get(&format!(
            "/oauth2/logout?id_token_hint={hint}&post_logout_redirect_uri=https://app.example.com/elsewhere"
        ))
        .await;
    page(wrong_uri, StatusCode::BAD_REQUEST).await;
    let forged = elsewhere
        .get(&format!(
            "/oauth2/logout?id_token_hint={}x",
            &hint[..hint.len() - 2]
        ))
        .await;
    page(forged, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        session_ids(&w.app, &w.api.access_token).await.len(),
        3,
        "nothing ended"
    );

    let logout = format!(
        "/oauth2/logout?id_token_hint={hint}&post_logout_redirect_uri={AFTER_LOGOUT}&state=s1"
    );
    let not_here = elsewhere.get(&logout).await;
    assert_eq!(not_here.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        session_ids(&w.app, &w.api.access_token).await.len(),
        3,
        "a hint from a browser without the session ends nothing"
    );

    // The browser that holds the session: the hint is its user's, so no question is asked.
    let out = browser.get(&logout).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(redirect_target(&out), AFTER_LOGOUT);
    assert_eq!(redirect_params(&out)["state"], "s1");
    assert_eq!(
        session_ids(&w.app, &w.api.access_token).await,
        vec![w.api.session_id.clone()],
        "the browser session and its grant ended; the API session did not"
    );
    let audit: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'logout' AND target_id = $1",
    )
    .bind(&browser_sid)
    .fetch_one(w.app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(audit, 1);
}

#[tokio::test]
async fn an_unregistered_post_logout_redirect_uri_is_refused() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);
    let done = sign_in(
        &mut browser,
        &w.client_id,
        CALLBACK,
        &[],
        &w.email,
        PASSWORD,
    )
    .await;
    assert!(redirect_params(&done).contains_key("code"));
    for query in [
        format!(
            "client_id={}&post_logout_redirect_uri={CALLBACK}",
            w.client_id
        ),
        format!("post_logout_redirect_uri={AFTER_LOGOUT}"),
    ] {
        let r = browser.get(&format!("/oauth2/logout?{query}")).await;
        page(r, StatusCode::BAD_REQUEST).await;
    }
    assert_eq!(session_ids(&w.app, &w.api.access_token).await.len(), 2);
}

#[tokio::test]
async fn the_export_lists_consents_and_erasure_removes_them() {
    let w = world().await;
    let mut browser = Browser::new(&w.app);
    let done = sign_in(
        &mut browser,
        &w.client_id,
        CALLBACK,
        &[("scope", "openid email")],
        &w.email,
        PASSWORD,
    )
    .await;
    assert!(redirect_params(&done).contains_key("code"));
    let export: Value = w
        .app
        .send(w.app.authed(
            reqwest::Method::GET,
            "/api/v1/users/me/export",
            &w.api.access_token,
        ))
        .await
        .json()
        .await
        .unwrap();
    let consents = export["oidc_consents"].as_array().unwrap();
    assert_eq!(consents.len(), 1);
    assert_eq!(consents[0]["client_id"], w.client_id.as_str());
    assert_eq!(consents[0]["scope"], "openid email");
    assert!(consents[0]["granted_at"].as_str().unwrap().ends_with('Z'));
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'consent_granted' AND target_id = $1",
    )
    .bind(&w.client_id)
    .fetch_one(w.app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(audited, 1);

    let erased = w
        .app
        .send(
            w.app
                .authed(
                    reqwest::Method::POST,
                    "/api/v1/users/me/erase",
                    &w.api.access_token,
                )
                .json(&json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(erased.status(), StatusCode::NO_CONTENT);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_consents")
        .fetch_one(w.app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_login_page_has_the_api_logins_backoff_and_audit() {
    let w = world_with(&[
        ("login_backoff_after", "1"),
        ("login_backoff_initial", "15m"),
    ])
    .await;
    let mut browser = Browser::new(&w.app);
    let login = browser
        .get(&authorize_path(&w.client_id, CALLBACK, &[]))
        .await;
    let html = page(login, StatusCode::OK).await;
    let wrong = browser
        .submit(
            &html,
            "/oauth2/login",
            &[("email", &w.email), ("password", "not the password at all")],
        )
        .await;
    let html = page(wrong, StatusCode::UNAUTHORIZED).await;
    let waiting = browser
        .submit(
            &html,
            "/oauth2/login",
            &[("email", &w.email), ("password", PASSWORD)],
        )
        .await;
    let retry: u64 = waiting.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 60, "{retry}");
    let html = page(waiting, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(html.contains("action=\"/oauth2/login\""));
    assert!(browser.cookie("portvakt_session").is_none());
    let failed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'login_failed'")
            .fetch_one(w.app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(failed, 1, "the refused attempt is not a new failure");
}

#[tokio::test]
async fn the_login_form_has_the_per_route_rate_limit() {
    let w = world_with(&[
        ("auth_rate_limit_per_minute", "1"),
        ("auth_rate_limit_burst", "2"),
    ])
    .await;
    let mut browser = Browser::new(&w.app);
    let login = browser
        .get(&authorize_path(&w.client_id, CALLBACK, &[]))
        .await;
    let html = page(login, StatusCode::OK).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = browser
            .submit(
                &html,
                "/oauth2/login",
                &[
                    ("email", "nobody@example.com"),
                    ("password", "whatever it is"),
                ],
            )
            .await;
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            page(r, StatusCode::TOO_MANY_REQUESTS).await;
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn revoking_a_browser_session_through_the_api_ends_its_grants_too() {
    let w = world().await;
    let (_browser, browser_sid) = signed_in_with_a_grant(&w).await;

    let path = format!("/api/v1/users/me/sessions/{browser_sid}");
    let r = w
        .app
        .send(
            w.app
                .authed(reqwest::Method::DELETE, &path, &w.api.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        session_ids(&w.app, &w.api.access_token).await,
        vec![w.api.session_id.clone()],
        "the grant ended with the browser session that authorized it"
    );
}
