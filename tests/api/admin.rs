//! The admin API: permissions on every route, user search and edits, disabling, the
//! last-admin rule, roles, and the audit query.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TokenPair, problem, slug, spawn_app};

/// Signs up `email` (with `name`), gives it `admin` and logs it in. Bootstrapping the first
/// admin is the operator's job (CLI or SQL), not the API's.
async fn admin(app: &TestApp, email: &str) -> (String, TokenPair) {
    let response = app
        .post_json(
            "/api/v1/users",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, 'admin')")
        .bind(&id)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    (id, app.login_ok(email, PASSWORD).await)
}

/// Signs up a user with a name and logs in; returns its id and tokens.
async fn user(app: &TestApp, email: &str, name: Option<&str>) -> (String, TokenPair) {
    let response = app
        .post_json(
            "/api/v1/users",
            &json!({"email": email, "password": PASSWORD, "name": name}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED, "signup of {email}");
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (id, app.login_ok(email, PASSWORD).await)
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

async fn ok_json(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    response.json().await.unwrap()
}

async fn patch(app: &TestApp, token: &str, id: &str, body: Value) -> reqwest::Response {
    call(
        app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        token,
        Some(body),
    )
    .await
}

async fn audit(app: &TestApp, token: &str, query: &str) -> Value {
    ok_json(
        call(
            app,
            Method::GET,
            &format!("/api/v1/admin/audit?{query}"),
            token,
            None,
        )
        .await,
        200,
    )
    .await
}

fn actions(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

fn emails(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn every_admin_route_answers_401_without_a_token_and_403_to_a_plain_user() {
    let app = spawn_app().await;
    let (_, plain) = app.new_user().await;
    let (_, target) = app.new_user().await;
    let id = {
        let me: Value = app.me(&target.access_token).await.json().await.unwrap();
        me["id"].as_str().unwrap().to_string()
    };
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/admin/users".into(), None),
        (Method::GET, format!("/api/v1/admin/users/{id}"), None),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{id}"),
            Some(json!({"disabled": true})),
        ),
        (
            Method::POST,
            format!("/api/v1/admin/users/{id}/sessions/revoke"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/users/{id}/unlock"),
            None,
        ),
        (Method::GET, "/api/v1/admin/roles".into(), None),
        (
            Method::POST,
            "/api/v1/admin/roles".into(),
            Some(json!({"name": "x", "permissions": []})),
        ),
        (
            Method::PUT,
            "/api/v1/admin/roles/x".into(),
            Some(json!({"permissions": []})),
        ),
        (Method::DELETE, "/api/v1/admin/roles/x".into(), None),
        (Method::GET, "/api/v1/admin/audit".into(), None),
    ];
    for (method, path, body) in routes {
        let mut anonymous = app.client.request(method.clone(), app.url(&path));
        if let Some(body) = &body {
            anonymous = anonymous.json(body);
        }
        let response = app.send(anonymous).await;
        assert_eq!(response.status(), 401, "{method} {path} without a token");
        assert!(response.headers().contains_key("www-authenticate"));

        let response = call(&app, method.clone(), &path, &plain.access_token, body).await;
        let body = problem(response, 403).await;
        assert_eq!(slug(&body), "forbidden", "{method} {path}");
    }
    // Nothing was changed on the way.
    assert_eq!(app.me(&target.access_token).await.status(), 200);
}

#[tokio::test]
async fn search_matches_an_email_or_name_prefix_in_any_case_a_page_at_a_time() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    user(&app, "alice@example.com", Some("Alice Liddell")).await;
    user(&app, "bob@example.com", Some("Alicia Keys")).await;
    user(&app, "carol@example.com", Some("Carol")).await;
    user(&app, "al_x@example.com", None).await;
    let token = &root.access_token;
    let app = &app;
    let get = |q: &'static str| async move {
        ok_json(
            call(
                app,
                Method::GET,
                &format!("/api/v1/admin/users?{q}"),
                token,
                None,
            )
            .await,
            200,
        )
        .await
    };

    let page = get("q=ALI").await;
    assert_eq!(emails(&page), ["alice@example.com", "bob@example.com"]);
    assert_eq!(
        (
            page["page"].as_u64(),
            page["per_page"].as_u64(),
            page["total"].as_i64()
        ),
        (Some(1), Some(50), Some(2))
    );
    assert_eq!(page["total_exact"], true);
    let alice = &page["items"][0];
    assert_eq!(alice["name"], "Alice Liddell");
    assert_eq!(alice["roles"], json!(["user"]));
    assert_eq!(alice["disabled"], false);
    assert!(alice["last_login_at"].as_str().unwrap().ends_with('Z'));

    assert_eq!(emails(&get("q=Car").await), ["carol@example.com"]);
    // `_` and `%` are literal characters, not wildcards.
    assert_eq!(emails(&get("q=al_").await), ["al_x@example.com"]);
    assert_eq!(emails(&get("q=%25").await), Vec::<&str>::new());
    assert_eq!(emails(&get("q=nobody").await), Vec::<&str>::new());

    let all = get("per_page=2").await;
    assert_eq!(all["total"], 5);
    assert_eq!(emails(&all), ["al_x@example.com", "alice@example.com"]);
    let third = get("per_page=2&page=3").await;
    assert_eq!(emails(&third), ["root@example.com"]);
    assert_eq!(emails(&get("per_page=2&page=4").await).len(), 0);

    for (q, field) in [
        ("page=0", "page"),
        ("page=abc", "page"),
        ("per_page=0", "per_page"),
        ("per_page=201", "per_page"),
        ("per_page=-5", "per_page"),
    ] {
        let response = call(
            app,
            Method::GET,
            &format!("/api/v1/admin/users?{q}"),
            token,
            None,
        )
        .await;
        let body = problem(response, 400).await;
        assert_eq!(body["errors"][0]["field"], field, "{q}: {body}");
    }
    let long = format!("/api/v1/admin/users?q={}", "a".repeat(255));
    let body = problem(call(app, Method::GET, &long, token, None).await, 400).await;
    assert_eq!(body["errors"][0]["field"], "q");
}

/// Writes accounts straight into the table (no password hashing: only search reads them).
async fn insert_accounts(app: &TestApp, accounts: &[(String, String, Option<String>)]) {
    let mut tx = app.state.store.pool().begin().await.unwrap();
    for chunk in accounts.chunks(100) {
        let rows = (0..chunk.len())
            .map(|i| {
                let p = i * 4;
                format!(
                    "(${}, ${}, ${}, ${}, 'x', 0, 0)",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO users (id, email, email_key, name, password_hash, created_at, updated_at) VALUES {rows}"
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, email, name) in chunk {
            insert = insert
                .bind(id)
                .bind(email)
                .bind(email.to_lowercase())
                .bind(name);
        }
        insert.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Matches are ordered by the text that matched (the smaller when both do), then id, page
/// after page; an account found by email and by name is listed once; the count stops 1,000
/// past the page and says so.
#[tokio::test]
async fn search_pages_merge_email_and_name_matches_and_bound_the_count() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let mut accounts = Vec::new();
    for i in 0..1600 {
        let id = portvakt::accounts::UserId::new().to_string();
        let (email, name) = match i % 4 {
            0 | 1 => (format!("M{i:04}@example.com"), None),
            2 => (
                format!("x{i:04}@example.com"),
                Some(format!("M{i:04} Name")),
            ),
            _ => (format!("m{i:04}b@example.com"), Some(format!("m{i:04}a"))),
        };
        accounts.push((id, email, name));
    }
    // Ten accounts with one name: their order is the id's.
    for j in 0..10 {
        let id = portvakt::accounts::UserId::new().to_string();
        accounts.push((id, format!("y{j}@example.com"), Some("M Tie".to_string())));
    }
    accounts.push((
        portvakt::accounts::UserId::new().to_string(),
        "zed@example.com".to_string(),
        Some("Zed".to_string()),
    ));
    insert_accounts(&app, &accounts).await;

    let mut expected: Vec<(String, String, String)> = accounts
        .iter()
        .filter_map(|(id, email, name)| {
            let keys = [
                Some(email.to_lowercase()),
                name.as_ref().map(|n| n.to_lowercase()),
            ];
            let key = keys
                .into_iter()
                .flatten()
                .filter(|k| k.starts_with('m'))
                .min()?;
            Some((key, id.clone(), email.clone()))
        })
        .collect();
    expected.sort();
    let expected: Vec<&str> = expected.iter().map(|(_, _, e)| e.as_str()).collect();
    assert_eq!(expected.len(), 1610);

    let search = |query: String| {
        let app = &app;
        let token = root.access_token.clone();
        async move {
            let url = format!("/api/v1/admin/users?{query}");
            ok_json(call(app, Method::GET, &url, &token, None).await, 200).await
        }
    };

    let mut listed: Vec<String> = Vec::new();
    for page in 1.. {
        let body = search(format!("q=M&per_page=200&page={page}")).await;
        let items = emails(&body);
        let total = body["total"].as_i64().unwrap();
        if body["total_exact"] == true {
            assert_eq!(total, 1610, "page {page}");
        } else {
            assert_eq!(body["total_exact"], false);
            assert!(total >= page * 200 + 1000, "page {page}: {total}");
            assert!(total <= 1610, "page {page}: {total}");
        }
        if items.is_empty() {
            break;
        }
        listed.extend(items.iter().map(|e| e.to_string()));
    }
    assert_eq!(listed, expected);

    // Lowercase finds the same; the first page of a broad prefix says its total is a bound.
    let first = search("q=m&per_page=50".to_string()).await;
    assert_eq!(emails(&first), expected[..50]);
    assert_eq!(first["total_exact"], false);
    assert!(first["total"].as_i64().unwrap() >= 1050);
    // Without a prefix, everyone by email, with the same bound.
    let all = search("per_page=50".to_string()).await;
    assert_eq!(all["total_exact"], false);
    assert_eq!(all["total"], 1050);
    let last = search("per_page=100&page=17".to_string()).await;
    assert_eq!(last["total_exact"], true);
    assert_eq!(last["total"], 1612);
    assert_eq!(emails(&last).len(), 12);
    assert_eq!(emails(&last).last(), Some(&"zed@example.com"));
}

/// Each scan of a prefix search reads its index in the page's order: no sort of all the matches.
#[tokio::test]
async fn the_prefix_search_is_served_by_indexes_in_order() {
    use portvakt::accounts::directory::Queries;
    use portvakt::store::Backend;
    let app = spawn_app().await;
    let store = &app.state.store;
    let backend = store.backend();
    let mut conn = store.pool().acquire().await.unwrap();
    if backend == Backend::Postgres {
        // An empty table is cheaper to scan and sort than to search: ask whether an index
        // could serve in order (a sort still appears, whatever it costs, if none can).
        for setting in ["enable_seqscan", "enable_bitmapscan", "enable_sort"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("SET {setting} = off")))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
    let queries = Queries::new(backend);
    for (scan, index) in [
        (&queries.by_email, "users_by_email_prefix"),
        (&queries.by_name, "users_by_name_prefix"),
    ] {
        let plan: Vec<String> = match backend {
            Backend::Sqlite => {
                let sql = format!("EXPLAIN QUERY PLAN {scan}");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind("ali%")
                    .bind(50_i64)
                    .bind("ali%")
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| sqlx::Row::try_get::<String, _>(r, "detail").unwrap())
                    .collect()
            }
            Backend::Postgres => {
                let sql = format!(
                    "EXPLAIN {}",
                    scan.replace("$1", "'ali%'")
                        .replace("$2", "50")
                        .replace("$3", "'ali%'")
                );
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap()
            }
        };
        let plan = plan.join("\n");
        assert!(plan.contains(index), "{plan}");
        if backend == Backend::Sqlite {
            // The ids come from the index too: the count never visits the table.
            assert!(plan.contains("COVERING INDEX"), "{plan}");
        }
        assert!(!plan.contains("TEMP B-TREE"), "a sort: {plan}");
        assert!(!plan.contains("Sort"), "a sort: {plan}");
    }
}

#[tokio::test]
async fn an_admin_edits_name_email_and_roles() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let (id, _) = user(&app, "ada@example.com", Some("Ada")).await;
    user(&app, "taken@example.com", None).await;
    let token = &root.access_token;

    let view = ok_json(
        patch(&app, token, &id, json!({"name": "Ada Lovelace"})).await,
        200,
    )
    .await;
    assert_eq!(view["name"], "Ada Lovelace");
    assert_eq!(view["email"], "ada@example.com");
    let view = ok_json(patch(&app, token, &id, json!({"name": null})).await, 200).await;
    assert_eq!(view["name"], Value::Null);

    let view = ok_json(
        patch(&app, token, &id, json!({"email": "Ada.L@Example.com"})).await,
        200,
    )
    .await;
    assert_eq!(view["email"], "Ada.L@Example.com");
    assert_eq!(view["email_verified"], false);
    // The account logs in with its new address, in any case.
    app.login_ok("ada.l@example.com", PASSWORD).await;
    let body = problem(
        patch(&app, token, &id, json!({"email": "TAKEN@example.com"})).await,
        409,
    )
    .await;
    assert_eq!(slug(&body), "email-taken");
    let body = problem(
        patch(&app, token, &id, json!({"email": "not an email"})).await,
        400,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "email");

    let view = ok_json(
        patch(&app, token, &id, json!({"roles": ["user", "admin"]})).await,
        200,
    )
    .await;
    assert_eq!(view["roles"], json!(["admin", "user"]));
    let body = problem(
        patch(&app, token, &id, json!({"roles": ["user", "wizard"]})).await,
        400,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "roles");
    let body = problem(
        patch(&app, token, &id, json!({"roles": ["Not A Role"]})).await,
        400,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "roles");
    let body = problem(patch(&app, token, &id, json!({"colour": "red"})).await, 400).await;
    assert_eq!(body["errors"][0]["field"], "colour");

    // A refused change changed nothing.
    let view = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/admin/users/{id}"),
            token,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(view["roles"], json!(["admin", "user"]));
    assert_eq!(view["email"], "Ada.L@Example.com");

    for missing in ["0190a5a0-0000-7000-8000-000000000000", "not-a-uuid"] {
        let path = format!("/api/v1/admin/users/{missing}");
        problem(call(&app, Method::GET, &path, token, None).await, 404).await;
        problem(patch(&app, token, missing, json!({"name": "x"})).await, 404).await;
        let revoke = format!("{path}/sessions/revoke");
        problem(call(&app, Method::POST, &revoke, token, None).await, 404).await;
    }
}

#[tokio::test]
async fn disabling_ends_every_session_at_once_and_enabling_lets_the_user_back() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let (id, tokens) = user(&app, "eve@example.com", None).await;
    let other = app.login_ok("eve@example.com", PASSWORD).await;

    let view = ok_json(
        patch(&app, &root.access_token, &id, json!({"disabled": true})).await,
        200,
    )
    .await;
    assert_eq!(view["disabled"], true);
    assert_eq!(app.me(&tokens.access_token).await.status(), 401);
    assert_eq!(app.me(&other.access_token).await.status(), 401);
    assert_eq!(app.refresh(&tokens.refresh_token).await.status(), 401);
    assert_eq!(app.login("eve@example.com", PASSWORD).await.status(), 401);

    let view = ok_json(
        patch(&app, &root.access_token, &id, json!({"disabled": false})).await,
        200,
    )
    .await;
    assert_eq!(view["disabled"], false);
    let fresh = app.login_ok("eve@example.com", PASSWORD).await;
    assert_eq!(app.me(&fresh.access_token).await.status(), 200);
}

#[tokio::test]
async fn an_admin_ends_every_session_of_an_account() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let (id, tokens) = user(&app, "mallory@example.com", None).await;
    let path = format!("/api/v1/admin/users/{id}/sessions/revoke");
    let response = call(&app, Method::POST, &path, &root.access_token, None).await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.me(&tokens.access_token).await.status(), 401);
    assert_eq!(app.refresh(&tokens.refresh_token).await.status(), 401);
    // The account itself still works.
    app.login_ok("mallory@example.com", PASSWORD).await;
}

#[tokio::test]
async fn the_last_enabled_admin_cannot_be_disabled_or_demoted() {
    let app = spawn_app().await;
    let (root_id, root) = admin(&app, "root@example.com").await;
    let token = &root.access_token;

    let body = problem(
        patch(&app, token, &root_id, json!({"disabled": true})).await,
        409,
    )
    .await;
    assert_eq!(slug(&body), "last-admin");
    let body = problem(
        patch(&app, token, &root_id, json!({"roles": ["user"]})).await,
        409,
    )
    .await;
    assert_eq!(slug(&body), "last-admin");
    // Nothing of the refused change remains: the session works and the role is held.
    let me: Value = app.me(token).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["admin", "user"]));

    // A disabled admin does not count: with a second admin disabled, root is still the last.
    let (second_id, _) = admin(&app, "second@example.com").await;
    ok_json(
        patch(&app, token, &second_id, json!({"disabled": true})).await,
        200,
    )
    .await;
    let body = problem(
        patch(&app, token, &root_id, json!({"roles": ["user"]})).await,
        409,
    )
    .await;
    assert_eq!(slug(&body), "last-admin");

    // With another enabled admin, root may step down, and then loses admin access at once.
    ok_json(
        patch(&app, token, &second_id, json!({"disabled": false})).await,
        200,
    )
    .await;
    ok_json(
        patch(&app, token, &root_id, json!({"roles": ["user"]})).await,
        200,
    )
    .await;
    let response = call(&app, Method::GET, "/api/v1/admin/users", token, None).await;
    problem(response, 403).await;
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = spawn_app().await;
    let (a_id, a) = admin(&app, "a@example.com").await;
    let (b_id, b) = admin(&app, "b@example.com").await;
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(
            patch(&app, &a.access_token, &b_id, json!({"roles": ["user"]})),
            patch(&app, &b.access_token, &a_id, json!({"disabled": true})),
        );
        let statuses = [ra.status().as_u16(), rb.status().as_u16()];
        let admins: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users u JOIN user_roles r ON r.user_id = u.id WHERE r.role = 'admin' AND u.disabled_at IS NULL",
        )
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
        assert_eq!(admins, 1, "{statuses:?}");
        // One won; the other was refused (409), or found its caller already demoted (403) or
        // disabled (401).
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        // Put both back for the next round.
        sqlx::query("UPDATE users SET disabled_at = NULL")
            .execute(app.state.store.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, 'admin')")
            .bind(&b_id)
            .execute(app.state.store.pool())
            .await
            .ok();
        if statuses[1] == 200 {
            // `a` was disabled, which ended its session.
            return;
        }
    }
}

#[tokio::test]
async fn a_custom_role_grants_exactly_its_permissions_and_losing_it_applies_at_once() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let (support_id, support) = user(&app, "support@example.com", None).await;
    let (target_id, _) = user(&app, "target@example.com", None).await;
    let token = &root.access_token;
    let created = call(
        &app,
        Method::POST,
        "/api/v1/admin/roles",
        token,
        Some(json!({"name": "support", "permissions": ["users:read"]})),
    )
    .await;
    assert_eq!(created.status(), 201);
    ok_json(
        patch(
            &app,
            token,
            &support_id,
            json!({"roles": ["user", "support"]}),
        )
        .await,
        200,
    )
    .await;

    let s = &support.access_token;
    ok_json(
        call(&app, Method::GET, "/api/v1/admin/users", s, None).await,
        200,
    )
    .await;
    ok_json(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/admin/users/{target_id}"),
            s,
            None,
        )
        .await,
        200,
    )
    .await;
    problem(patch(&app, s, &target_id, json!({"name": "x"})).await, 403).await;
    problem(
        call(&app, Method::GET, "/api/v1/admin/audit", s, None).await,
        403,
    )
    .await;
    problem(
        call(&app, Method::GET, "/api/v1/admin/roles", s, None).await,
        403,
    )
    .await;

    // A permission added is usable at once, with the same token.
    let put = call(
        &app,
        Method::PUT,
        "/api/v1/admin/roles/support",
        token,
        Some(json!({"permissions": ["users:read", "users:write"]})),
    )
    .await;
    ok_json(put, 200).await;
    ok_json(patch(&app, s, &target_id, json!({"name": "x"})).await, 200).await;

    // And a role deleted is gone at once, with the same token.
    let deleted = call(
        &app,
        Method::DELETE,
        "/api/v1/admin/roles/support",
        token,
        None,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    problem(
        call(&app, Method::GET, "/api/v1/admin/users", s, None).await,
        403,
    )
    .await;
    let me: Value = app.me(s).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["user"]));
}

#[tokio::test]
async fn roles_are_created_listed_changed_and_deleted_but_builtin_ones_are_fixed() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let token = &root.access_token;
    let post = |body: Value| call(&app, Method::POST, "/api/v1/admin/roles", token, Some(body));

    let created = ok_json(
        post(json!({"name": "auditor", "permissions": ["audit:read", "users:read", "audit:read"]}))
            .await,
        201,
    )
    .await;
    assert_eq!(
        created,
        json!({"name": "auditor", "permissions": ["users:read", "audit:read"], "builtin": false, "require_mfa": false})
    );
    let body = problem(
        post(json!({"name": "auditor", "permissions": []})).await,
        409,
    )
    .await;
    assert_eq!(slug(&body), "role-exists");
    let body = problem(post(json!({"name": "admin", "permissions": []})).await, 409).await;
    assert_eq!(slug(&body), "role-exists");
    for bad in ["", "Auditor", "a b", &"x".repeat(65)] {
        let body = problem(post(json!({"name": bad, "permissions": []})).await, 400).await;
        assert_eq!(body["errors"][0]["field"], "name", "{bad}");
    }
    let body = problem(
        post(json!({"name": "ok", "permissions": ["users:delete"]})).await,
        400,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "permissions");

    let list = ok_json(
        call(&app, Method::GET, "/api/v1/admin/roles", token, None).await,
        200,
    )
    .await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "auditor", "user"]);
    assert_eq!(list["items"][0]["permissions"].as_array().unwrap().len(), 8);
    assert_eq!(list["items"][0]["builtin"], true);
    assert_eq!(list["items"][2]["permissions"], json!([]));

    let app = &app;
    let put = |name: &'static str, body: Value| async move {
        let path = format!("/api/v1/admin/roles/{name}");
        call(app, Method::PUT, &path, token, Some(body)).await
    };
    let updated = ok_json(
        put("auditor", json!({"permissions": ["audit:read"]})).await,
        200,
    )
    .await;
    assert_eq!(updated["permissions"], json!(["audit:read"]));
    for builtin in ["admin", "user"] {
        let body = problem(put(builtin, json!({"permissions": []})).await, 409).await;
        assert_eq!(slug(&body), "builtin-role");
        let response = call(
            app,
            Method::DELETE,
            &format!("/api/v1/admin/roles/{builtin}"),
            token,
            None,
        )
        .await;
        assert_eq!(slug(&problem(response, 409).await), "builtin-role");
    }
    let response = call(
        app,
        Method::DELETE,
        "/api/v1/admin/roles/auditor",
        token,
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    problem(put("auditor", json!({"permissions": []})).await, 404).await;
    let response = call(
        app,
        Method::DELETE,
        "/api/v1/admin/roles/auditor",
        token,
        None,
    )
    .await;
    problem(response, 404).await;
}

#[tokio::test]
async fn every_admin_write_is_audited_with_its_actor() {
    let app = spawn_app().await;
    let (root_id, root) = admin(&app, "root@example.com").await;
    let (id, _) = user(&app, "ada@example.com", None).await;
    let token = &root.access_token;
    ok_json(
        patch(
            &app,
            token,
            &id,
            json!({"name": "Ada", "email": "ada2@example.com"}),
        )
        .await,
        200,
    )
    .await;
    ok_json(
        patch(&app, token, &id, json!({"disabled": true})).await,
        200,
    )
    .await;
    ok_json(
        patch(&app, token, &id, json!({"disabled": false})).await,
        200,
    )
    .await;
    ok_json(
        patch(&app, token, &id, json!({"roles": ["user", "admin"]})).await,
        200,
    )
    .await;
    let revoke = format!("/api/v1/admin/users/{id}/sessions/revoke");
    assert_eq!(
        call(&app, Method::POST, &revoke, token, None)
            .await
            .status(),
        204
    );
    let role = json!({"name": "ops", "permissions": []});
    assert_eq!(
        call(&app, Method::POST, "/api/v1/admin/roles", token, Some(role))
            .await
            .status(),
        201
    );
    let perms = json!({"permissions": ["audit:read"]});
    assert_eq!(
        call(
            &app,
            Method::PUT,
            "/api/v1/admin/roles/ops",
            token,
            Some(perms)
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        call(&app, Method::DELETE, "/api/v1/admin/roles/ops", token, None)
            .await
            .status(),
        204
    );
    // A refused change leaves no entry.
    problem(
        patch(&app, token, &id, json!({"email": "root@example.com"})).await,
        409,
    )
    .await;

    let page = audit(&app, token, &format!("actor={root_id}&per_page=200")).await;
    let mine: Vec<&str> = actions(&page)
        .into_iter()
        .filter(|a| *a != "login")
        .collect();
    assert_eq!(
        mine,
        [
            "role_deleted",
            "role_updated",
            "role_created",
            "sessions_revoked",
            "role_changed",
            "user_enabled",
            "user_disabled",
            "user_updated",
            "signup"
        ]
    );
    for entry in page["items"].as_array().unwrap() {
        assert_eq!(entry["actor_id"], root_id.as_str());
        assert!(entry["ip"].is_string(), "{entry}");
    }
    let changed = &page["items"][4];
    assert_eq!(changed["target_type"], "user");
    assert_eq!(changed["target_id"], id.as_str());
    assert_eq!(changed["details"]["added"], json!(["admin"]));
    assert_eq!(
        page["items"][7]["details"]["fields"],
        json!(["name", "email"])
    );
    assert_eq!(page["items"][0]["target_id"], "ops");
}

#[tokio::test]
async fn the_audit_query_filters_by_actor_action_and_time_newest_first() {
    let app = spawn_app().await;
    let (root_id, root) = admin(&app, "root@example.com").await;
    let token = &root.access_token;
    let (ada, _) = user(&app, "ada@example.com", None).await;
    assert_eq!(
        app.login("ada@example.com", "wrong password!")
            .await
            .status(),
        401
    );

    let all = audit(&app, token, "").await;
    let total = all["total"].as_i64().unwrap();
    assert_eq!(total, all["items"].as_array().unwrap().len() as i64);
    assert_eq!(actions(&all)[0], "login_failed");
    let ats: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    // Newest first, compared as times (the fraction's length varies).
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    for pair in ats.windows(2) {
        assert!(parse(pair[0]) >= parse(pair[1]), "{pair:?}");
    }

    let signups = audit(&app, token, "action=signup").await;
    assert_eq!(actions(&signups), ["signup", "signup"]);
    assert_eq!(signups["items"][0]["target_id"], ada.as_str());

    let by_root = audit(&app, token, &format!("actor={root_id}")).await;
    assert!(
        by_root["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor_id"] == root_id.as_str())
    );
    assert!(by_root["total"].as_i64().unwrap() >= 2);

    // [since, until): an entry's own time is inside from it and outside until it.
    let failed_at = all["items"][0]["at"].as_str().unwrap().to_string();
    let enc = |s: &str| s.replace('+', "%2B");
    let since = audit(&app, token, &format!("since={}", enc(&failed_at))).await;
    assert_eq!(actions(&since), ["login_failed"]);
    let until = audit(&app, token, &format!("until={}", enc(&failed_at))).await;
    assert_eq!(until["total"].as_i64().unwrap(), total - 1);
    assert!(!actions(&until).contains(&"login_failed"));
    let none = audit(&app, token, "until=2000-01-01T00:00:00Z").await;
    assert_eq!(none["total"], 0);

    let page2 = audit(&app, token, "per_page=1&page=2").await;
    assert_eq!(page2["items"][0]["id"], all["items"][1]["id"]);
    assert_eq!(page2["total"], total);

    for (q, field) in [
        ("actor=someone", "actor"),
        ("since=yesterday", "since"),
        ("until=2024-13-01T00:00:00Z", "until"),
        ("action=Login!", "action"),
        ("per_page=500", "per_page"),
    ] {
        let response = call(
            &app,
            Method::GET,
            &format!("/api/v1/admin/audit?{q}"),
            token,
            None,
        )
        .await;
        let body = problem(response, 400).await;
        assert_eq!(body["errors"][0]["field"], field, "{q}");
    }
}

/// Gives `id` a new custom role `name` with `permissions`, as the admin `token`.
async fn grant_custom_role(app: &TestApp, token: &str, id: &str, name: &str, permissions: Value) {
    let created = call(
        app,
        Method::POST,
        "/api/v1/admin/roles",
        token,
        Some(json!({"name": name, "permissions": permissions})),
    )
    .await;
    assert_eq!(created.status(), 201);
    ok_json(
        patch(app, token, id, json!({"roles": ["user", name]})).await,
        200,
    )
    .await;
}

#[tokio::test]
async fn roles_write_cannot_grant_permissions_its_holder_lacks() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let (keeper_id, keeper) = user(&app, "keeper@example.com", None).await;
    grant_custom_role(
        &app,
        &root.access_token,
        &keeper_id,
        "keeper",
        json!(["roles:read", "roles:write"]),
    )
    .await;
    let k = &keeper.access_token;

    // Widening its own role would make it anything it likes (users:write, then admin).
    let widened = call(
        &app,
        Method::PUT,
        "/api/v1/admin/roles/keeper",
        k,
        Some(json!({"permissions": ["roles:read", "roles:write", "users:write"]})),
    )
    .await;
    assert_eq!(slug(&problem(widened, 403).await), "forbidden");
    let created = call(
        &app,
        Method::POST,
        "/api/v1/admin/roles",
        k,
        Some(json!({"name": "mighty", "permissions": ["users:write", "keys:rotate"]})),
    )
    .await;
    assert_eq!(slug(&problem(created, 403).await), "forbidden");
    problem(
        call(&app, Method::GET, "/api/v1/admin/users", k, None).await,
        403,
    )
    .await;

    // What it holds itself it may hand out.
    let created = call(
        &app,
        Method::POST,
        "/api/v1/admin/roles",
        k,
        Some(json!({"name": "viewer", "permissions": ["roles:read"]})),
    )
    .await;
    assert_eq!(created.status(), 201);
    let list = ok_json(
        call(&app, Method::GET, "/api/v1/admin/roles", k, None).await,
        200,
    )
    .await;
    let keeper_role = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "keeper")
        .unwrap();
    assert_eq!(
        keeper_role["permissions"],
        json!(["roles:read", "roles:write"])
    );
}

#[tokio::test]
async fn users_write_cannot_assign_or_remove_a_role_beyond_its_holders_permissions() {
    let app = spawn_app().await;
    let (root_id, root) = admin(&app, "root@example.com").await;
    let (support_id, support) = user(&app, "support@example.com", None).await;
    let (other_id, _) = user(&app, "other@example.com", None).await;
    grant_custom_role(
        &app,
        &root.access_token,
        &support_id,
        "support",
        json!(["users:read", "users:write"]),
    )
    .await;
    let s = &support.access_token;

    for (id, roles) in [
        (&support_id, json!(["user", "support", "admin"])),
        (&other_id, json!(["user", "admin"])),
        (&root_id, json!(["user"])),
    ] {
        let body = problem(patch(&app, s, id, json!({ "roles": roles })).await, 403).await;
        assert_eq!(slug(&body), "forbidden", "{roles}");
    }
    let me: Value = app.me(s).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["support", "user"]));
    let root_now = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/admin/users/{root_id}"),
            s,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(root_now["roles"], json!(["admin", "user"]));

    // Roles within its own permissions it may assign.
    let other = ok_json(
        patch(&app, s, &other_id, json!({"roles": ["user", "support"]})).await,
        200,
    )
    .await;
    assert_eq!(other["roles"], json!(["support", "user"]));
}

#[tokio::test]
async fn users_write_cannot_act_on_an_account_holding_permissions_its_holder_lacks() {
    let app = spawn_app().await;
    let (root_id, root) = admin(&app, "root@example.com").await;
    let (second_id, second) = admin(&app, "second@example.com").await;
    let (support_id, support) = user(&app, "support@example.com", None).await;
    let (plain_id, _) = user(&app, "plain@example.com", None).await;
    grant_custom_role(
        &app,
        &root.access_token,
        &support_id,
        "support",
        json!(["users:read", "users:write"]),
    )
    .await;
    let s = &support.access_token;

    for body in [
        json!({"disabled": true}),
        json!({"email": "support+takeover@example.com"}),
        json!({"name": "pwned"}),
    ] {
        let answer = problem(patch(&app, s, &root_id, body.clone()).await, 403).await;
        assert_eq!(slug(&answer), "forbidden", "{body}");
    }
    let revoke = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/users/{second_id}/sessions/revoke"),
        s,
        None,
    )
    .await;
    problem(revoke, 403).await;
    let delete = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/users/{second_id}"),
        s,
        None,
    )
    .await;
    problem(delete, 403).await;

    // The admins are untouched and still signed in.
    let root_now = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/admin/users/{root_id}"),
            &root.access_token,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(root_now["email"], "root@example.com");
    assert_eq!(root_now["name"], Value::Null);
    assert_eq!(root_now["disabled"], false);
    assert_eq!(app.me(&second.access_token).await.status(), 200);

    // Accounts within its own permissions it manages as before.
    let plain = ok_json(
        patch(
            &app,
            s,
            &plain_id,
            json!({"name": "Plain", "disabled": true}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(plain["disabled"], true);
    let delete = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/users/{plain_id}"),
        s,
        None,
    )
    .await;
    assert_eq!(delete.status(), 204);
}

#[tokio::test]
async fn a_search_with_a_control_character_is_a_400_naming_q() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let t = &root.access_token;
    // PostgreSQL refuses a NUL in text outright: that was a 500.
    for q in ["%00", "a%00b", "ro%07"] {
        let path = format!("/api/v1/admin/users?q={q}");
        let body = problem(call(&app, Method::GET, &path, t, None).await, 400).await;
        assert_eq!(body["errors"][0]["field"], "q", "{q}");
    }
    for path in [
        "/api/v1/admin/users?q=%5C",
        "/api/v1/admin/users?q=%FF%FE",
        "/api/v1/admin/users?page=2147483647&per_page=200",
        "/api/v1/admin/audit?page=2147483647&per_page=200",
        "/api/v1/admin/audit?since=9999-12-31T23:59:59Z&until=0000-01-01T00:00:00Z",
    ] {
        let r = call(&app, Method::GET, path, t, None).await;
        assert_eq!(r.status(), 200, "{path}");
    }
}

/// Live sessions of account `id`, straight from the database.
async fn live_sessions(app: &TestApp, id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(id)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_login_racing_a_disable_does_not_leave_the_disabled_account_a_session() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let t = &root.access_token;
    // The disable lands at different points of the login's password check. A fresh account
    // each time, so that one refused login's backoff does not answer the next.
    for delay_ms in [0u64, 1, 2, 4, 8, 12, 16, 24, 32, 48] {
        let email = format!("racer{delay_ms}@example.com");
        let (id, _) = user(&app, &email, None).await;
        let (login, disabled) = tokio::join!(app.login(&email, PASSWORD), async {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            patch(&app, t, &id, json!({"disabled": true})).await
        });
        assert_eq!(disabled.status(), 200);
        let status = login.status().as_u16();
        assert!(status == 200 || status == 401, "login answered {status}");
        if status == 200 {
            let pair: TokenPair = login.json().await.unwrap();
            problem(app.me(&pair.access_token).await, 401).await;
        }
        assert_eq!(
            live_sessions(&app, &id).await,
            0,
            "a disabled account kept a session (disable after {delay_ms} ms)"
        );
    }
}

#[tokio::test]
async fn a_login_racing_an_erasure_is_refused_not_a_server_error() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let t = &root.access_token;
    for delay_ms in [0u64, 1, 2, 4, 8, 12, 16, 24, 32, 48] {
        let email = format!("gone{delay_ms}@example.com");
        let (id, _) = user(&app, &email, None).await;
        let (login, erased) = tokio::join!(app.login(&email, PASSWORD), async {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            call(
                &app,
                Method::DELETE,
                &format!("/api/v1/admin/users/{id}"),
                t,
                None,
            )
            .await
        });
        assert_eq!(erased.status(), 204);
        let status = login.status().as_u16();
        assert!(
            status == 200 || status == 401,
            "login answered {status} (erasure after {delay_ms} ms)"
        );
        if status == 200 {
            let pair: TokenPair = login.json().await.unwrap();
            problem(app.me(&pair.access_token).await, 401).await;
        }
        assert_eq!(live_sessions(&app, &id).await, 0);
        let kept: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE (actor_id = $1 OR target_id = $1) AND action <> 'user_erased' AND (ip IS NOT NULL OR user_agent IS NOT NULL OR personal IS NOT NULL)",
        )
        .bind(&id)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
        assert_eq!(
            kept, 0,
            "an entry about {id} kept an address (erasure after {delay_ms} ms)"
        );
    }
}

#[tokio::test]
async fn a_cli_disable_ends_the_sessions_of_a_running_service_as_documented() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "cli-off@example.com", None).await;
    assert_eq!(app.me(&tokens.access_token).await.status(), 200);
    let (ok, out, err) = app
        .cli(&["user", "disable", "--email", "cli-off@example.com"])
        .await;
    assert!(ok, "{out}{err}");
    if app.state.store.backend() == portvakt::store::Backend::Postgres {
        // Announced to every instance: at once.
        let ended = crate::helpers::eventually(std::time::Duration::from_millis(500), || async {
            app.me(&tokens.access_token).await.status() == 401
        })
        .await;
        assert!(ended, "the token still works after a CLI disable");
    } else {
        // Another process: the running service notices within its cache lifetime (5 s).
        let ended = crate::helpers::eventually(std::time::Duration::from_secs(7), || async {
            app.me(&tokens.access_token).await.status() == 401
        })
        .await;
        assert!(ended, "the token still works after the cache lifetime");
    }
}

#[tokio::test]
async fn cli_set_role_without_roles_is_refused_rather_than_stripping_every_role() {
    let app = spawn_app().await;
    let (id, _) = admin(&app, "first@example.com").await;
    admin(&app, "second@example.com").await;
    let (ok, out, err) = app
        .cli(&["user", "set-role", "--email", "first@example.com"])
        .await;
    assert!(!ok, "set-role without --roles succeeded: {out}");
    assert!(err.contains("--roles"), "{err}");
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
            .bind(&id)
            .fetch_all(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(roles, ["admin", "user"]);
}

#[tokio::test]
async fn assigning_a_role_while_it_is_deleted_is_not_a_server_error() {
    let app = spawn_app().await;
    let (_, root) = admin(&app, "root@example.com").await;
    let t = &root.access_token;
    let (id, _) = user(&app, "holder@example.com", None).await;
    for round in 0..15u64 {
        let created = call(
            &app,
            Method::POST,
            "/api/v1/admin/roles",
            t,
            Some(json!({"name": "fleeting", "permissions": ["users:read"]})),
        )
        .await;
        assert_eq!(created.status(), 201);
        let (assigned, deleted) = tokio::join!(
            patch(&app, t, &id, json!({"roles": ["user", "fleeting"]})),
            async {
                tokio::time::sleep(std::time::Duration::from_micros(round * 300)).await;
                call(
                    &app,
                    Method::DELETE,
                    "/api/v1/admin/roles/fleeting",
                    t,
                    None,
                )
                .await
            }
        );
        assert_eq!(deleted.status(), 204);
        let status = assigned.status().as_u16();
        assert!(
            status == 200 || status == 400,
            "assignment answered {status} (round {round})"
        );
        ok_json(patch(&app, t, &id, json!({"roles": ["user"]})).await, 200).await;
    }
}

/// A name is found by its own spelling whatever its letters, on both backends: SQLite folds
/// only ASCII, but the exact case must still match; PostgreSQL folds the query as it folds
/// the names (`lower`), so final sigma and dotted capital I match too.
#[tokio::test]
async fn names_outside_ascii_are_found_by_their_own_spelling() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let accounts: Vec<(String, String, Option<String>)> = [
        ("asa@example.com", "Åsa Öberg"),
        ("orjan@example.com", "Örjan Ängel"),
        ("odysseas@example.com", "ΟΔΥΣΣΕΑΣ Παπάς"),
        ("ilker@example.com", "İlker Yılmaz"),
    ]
    .iter()
    .map(|(e, n)| {
        (
            portvakt::accounts::UserId::new().to_string(),
            e.to_string(),
            Some(n.to_string()),
        )
    })
    .collect();
    insert_accounts(&app, &accounts).await;
    for (q, email) in [
        ("%C3%85sa", "asa@example.com"),
        ("%C3%85SA", "asa@example.com"),
        ("%C3%96rjan%20%C3%84", "orjan@example.com"),
        ("%CE%9F%CE%94%CE%A5%CE%A3", "odysseas@example.com"),
        (
            "%CE%9F%CE%94%CE%A5%CE%A3%CE%A3%CE%95%CE%91%CE%A3",
            "odysseas@example.com",
        ),
        ("%C4%B0lker", "ilker@example.com"),
    ] {
        let url = format!("/api/v1/admin/users?q={q}");
        let page = ok_json(
            call(&app, Method::GET, &url, &root.access_token, None).await,
            200,
        )
        .await;
        assert_eq!(emails(&page), [email], "q={q}: {page}");
        assert_eq!(page["total"], 1, "q={q}");
    }
}

/// docs/api.md: "no or bad token 401, missing permission 403, then 404 for an unknown or
/// malformed id or role name, then 400 for the body or query". A well-formed id or name of
/// nothing is a 404 whatever the body, as a malformed one is.
#[tokio::test]
async fn an_unknown_user_or_role_is_a_404_before_the_body_is_judged() {
    let app = spawn_app().await;
    let root = app.admin("root@example.com").await;
    let token = &root.access_token;
    let nobody = portvakt::accounts::UserId::new().to_string();
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{nobody}"),
            json!({"bogus": 1}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{nobody}"),
            json!({"email": "not an email"}),
        ),
        (
            Method::PUT,
            "/api/v1/admin/roles/ghost".to_string(),
            json!({"permissions": ["nope"]}),
        ),
        (
            Method::PUT,
            "/api/v1/admin/roles/ghost".to_string(),
            json!({"perms": []}),
        ),
    ] {
        let response = call(&app, method.clone(), &path, token, Some(body.clone())).await;
        let problem = problem(response, 404).await;
        assert_eq!(slug(&problem), "not-found", "{method} {path} {body}");
    }
}

/// On a PostgreSQL database whose default collation is not byte order (ICU or glibc locales,
/// the usual production setting), an account found by both email and name is still placed by
/// the byte-wise smaller of the two texts, as docs/api.md says and the merge relies on.
#[tokio::test]
async fn search_order_is_byte_order_on_a_database_with_a_language_collation() {
    use sqlx::Connection;
    let Ok(admin_url) = std::env::var("PORTVAKT_TEST_DATABASE_URL") else {
        crate::helpers::skipped(
            "search_order_is_byte_order_on_a_database_with_a_language_collation",
            "PostgreSQL only",
        );
        return;
    };
    let name = format!("pv_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let created = sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'"#
    )))
    .execute(&mut conn)
    .await;
    if let Err(e) = created {
        // PostgreSQL before 15, or built without ICU.
        crate::helpers::skipped(
            "search_order_is_byte_order_on_a_database_with_a_language_collation",
            &format!("no ICU database: {e}"),
        );
        return;
    }
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&name);
    let db = crate::helpers::TestDatabase::Postgres {
        admin_url,
        name,
        url: url.to_string(),
    };
    let app = crate::helpers::spawn_app_on(db, &[]).await;
    let root = app.admin("root@example.com").await;
    // "ann1" < "ann2@…" < "ann_x@…" byte-wise ('1' < '2' < '_'); English collation puts `_`
    // before digits, so it found "ann_x@…" the smaller key of the first account.
    let accounts = vec![
        (
            portvakt::accounts::UserId::new().to_string(),
            "ann_x@example.com".to_string(),
            Some("Ann1".to_string()),
        ),
        (
            portvakt::accounts::UserId::new().to_string(),
            "ann2@example.com".to_string(),
            None,
        ),
    ];
    insert_accounts(&app, &accounts).await;
    let page = ok_json(
        call(
            &app,
            Method::GET,
            "/api/v1/admin/users?q=ann",
            &root.access_token,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(emails(&page), ["ann_x@example.com", "ann2@example.com"]);
    // Page by page, each account once: the first page read only the name of the first account
    // and placed it by that, the second read both and placed it by its email.
    let mut listed = Vec::new();
    for n in 1..=2 {
        let url = format!("/api/v1/admin/users?q=ann&per_page=1&page={n}");
        let page = ok_json(
            call(&app, Method::GET, &url, &root.access_token, None).await,
            200,
        )
        .await;
        listed.extend(emails(&page).iter().map(|e| e.to_string()));
    }
    assert_eq!(listed, ["ann_x@example.com", "ann2@example.com"]);
}
