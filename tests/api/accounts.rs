//! Signup and the profile.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, problem, slug, spawn_app};

#[tokio::test]
async fn signup_creates_a_user_with_the_user_role() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/users",
            &json!({ "email": "  Ada@Example.COM ", "password": PASSWORD, "name": "Ada Lovelace" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "Ada@Example.COM", "stored as given, trimmed");
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["roles"], json!(["user"]));
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["mfa_enabled"], false);
    let id = uuid::Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    for field in ["created_at", "updated_at"] {
        let t = user[field].as_str().unwrap();
        assert!(t.ends_with('Z'), "{field} is UTC: {t}");
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
    }
    assert!(user.get("password_hash").is_none() && !user.to_string().contains("argon2"));
}

#[tokio::test]
async fn name_is_null_when_not_given() {
    let app = spawn_app().await;
    let user: Value = app
        .signup("noname@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["name"], Value::Null);
}

#[tokio::test]
async fn a_taken_email_is_a_conflict_whatever_its_case() {
    let app = spawn_app().await;
    assert_eq!(
        app.signup("grace@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let body = problem(app.signup("GRACE@example.com", PASSWORD).await, 409).await;
    assert_eq!(slug(&body), "email-taken");
}

#[tokio::test]
async fn weak_passwords_are_refused_naming_the_rule() {
    let app = spawn_app().await;
    let short = problem(app.signup("a@example.com", "Tr0ub!e").await, 400).await;
    assert_eq!(short["errors"][0]["field"], "password");
    assert!(
        short["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at least 8"),
        "{short}"
    );

    let common = problem(app.signup("a@example.com", "password1234").await, 400).await;
    assert_eq!(common["errors"][0]["field"], "password");
    assert!(
        common["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too easy to guess"),
        "{common}"
    );

    let personal = problem(
        app.signup("margaret.hamilton@example.com", "margarethamilton1936")
            .await,
        400,
    )
    .await;
    assert_eq!(personal["errors"][0]["field"], "password");

    let long = problem(app.signup("a@example.com", &"Zq9!".repeat(33)).await, 400).await;
    assert!(
        long["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 128"),
        "{long}"
    );

    // Nothing was created along the way.
    assert_eq!(
        app.signup("a@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn every_invalid_field_is_reported_together() {
    let app = spawn_app().await;
    let body = problem(
        app.post_json(
            "/api/v1/users",
            &json!({ "email": "not-an-email", "password": "abc", "name": "x".repeat(201) }),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(slug(&body), "validation-failed");
    let mut fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["email", "name", "password"]);
}

#[tokio::test]
async fn password_length_counts_characters_not_bytes() {
    let app = spawn_app().await;
    // Seven characters in 21 bytes: too short, whatever the byte count says.
    let body = problem(
        app.signup("unicode@example.com", "ダイヤモンド龍").await,
        400,
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at least 8"),
        "{body}"
    );
}

#[tokio::test]
async fn the_profile_can_be_read_and_renamed() {
    let app = spawn_app().await;
    let (email, pair) = app.new_user().await;
    let me = app.me(&pair.access_token).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.headers()["cache-control"], "no-store");
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["email"], email.as_str());

    let renamed: Value = app
        .send(
            app.authed(Method::PATCH, "/api/v1/users/me", &pair.access_token)
                .json(&json!({ "name": "  Katherine Johnson " })),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Katherine Johnson");
    assert!(renamed["updated_at"].as_str().unwrap() >= me["updated_at"].as_str().unwrap());
    // Audited as API.md's `user_updated`, naming the field and never the name.
    let details: Vec<String> = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE action = 'user_updated' AND target_id = $1",
    )
    .bind(me["id"].as_str().unwrap())
    .fetch_all(app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(details.len(), 1, "{details:?}");
    assert!(details[0].contains("\"name\""), "{details:?}");
    assert!(!details[0].contains("Katherine"), "{details:?}");

    let cleared: Value = app
        .send(
            app.authed(Method::PATCH, "/api/v1/users/me", &pair.access_token)
                .json(&json!({ "name": null })),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["name"], Value::Null);
    let me_again: Value = app.me(&pair.access_token).await.json().await.unwrap();
    assert_eq!(
        me_again["name"],
        Value::Null,
        "a read right after the write sees it"
    );

    let unchanged: Value = app
        .send(
            app.authed(Method::PATCH, "/api/v1/users/me", &pair.access_token)
                .json(&json!({})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["email"], email.as_str());
}

#[tokio::test]
async fn the_profile_refuses_fields_it_does_not_own() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    for body in [
        json!({ "email": "other@example.com" }),
        json!({ "roles": ["admin"] }),
    ] {
        let response = app
            .send(
                app.authed(Method::PATCH, "/api/v1/users/me", &pair.access_token)
                    .json(&body),
            )
            .await;
        let p = problem(response, 400).await;
        assert!(
            p["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not an accepted field"),
            "{p}"
        );
    }
    let too_long = app
        .send(
            app.authed(Method::PATCH, "/api/v1/users/me", &pair.access_token)
                .json(&json!({ "name": "n".repeat(201) })),
        )
        .await;
    assert_eq!(problem(too_long, 400).await["errors"][0]["field"], "name");
    let wrong_type = app
        .send(
            app.authed(Method::PATCH, "/api/v1/users/me", &pair.access_token)
                .json(&json!({ "name": 42 })),
        )
        .await;
    assert_eq!(problem(wrong_type, 400).await["errors"][0]["field"], "name");
}
