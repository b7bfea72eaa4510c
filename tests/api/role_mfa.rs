//! Roles that require MFA (issue 6): a session without a second factor gets nothing from
//! them, neither on admin routes nor in its token's `roles`; its token's `amr` says how it
//! was authenticated, and refreshing keeps it. Set over the API (built-in roles too) and
//! from the CLI; reported by `portvakt check`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TokenPair, problem, slug, spawn_app};
use crate::mfa::{code, enable, mfa_token, second_step};

/// The claims of an access token, as an application reading it would see them.
pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

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

async fn require_mfa(app: &TestApp, token: &str, role: &str, on: bool) -> reqwest::Response {
    call(
        app,
        Method::PUT,
        &format!("/api/v1/admin/roles/{role}/require-mfa"),
        token,
        Some(json!({ "require_mfa": on })),
    )
    .await
}

async fn list_users(app: &TestApp, token: &str) -> reqwest::Response {
    call(app, Method::GET, "/api/v1/admin/users", token, None).await
}

async fn refreshed(app: &TestApp, pair: &TokenPair) -> TokenPair {
    let r = app.refresh(&pair.refresh_token).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn role(app: &TestApp, token: &str, name: &str) -> Value {
    let r = call(app, Method::GET, "/api/v1/admin/roles", token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("role {name} listed"))
}

#[tokio::test]
async fn the_admin_role_requiring_mfa_needs_a_second_factor_in_the_session_and_its_token() {
    let app = spawn_app().await;
    let email = "root@example.com";
    let password_only = app.admin(email).await;
    let c = claims(&password_only.access_token);
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["roles"], json!(["admin", "user"]));

    // Built-in `admin` can be made to require MFA, by an admin who may use it now.
    let r = require_mfa(&app, &password_only.access_token, "admin", true).await;
    assert_eq!(r.status(), StatusCode::OK);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["name"], "admin");
    assert_eq!(view["builtin"], true);
    assert_eq!(view["require_mfa"], true);

    // From the very next request, the password-only session gets nothing from it.
    let p = problem(list_users(&app, &password_only.access_token).await, 403).await;
    assert_eq!(slug(&p), "mfa-required");
    assert!(p["detail"].as_str().unwrap().contains("enable MFA"), "{p}");
    // Nor can it switch the requirement off again.
    let p = problem(
        require_mfa(&app, &password_only.access_token, "admin", false).await,
        403,
    )
    .await;
    assert_eq!(slug(&p), "mfa-required");
    // Its next token leaves the role out; the profile still lists what the account holds.
    let again = refreshed(&app, &password_only).await;
    let c = claims(&again.access_token);
    assert_eq!(c["roles"], json!(["user"]));
    assert_eq!(c["amr"], json!(["pwd"]));
    let fresh = app.login_ok(email, PASSWORD).await;
    assert_eq!(claims(&fresh.access_token)["roles"], json!(["user"]));
    let me: Value = app.me(&fresh.access_token).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["admin", "user"]));

    // The admin enrols TOTP with its password-only session and logs in with the code.
    let (t, recovery) = enable(&app, &fresh.access_token).await;
    let token = mfa_token(&app, email).await;
    let r = second_step(&app, &token, &code(&t, 1)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let with_totp: TokenPair = r.json().await.unwrap();
    let c = claims(&with_totp.access_token);
    assert_eq!(c["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(c["roles"], json!(["admin", "user"]));
    assert_eq!(
        list_users(&app, &with_totp.access_token).await.status(),
        StatusCode::OK
    );

    // Refreshing keeps how the session was authenticated, and so the role.
    let later = refreshed(&app, &with_totp).await;
    let c = claims(&later.access_token);
    assert_eq!(c["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(c["roles"], json!(["admin", "user"]));
    assert_eq!(
        list_users(&app, &later.access_token).await.status(),
        StatusCode::OK
    );
    // A session opened with the password alone stays so, though the account has MFA now.
    let old = refreshed(&app, &again).await;
    assert_eq!(claims(&old.access_token)["amr"], json!(["pwd"]));
    assert_eq!(claims(&old.access_token)["roles"], json!(["user"]));
    let p = problem(list_users(&app, &old.access_token).await, 403).await;
    assert_eq!(slug(&p), "mfa-required");

    // A recovery code is a second factor too.
    let token = mfa_token(&app, email).await;
    let r = second_step(&app, &token, &recovery[0]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let with_code: TokenPair = r.json().await.unwrap();
    assert_eq!(
        claims(&with_code.access_token)["amr"],
        json!(["pwd", "mfa"])
    );
    assert_eq!(
        list_users(&app, &with_code.access_token).await.status(),
        StatusCode::OK
    );

    // Switched off by a session with MFA: the password-only one is an admin again at its
    // next request, without a new token.
    let r = require_mfa(&app, &later.access_token, "admin", false).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["require_mfa"], false);
    assert_eq!(
        list_users(&app, &old.access_token).await.status(),
        StatusCode::OK
    );

    // Each switch is on record as `role_changed` of the role.
    let r = call(
        &app,
        Method::GET,
        "/api/v1/admin/audit?action=role_changed",
        &later.access_token,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    let changes: Vec<(&Value, &Value)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e["target_id"], &e["details"]["require_mfa"]))
        .collect();
    assert_eq!(
        changes,
        [
            (&json!("admin"), &json!(false)),
            (&json!("admin"), &json!(true))
        ]
    );
}

#[tokio::test]
async fn only_what_a_role_requiring_mfa_would_grant_is_mfa_required() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let (email, _) = app.new_user().await;
    let me: Value = app
        .me(&app.login_ok(&email, PASSWORD).await.access_token)
        .await
        .json()
        .await
        .unwrap();
    let id = me["id"].as_str().unwrap();
    for (name, permissions, require) in [
        ("reader", json!(["users:read"]), false),
        ("auditor", json!(["audit:read"]), true),
    ] {
        let r = call(
            &app,
            Method::POST,
            "/api/v1/admin/roles",
            &root.access_token,
            Some(json!({"name": name, "permissions": permissions, "require_mfa": require})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.json::<Value>().await.unwrap()["require_mfa"], require);
    }
    let r = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        &root.access_token,
        Some(json!({"roles": ["user", "reader", "auditor"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    let pair = app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        claims(&pair.access_token)["roles"],
        json!(["reader", "user"])
    );
    assert_eq!(
        list_users(&app, &pair.access_token).await.status(),
        StatusCode::OK,
        "a role without the requirement still works"
    );
    let audit = call(
        &app,
        Method::GET,
        "/api/v1/admin/audit",
        &pair.access_token,
        None,
    )
    .await;
    assert_eq!(slug(&problem(audit, 403).await), "mfa-required");
    let roles = call(
        &app,
        Method::GET,
        "/api/v1/admin/roles",
        &pair.access_token,
        None,
    )
    .await;
    assert_eq!(
        slug(&problem(roles, 403).await),
        "forbidden",
        "no role of the account grants roles:read"
    );
}

#[tokio::test]
async fn put_and_post_carry_require_mfa_and_builtin_roles_change_only_through_its_route() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    let r = call(
        &app,
        Method::POST,
        "/api/v1/admin/roles",
        token,
        Some(json!({"name": "support", "permissions": ["users:read"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["require_mfa"], false);
    let put = |body: Value| {
        call(
            &app,
            Method::PUT,
            "/api/v1/admin/roles/support",
            token,
            Some(body),
        )
    };
    let r = put(json!({"permissions": ["users:read"], "require_mfa": true})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["require_mfa"], true);
    // Leaving the field out leaves the requirement as it is.
    let r = put(json!({"permissions": ["users:read", "audit:read"]})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["require_mfa"], true);
    assert_eq!(view["permissions"], json!(["users:read", "audit:read"]));
    assert_eq!(role(&app, token, "support").await["require_mfa"], true);
    let r = put(json!({"permissions": ["users:read"], "require_mfa": false})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["require_mfa"], false);
    problem(
        put(json!({"permissions": [], "require_mfa": "yes"})).await,
        400,
    )
    .await;
    assert_eq!(role(&app, token, "support").await["require_mfa"], false);

    // A plain PUT on a built-in role is still refused; its own route is not.
    for builtin in ["admin", "user"] {
        let r = call(
            &app,
            Method::PUT,
            &format!("/api/v1/admin/roles/{builtin}"),
            token,
            Some(json!({"permissions": [], "require_mfa": true})),
        )
        .await;
        assert_eq!(slug(&problem(r, 409).await), "builtin-role");
        assert_eq!(role(&app, token, builtin).await["require_mfa"], false);
    }
    let r = require_mfa(&app, token, "user", true).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(role(&app, token, "user").await["require_mfa"], true);
    problem(require_mfa(&app, token, "nobody", true).await, 404).await;
    let r = call(
        &app,
        Method::PUT,
        "/api/v1/admin/roles/user/require-mfa",
        token,
        Some(json!({"require_mfa": true, "extra": 1})),
    )
    .await;
    problem(r, 400).await;
}

#[tokio::test]
async fn roles_write_alone_cannot_switch_the_requirement_of_a_role_beyond_its_permissions() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let (email, _) = app.new_user().await;
    let me: Value = app
        .me(&app.login_ok(&email, PASSWORD).await.access_token)
        .await
        .json()
        .await
        .unwrap();
    let id = me["id"].as_str().unwrap();
    let r = call(
        &app,
        Method::POST,
        "/api/v1/admin/roles",
        &root.access_token,
        Some(json!({"name": "role-keeper", "permissions": ["roles:read", "roles:write"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        &root.access_token,
        Some(json!({"roles": ["user", "role-keeper"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let keeper = app.login_ok(&email, PASSWORD).await;
    let p = problem(
        require_mfa(&app, &keeper.access_token, "admin", true).await,
        403,
    )
    .await;
    assert_eq!(slug(&p), "forbidden");
    assert_eq!(
        role(&app, &root.access_token, "admin").await["require_mfa"],
        false
    );
    // Nor `user`, which grants no permission but reaches every account: built-in roles
    // take every permission to switch.
    let p = problem(
        require_mfa(&app, &keeper.access_token, "user", true).await,
        403,
    )
    .await;
    assert_eq!(slug(&p), "forbidden");
    // Its own role's permissions it holds: that it may switch.
    let r = require_mfa(&app, &keeper.access_token, "role-keeper", true).await;
    assert_eq!(r.status(), StatusCode::OK);
    // And then it has locked its own password-only session out of the role.
    let p = problem(
        require_mfa(&app, &keeper.access_token, "role-keeper", false).await,
        403,
    )
    .await;
    assert_eq!(slug(&p), "mfa-required");
}

#[tokio::test]
async fn the_cli_sets_the_requirement_without_an_api_token_and_check_reports_it() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let check = || async {
        let (_, out, err) = app
            .cli_with(&[("PORTVAKT_ENV", "production")], &["check", "--json"])
            .await;
        let report: Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("JSON: {out} {err}"));
        let find = |item: &str| {
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["item"] == item)
                .cloned()
                .unwrap_or_else(|| panic!("{item} in {report:#}"))
        };
        (find("admin_role_mfa"), find("mfa_roles"))
    };
    let (admin_role, mfa_roles) = check().await;
    assert_eq!(admin_role["level"], "warn", "{admin_role}");
    assert!(
        admin_role["fix"]
            .as_str()
            .unwrap()
            .contains("portvakt role require-mfa admin --on"),
        "{admin_role}"
    );
    assert_eq!(mfa_roles["level"], "pass", "{mfa_roles}");
    assert_eq!(mfa_roles["message"], "no role requires MFA");

    let (ok, out, err) = app.cli(&["role", "require-mfa", "admin", "--on"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("admin") && out.contains("requires MFA"),
        "{out}"
    );
    let p = problem(list_users(&app, &root.access_token).await, 403).await;
    assert_eq!(slug(&p), "mfa-required");
    let (ok, out, _) = app.cli(&["role", "list"]).await;
    assert!(ok);
    let admin_line = out.lines().find(|l| l.starts_with("admin ")).unwrap();
    assert!(admin_line.contains("(requires MFA)"), "{out}");

    let (admin_role, mfa_roles) = check().await;
    assert_eq!(admin_role["level"], "pass", "{admin_role}");
    assert_eq!(mfa_roles["level"], "warn", "{mfa_roles}");
    assert!(
        mfa_roles["message"]
            .as_str()
            .unwrap()
            .contains("admin: 1 of 1 holder(s) without MFA"),
        "{mfa_roles}"
    );

    // Once the admin has MFA, nobody lacks it. (Enrolling ends its other sessions; the
    // enrolling one's token, issued before, still says password only.)
    let root = app.login_ok("root@example.com", PASSWORD).await;
    enable(&app, &root.access_token).await;
    let p = problem(list_users(&app, &root.access_token).await, 403).await;
    assert_eq!(slug(&p), "mfa-required");
    let (_, mfa_roles) = check().await;
    assert_eq!(mfa_roles["level"], "pass", "{mfa_roles}");

    let (ok, _, err) = app.cli(&["role", "require-mfa", "admin", "--off"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        list_users(&app, &root.access_token).await.status(),
        StatusCode::OK
    );
    let (ok, _, err) = app.cli(&["role", "require-mfa", "nobody", "--on"]).await;
    assert!(!ok);
    assert!(err.contains("no role is named nobody"), "{err}");
    let (ok, _, _) = app.cli(&["role", "require-mfa", "admin"]).await;
    assert!(!ok, "one of --on and --off is required");
}

/// A session that passed no second factor (a stolen one, or any other opened before the
/// owner turned MFA on) cannot swap the account's factor for its own; the session that
/// enrolled the first factor proved it and counts as multi-factor from its next refresh.
#[tokio::test]
async fn a_password_only_session_cannot_change_the_second_factors() {
    let app = spawn_app().await;
    let email = "root@example.com";
    let stolen = app.admin(email).await;
    let own = app.login_ok(email, PASSWORD).await;
    let (totp, codes) = enable(&app, &own.access_token).await;
    // The other session lives on (API.md names what ends one), password-only.
    assert_eq!(app.me(&stolen.access_token).await.status(), 200);
    let stolen = refreshed(&app, &stolen).await;
    assert_eq!(claims(&stolen.access_token)["amr"], json!(["pwd"]));
    let upgraded = refreshed(&app, &own).await;
    assert_eq!(
        claims(&upgraded.access_token)["amr"],
        json!(["pwd", "otp", "mfa"])
    );
    for (path, body) in [
        ("/api/v1/users/me/mfa/totp", json!({})),
        (
            "/api/v1/users/me/mfa/totp/disable",
            json!({"password": PASSWORD}),
        ),
        (
            "/api/v1/users/me/mfa/recovery-codes",
            json!({"password": PASSWORD}),
        ),
        (
            "/api/v1/users/me/passkeys/registration",
            json!({"password": PASSWORD}),
        ),
    ] {
        let r = call(&app, Method::POST, path, &stolen.access_token, Some(body)).await;
        assert_eq!(slug(&problem(r, 403).await), "mfa-required", "{path}");
    }
    // TOTP is still on, and the owner's codes still work.
    let token = mfa_token(&app, email).await;
    let r = second_step(&app, &token, &codes[0]).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Sessions that passed the second factor may change them: the enrolling one and a login
    // with the code.
    let r = call(
        &app,
        Method::POST,
        "/api/v1/users/me/mfa/recovery-codes",
        &upgraded.access_token,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let token = mfa_token(&app, email).await;
    let mfa: TokenPair = second_step(&app, &token, &code(&totp, 1))
        .await
        .json()
        .await
        .unwrap();
    let r = call(
        &app,
        Method::POST,
        "/api/v1/users/me/mfa/totp/disable",
        &mfa.access_token,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}
