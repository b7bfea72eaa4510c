//! Every error is problem+json with a request id, including the ones the framework makes.

use reqwest::StatusCode;

use crate::helpers::{problem, slug, spawn_app, spawn_app_with};

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_minted_otherwise() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-abc.123_x")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-abc.123_x");
    for bad in ["has spaces", "semi;colon", &"a".repeat(129)] {
        let fresh = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = fresh.headers()["x-request-id"].to_str().unwrap();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{bad} replaced by a UUID, got {id}"
        );
    }
    let minted = app.client.get(app.url("/health")).send().await.unwrap();
    assert!(uuid::Uuid::parse_str(minted.headers()["x-request-id"].to_str().unwrap()).is_ok());
}

#[tokio::test]
async fn unknown_paths_are_404_problems() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .header("x-request-id", "req-404")
        .send()
        .await
        .unwrap();
    let body = problem(response, 404).await;
    assert_eq!(body["request_id"], "req-404");
}

#[tokio::test]
async fn wrong_methods_are_405_problems_with_allow() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    problem(response, 405).await;
}

#[tokio::test]
async fn malformed_json_is_a_400_without_field_errors() {
    let app = spawn_app().await;
    for body in [
        "{\"email\": ",
        "not json",
        "[1, 2]",
        "{\"email\":\"a@b.co\",\"password\":\"x\"} trailing",
        "\u{feff}{}",
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/users"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = problem(response, 400).await;
        assert!(p.get("errors").is_none(), "{body}: {p}");
        assert_eq!(slug(&p), "malformed-request");
    }
}

#[tokio::test]
async fn non_json_bodies_are_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "text/plain")
        .body(r#"{"email":"a@b.co","password":"x"}"#)
        .send()
        .await
        .unwrap();
    problem(response, 415).await;
    let none = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .body(r#"{"email":"a@b.co","password":"x"}"#)
        .send()
        .await
        .unwrap();
    problem(none, 415).await;
    let form = app
        .client
        .post(app.url("/api/v1/users"))
        .form(&[("email", "a@b.co")])
        .send()
        .await
        .unwrap();
    problem(form, 415).await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = spawn_app_with(&[("max_body_bytes", "2048")]).await;
    let big = format!(r#"{{"email":"a@b.co","password":"{}"}}"#, "x".repeat(4096));
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    problem(response, 413).await;
    // Without a Content-Length the limit still holds while streaming.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    problem(response, 413).await;
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_name_the_field_without_echoing_it() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/users",
            &serde_json::json!({ "email": "a@b.co", "password": 1234567890123u64 }),
        )
        .await;
    let body = problem(response, 400).await;
    assert_eq!(body["errors"][0]["field"], "password");
    assert!(!body.to_string().contains("1234567890123"), "{body}");
    let response = app
        .post_json(
            "/api/v1/users",
            &serde_json::json!({ "email": "a@b.co", "password": "x", "is_admin": true }),
        )
        .await;
    let body = problem(response, 400).await;
    assert_eq!(body["errors"][0]["field"], "is_admin");
}

#[tokio::test]
async fn problem_bodies_carry_no_internals() {
    let app = spawn_app().await;
    let response = app.login("nobody@example.com", "irrelevant password").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let text = response.text().await.unwrap();
    for leak in ["argon2", "sqlx", "SELECT", "src/", "panicked"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[tokio::test]
async fn a_server_error_is_an_opaque_problem_with_its_cause_kept_out() {
    let app = spawn_app().await;
    app.signup("broken@example.com", crate::helpers::PASSWORD)
        .await;
    // Break the database under the running service: logins can no longer store sessions.
    sqlx::query("DROP TABLE refresh_tokens")
        .execute(app.state.store.pool())
        .await
        .unwrap();
    let response = app
        .login("broken@example.com", crate::helpers::PASSWORD)
        .await;
    let body = problem(response, 500).await;
    assert_eq!(slug(&body), "internal");
    let text = body.to_string();
    for leak in [
        "refresh_tokens",
        "no such table",
        "does not exist",
        "sqlx",
        "INSERT",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    // Nothing was half-written: the failed login left no session behind.
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn a_locked_database_is_a_503_to_retry_not_a_500() {
    let app = spawn_app_with(&[("db_busy_timeout", "100ms")]).await;
    if app.state.store.backend() != portvakt::store::Backend::Sqlite {
        crate::helpers::skipped(
            "a_locked_database_is_a_503_to_retry_not_a_500",
            "holds SQLite's write lock",
        );
        return;
    }
    // Another writer holds the database lock longer than the busy timeout.
    let mut blocker = app.state.store.pool().acquire().await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let response = app
        .signup("locked@example.com", crate::helpers::PASSWORD)
        .await;
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(slug(&problem(response, 503).await), "unavailable");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *blocker)
        .await
        .unwrap();
    drop(blocker);
    assert_eq!(
        app.signup("locked@example.com", crate::helpers::PASSWORD)
            .await
            .status(),
        StatusCode::CREATED
    );
}
