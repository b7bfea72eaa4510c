//! Rate limits, the per-email login backoff, lockout, trusted proxies, security headers, CORS
//! and the admin network list.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TokenPair, problem, slug, spawn_app, spawn_app_with};

/// The limits of API.md "Default limits", which the other suites raise.
const DEFAULT_LIMITS: &[(&str, &str)] = &[
    ("rate_limit_per_second", "50"),
    ("rate_limit_burst", "100"),
    ("auth_rate_limit_per_minute", "10"),
    ("auth_rate_limit_burst", "20"),
];

fn with_defaults(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut settings = DEFAULT_LIMITS.to_vec();
    settings.extend_from_slice(extra);
    settings
}

async fn login_from(
    app: &TestApp,
    email: &str,
    password: &str,
    forwarded_for: &str,
) -> reqwest::Response {
    app.send(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({ "email": email, "password": password })),
    )
    .await
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds")
}

async fn user_id(app: &TestApp, email: &str) -> String {
    sqlx::query_scalar("SELECT id FROM users WHERE email_key = $1")
        .bind(email)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log ORDER BY seq")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_login_flood_from_one_address_is_refused_well_before_100_attempts() {
    let app = spawn_app_with(DEFAULT_LIMITS).await;
    let mut refused_at = None;
    for attempt in 1..=100 {
        // A new email each time, so only the per-address limit can stop it.
        let response = app
            .login(
                &format!("flood-{attempt}@example.com"),
                "wrong password here",
            )
            .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry_after(&response) >= 1);
            let body = problem(response, 429).await;
            assert_eq!(slug(&body), "rate-limited");
            refused_at = Some(attempt);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // The burst of 20 passes; the 21st is refused.
    assert_eq!(refused_at, Some(21));
    // Other routes of the same address are under the general limit only.
    assert_eq!(
        app.client
            .get(app.url("/api/v1/users/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn the_general_limit_spares_health_and_readiness() {
    let app = spawn_app_with(&[("rate_limit_per_second", "1"), ("rate_limit_burst", "5")]).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            app.client
                .get(app.url("/oauth2/jwks"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    for path in ["/health", "/ready"] {
        for _ in 0..20 {
            assert_eq!(
                app.client.get(app.url(path)).send().await.unwrap().status(),
                200
            );
        }
    }
}

#[tokio::test]
async fn a_password_spray_from_rotating_addresses_is_slowed_per_account_and_the_owner_gets_back_in()
{
    let app = spawn_app_with(&with_defaults(&[("trusted_proxies", "127.0.0.1/32")])).await;
    app.signup("target@example.com", PASSWORD).await;
    // Five wrong guesses, each from another address behind the trusted proxy.
    for n in 0..5 {
        let response = login_from(
            &app,
            "target@example.com",
            "guess number one two",
            &format!("198.51.100.{n}"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Now every attempt waits, even with the right password, from a fresh address.
    let started = Instant::now();
    let response = login_from(&app, "target@example.com", PASSWORD, "203.0.113.77").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&response);
    assert_eq!(wait, 1, "the first wait is one second");
    let body = problem(response, 429).await;
    assert_eq!(slug(&body), "rate-limited");
    // A refused attempt does not extend the wait.
    let again = login_from(&app, "target@example.com", PASSWORD, "203.0.113.78").await;
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&again) <= wait);

    // Once the wait is over the owner logs in, and the slate is clean again.
    tokio::time::sleep(
        Duration::from_secs(wait).saturating_sub(started.elapsed()) + Duration::from_millis(50),
    )
    .await;
    let response = login_from(&app, "target@example.com", PASSWORD, "203.0.113.79").await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = login_from(
        &app,
        "target@example.com",
        "guess number two three",
        "203.0.113.80",
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_backoff_treats_unknown_emails_exactly_like_known_ones() {
    let app = spawn_app_with(&[("login_backoff_after", "3")]).await;
    app.signup("real@example.com", PASSWORD).await;
    let mut answers = Vec::new();
    for email in ["real@example.com", "ghost@example.com"] {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(
                app.login(email, "not the password at all")
                    .await
                    .status()
                    .as_u16(),
            );
        }
        let refused = app.login(email, "not the password at all").await;
        let wait = retry_after(&refused);
        let mut body = problem(refused, 429).await;
        body.as_object_mut().unwrap().remove("request_id");
        answers.push((statuses, wait, body));
    }
    assert_eq!(answers[0].0, vec![401, 401, 401, 429]);
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let app = spawn_app_with(&[
        ("auth_rate_limit_per_minute", "1"),
        ("auth_rate_limit_burst", "3"),
    ])
    .await;
    for n in 0..3 {
        let response = login_from(
            &app,
            &format!("u{n}@example.com"),
            "wrong password here",
            &format!("198.51.100.{n}"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // A fourth "address" is still the same socket peer.
    let response = login_from(
        &app,
        "u9@example.com",
        "wrong password here",
        "198.51.100.9",
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn sessions_record_the_client_a_trusted_proxy_names_and_the_peer_otherwise() {
    for (trusted, expected) in [
        ("127.0.0.1/32", "198.51.100.23"),
        ("10.0.0.0/8", "127.0.0.1"),
    ] {
        let app = spawn_app_with(&[("trusted_proxies", trusted)]).await;
        app.signup("where@example.com", PASSWORD).await;
        let response = login_from(
            &app,
            "where@example.com",
            PASSWORD,
            "1.1.1.1, 198.51.100.23",
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let pair: TokenPair = response.json().await.unwrap();
        let sessions: Value = app
            .send(app.authed(
                reqwest::Method::GET,
                "/api/v1/users/me/sessions",
                &pair.access_token,
            ))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(sessions["items"][0]["ip"], expected, "trusting {trusted}");
    }
}

fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let h = response.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert!(
        get("content-security-policy").contains("frame-ancestors 'none'"),
        "{what}"
    );
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert!(get("permissions-policy").contains("camera=()"), "{what}");
    assert_eq!(get("cross-origin-opener-policy"), "same-origin", "{what}");
    assert!(!get("cache-control").is_empty(), "{what}");
    assert!(h.get("server").is_none(), "{what}: no Server header");
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let app = spawn_app_with(DEFAULT_LIMITS).await;
    let (_, pair) = app.new_user().await;
    let me = app.me(&pair.access_token).await;
    assert_security_headers(&me, "GET /users/me");
    assert_eq!(me.headers()["cache-control"], "no-store");
    let checks = [
        (app.client.get(app.url("/health")), "health"),
        (app.client.get(app.url("/nowhere")), "404"),
        (app.client.delete(app.url("/health")), "405"),
        (app.client.get(app.url("/api/v1/users/me")), "401"),
        (app.client.post(app.url("/api/v1/users")).body("{"), "415"),
    ];
    for (request, what) in checks {
        let response = app.send(request).await;
        assert_security_headers(&response, what);
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "{what}: plain http"
        );
    }
    // A 429 has them too.
    let limited =
        spawn_app_with(&[("rate_limit_per_second", "1"), ("rate_limit_burst", "1")]).await;
    limited
        .client
        .get(limited.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap();
    let response = limited
        .client
        .get(limited.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_security_headers(&response, "429");
}

#[tokio::test]
async fn hsts_is_sent_when_a_trusted_proxy_says_https_and_only_then() {
    for (trusted, expect) in [("127.0.0.1/32", true), ("", false)] {
        let app = spawn_app_with(&[("trusted_proxies", trusted)]).await;
        let response = app
            .send(
                app.client
                    .get(app.url("/health"))
                    .header("x-forwarded-proto", "https"),
            )
            .await;
        let hsts = response
            .headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(hsts.is_some(), expect, "trusting {trusted:?}: {hsts:?}");
        if expect {
            assert_eq!(hsts.as_deref(), Some("max-age=63072000"));
        }
    }
}

/// Server-rendered pages get the strict page policy. There is no page route yet, so the
/// guard is put in front of one here, over real HTTP.
#[tokio::test]
async fn html_pages_get_a_strict_content_security_policy() {
    let config = portvakt::Config::from_pairs([("addr", "127.0.0.1:0")]).unwrap();
    let guard = portvakt::http::guard::ClientGuard::new(&config);
    let router = axum::Router::new()
        .route(
            "/page",
            axum::routing::get(|| async { axum::response::Html("<p>hello</p>") }),
        )
        .layer(portvakt::http::edge::EdgeLayer {
            guard: Arc::new(guard),
            reporter: None,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let response = reqwest::get(format!("http://{addr}/page")).await.unwrap();
    assert_security_headers(&response, "html page");
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'self'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("http:") && !csp.contains("https:"),
        "{csp}"
    );
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.send(
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/login"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type"),
    )
    .await
}

#[tokio::test]
async fn cross_origin_calls_are_denied_unless_the_origin_is_listed() {
    let closed = spawn_app().await;
    let response = preflight(&closed, "https://app.example.com").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let app = spawn_app_with(&[
        (
            "cors_origins",
            "https://app.example.com, http://localhost:3000",
        ),
        ("cors_allow_credentials", "true"),
    ])
    .await;
    let response = preflight(&app, "https://app.example.com").await;
    assert!(response.status().is_success());
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type")
    );

    let response = preflight(&app, "https://evil.example.net").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // An actual call from a listed origin can read the answer and its request id.
    let response = app
        .send(
            app.client
                .get(app.url("/health"))
                .header("origin", "http://localhost:3000"),
        )
        .await;
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert!(
        response.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );
}

#[tokio::test]
async fn a_wildcard_origin_never_comes_with_credentials() {
    let app = spawn_app_with(&[("cors_origins", "*")]).await;
    let response = preflight(&app, "https://anyone.example").await;
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(
        response
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let refused =
        portvakt::Config::from_pairs([("cors_origins", "*"), ("cors_allow_credentials", "true")]);
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("PORTVAKT_CORS_ALLOW_CREDENTIALS")
    );
}

async fn unlock(
    app: &TestApp,
    token: &str,
    id: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = app.authed(
        reqwest::Method::POST,
        &format!("/api/v1/admin/users/{id}/unlock"),
        token,
    );
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    app.send(request).await
}

#[tokio::test]
async fn the_admin_api_is_invisible_outside_the_allowed_networks() {
    let app = spawn_app_with(&[
        ("admin_allowed_networks", "10.0.0.0/8"),
        ("trusted_proxies", "127.0.0.1/32"),
    ])
    .await;
    let root = app.admin("root@example.com").await;
    let id = user_id(&app, "root@example.com").await;
    // From 127.0.0.1 directly: the admin API does not exist.
    let body = problem(unlock(&app, &root.access_token, &id, None).await, 404).await;
    assert_eq!(slug(&body), "not-found");
    // The same for an address the proxy names outside the list.
    problem(
        unlock(&app, &root.access_token, &id, Some("198.51.100.1")).await,
        404,
    )
    .await;
    // From inside the list it answers.
    let response = unlock(&app, &root.access_token, &id, Some("10.1.2.3")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Other routes are unaffected.
    assert_eq!(app.me(&root.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn lockout_after_repeated_failures_until_an_admin_unlocks() {
    let app = spawn_app_with(&[("lockout_threshold", "3"), ("login_backoff_after", "100")]).await;
    let root = app.admin("root@example.com").await;
    app.signup("victim@example.com", PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(
            app.login("victim@example.com", "a wrong password guess")
                .await
                .status(),
            401
        );
    }
    // Locked: the right password gets exactly what a wrong one or an unknown email gets.
    let mut locked = problem(app.login("victim@example.com", PASSWORD).await, 401).await;
    let mut unknown = problem(app.login("nobody@example.com", PASSWORD).await, 401).await;
    locked.as_object_mut().unwrap().remove("request_id");
    unknown.as_object_mut().unwrap().remove("request_id");
    assert_eq!(locked, unknown);

    let id = user_id(&app, "victim@example.com").await;
    let (_, ordinary) = app.new_user().await;
    let body = problem(unlock(&app, &ordinary.access_token, &id, None).await, 403).await;
    assert_eq!(slug(&body), "forbidden");
    problem(
        app.send(
            app.client
                .post(app.url(&format!("/api/v1/admin/users/{id}/unlock"))),
        )
        .await,
        401,
    )
    .await;
    problem(
        unlock(&app, &root.access_token, "not-a-uuid", None).await,
        404,
    )
    .await;
    problem(
        unlock(
            &app,
            &root.access_token,
            &uuid::Uuid::now_v7().to_string(),
            None,
        )
        .await,
        404,
    )
    .await;

    assert_eq!(
        unlock(&app, &root.access_token, &id, None).await.status(),
        StatusCode::NO_CONTENT
    );
    app.login_ok("victim@example.com", PASSWORD).await;

    let actions = audit_actions(&app).await;
    let lockout = actions
        .iter()
        .position(|a| a == "lockout")
        .expect("a lockout entry");
    let unlocked = actions
        .iter()
        .position(|a| a == "unlock")
        .expect("an unlock entry");
    assert!(lockout < unlocked);
}

#[tokio::test]
async fn the_cli_unlocks_an_account() {
    let app = spawn_app_with(&[("lockout_threshold", "2"), ("login_backoff_after", "100")]).await;
    app.signup("cli@example.com", PASSWORD).await;
    for _ in 0..2 {
        app.login("cli@example.com", "a wrong password guess").await;
    }
    assert_eq!(app.login("cli@example.com", PASSWORD).await.status(), 401);
    let (ok, out, err) = app
        .cli(&["user", "unlock", "--email", "CLI@example.com"])
        .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("unlocked cli@example.com"), "{out}");
    app.login_ok("cli@example.com", PASSWORD).await;
    let (ok, out, _) = app
        .cli(&["user", "unlock", "--email", "cli@example.com"])
        .await;
    assert!(ok && out.contains("was not locked"), "{out}");
    let (ok, _, err) = app
        .cli(&["user", "unlock", "--email", "none@example.com"])
        .await;
    assert!(!ok && err.contains("no account"), "{err}");
}

#[tokio::test]
async fn a_client_cannot_name_itself_in_the_header_the_proxy_does_not_write() {
    let app = spawn_app_with(&[
        ("admin_allowed_networks", "10.0.0.0/8"),
        ("trusted_proxies", "127.0.0.1/32"),
    ])
    .await;
    let root = app.admin("root@example.com").await;
    let id = user_id(&app, "root@example.com").await;
    // The proxy appended the real client to X-Forwarded-For and passed the client's own
    // Forwarded header through.
    let spoofed = app
        .authed(
            reqwest::Method::POST,
            &format!("/api/v1/admin/users/{id}/unlock"),
            &root.access_token,
        )
        .header("forwarded", "for=10.1.2.3;proto=https")
        .header("x-forwarded-for", "203.0.113.5");
    let response = app.send(spoofed).await;
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
    problem(response, 404).await;
    // A hop the proxy could not name is nobody the allow-list vouches for.
    problem(
        unlock(&app, &root.access_token, &id, Some("10.1.2.3, unknown")).await,
        404,
    )
    .await;
    assert_eq!(
        unlock(&app, &root.access_token, &id, Some("10.1.2.3"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn with_forwarded_configured_x_forwarded_for_is_ignored() {
    let app = spawn_app_with(&[
        ("trusted_proxies", "127.0.0.1/32"),
        ("forwarded_header", "forwarded"),
    ])
    .await;
    app.signup("fwd@example.com", PASSWORD).await;
    let response = app
        .send(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .header("x-forwarded-for", "10.9.9.9")
                .header(
                    "forwarded",
                    r#"for=1.1.1.1, for="[2001:db8::7]:443";proto=https"#,
                )
                .json(&json!({ "email": "fwd@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_some()
    );
    let pair: TokenPair = response.json().await.unwrap();
    let sessions: Value = app
        .send(app.authed(
            reqwest::Method::GET,
            "/api/v1/users/me/sessions",
            &pair.access_token,
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sessions["items"][0]["ip"], "2001:db8::7");
}

#[tokio::test]
async fn a_browser_can_read_a_rate_limit_refusal() {
    let app = spawn_app_with(&[
        ("cors_origins", "https://app.example.com"),
        ("rate_limit_per_second", "1"),
        ("rate_limit_burst", "1"),
    ])
    .await;
    let get = || {
        app.client
            .get(app.url("/oauth2/jwks"))
            .header("origin", "https://app.example.com")
    };
    assert_eq!(app.send(get()).await.status(), 200);
    let refused = app.send(get()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        refused.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("retry-after")
    );
    assert_security_headers(&refused, "429 with CORS");
    // Preflights carry the security headers too.
    let response = preflight(&app, "https://app.example.com").await;
    assert_security_headers(&response, "preflight");
}

#[tokio::test]
async fn a_stolen_token_cannot_guess_the_password_through_password_change() {
    let app = spawn_app_with(&[("lockout_threshold", "7")]).await;
    let (email, pair) = app.new_user().await;
    let change = |current: &str| {
        app.authed(
            reqwest::Method::POST,
            "/api/v1/users/me/password",
            &pair.access_token,
        )
        .json(&json!({
            "current_password": current,
            "new_password": "an entirely new passphrase 99",
        }))
    };
    let mut statuses = Vec::new();
    for n in 0..6 {
        statuses.push(
            app.send(change(&format!("guess {n} of the password")))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![403, 403, 403, 403, 403, 429]);
    // The same backoff guards login for that email.
    assert_eq!(app.login(&email, PASSWORD).await.status(), 429);
    let failed = audit_actions(&app)
        .await
        .into_iter()
        .filter(|a| a == "password_change_failed")
        .count();
    assert_eq!(failed, 5);
    let count: i64 = sqlx::query_scalar("SELECT failed_logins FROM users WHERE email_key = $1")
        .bind(&email)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(
        count, 5,
        "wrong current passwords count towards the lockout"
    );
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(&[("max_connections_per_ip", "2"), ("max_connections", "50")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut held = vec![
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third connection from the same address is closed at once, unanswered.
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf))
        .await
        .expect("closed promptly, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "no answer: {read:?}");
    // Once one is given back, the address is served again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    fourth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn an_unlock_on_one_instance_lifts_the_backoff_on_another() {
    let db = crate::helpers::fresh_database().await;
    if !db.is_postgres() {
        crate::helpers::skipped(
            "an_unlock_on_one_instance_lifts_the_backoff_on_another",
            "two instances share a database only on PostgreSQL; set PORTVAKT_TEST_DATABASE_URL",
        );
        return;
    }
    let url = db.url().unwrap().to_string();
    let secret = portvakt::crypto::secret::generate();
    // A wait far longer than the test, so only the unlock can end it.
    let settings = [
        ("secret_key", secret.as_str()),
        ("login_backoff_after", "2"),
        ("login_backoff_initial", "10m"),
        ("login_backoff_max", "10m"),
    ];
    let a = crate::helpers::spawn_app_on(db, &settings).await;
    let mut with_url = settings.to_vec();
    with_url.push(("database_url", &url));
    let b = crate::helpers::spawn_app_on(crate::helpers::TestDatabase::Sqlite, &with_url).await;
    let root = &b.admin("root@example.com").await;
    a.signup("owner@example.com", PASSWORD).await;
    for _ in 0..2 {
        a.login("owner@example.com", "somebody guessing here").await;
    }
    assert_eq!(a.login("owner@example.com", PASSWORD).await.status(), 429);
    let id = user_id(&a, "owner@example.com").await;
    assert_eq!(
        unlock(&b, &root.access_token, &id, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let a = &a;
    assert!(
        crate::helpers::eventually(Duration::from_secs(5), || async move {
            a.login("owner@example.com", PASSWORD).await.status() == StatusCode::OK
        })
        .await,
        "the owner gets in on the other instance"
    );
}
