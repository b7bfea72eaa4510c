//! Access tokens: their claims, the JWKS that verifies them, and every way a bad one is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{problem, spawn_app, spawn_app_with};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let header =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    let claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (header, claims, it.next().unwrap().to_string())
}

#[tokio::test]
async fn access_tokens_verify_against_the_published_jwks() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let jwks = app
        .client
        .get(app.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
    assert!(
        jwks.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let jwks: JwkSet = jwks.json().await.unwrap();

    let header = jsonwebtoken::decode_header(&pair.access_token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("the token's key is published");
    let mut validation = Validation::new(Algorithm::EdDSA);
    let issuer = app.state.config.issuer.clone();
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&[&issuer]);
    let data = jsonwebtoken::decode::<Value>(
        &pair.access_token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    let c = data.claims;
    assert_eq!(c["sid"], pair.session_id.as_str());
    assert_eq!(c["roles"], json!(["user"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    assert!(c["nbf"].is_i64() && c["jti"].is_string() && c["sub"].is_string());
    let me: Value = app.me(&pair.access_token).await.json().await.unwrap();
    assert_eq!(c["sub"], me["id"]);
}

#[tokio::test]
async fn a_missing_token_gets_a_plain_bearer_challenge() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, 401).await;
    let basic = app
        .client
        .get(app.url("/api/v1/users/me"))
        .basic_auth("a", Some("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.headers()["www-authenticate"], "Bearer");
    problem(basic, 401).await;
}

async fn assert_refused(app: &crate::helpers::TestApp, token: &str) {
    let response = app.me(token).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#,
        "token {token}"
    );
    problem(response, 401).await;
}

#[tokio::test]
async fn garbage_and_tampered_tokens_are_refused() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let (_, other) = app.new_user().await;
    // The genuine token is verified and cached first: forgeries sharing its signature must
    // not ride on that cache entry.
    assert_eq!(app.me(&pair.access_token).await.status(), StatusCode::OK);
    assert_refused(&app, "not-a-jwt").await;
    assert_refused(&app, "a.b.c").await;
    assert_refused(&app, &"x".repeat(5000)).await;

    // Same signature, claims changed to another user.
    let (header, mut claims, signature) = parts(&pair.access_token);
    let (_, victim, _) = parts(&other.access_token);
    claims["sub"] = victim["sub"].clone();
    assert_refused(
        &app,
        &format!("{}.{}.{}", b64(&header), b64(&claims), signature),
    )
    .await;

    // Roles escalated.
    let (header, mut claims, signature) = parts(&pair.access_token);
    claims["roles"] = json!(["admin"]);
    assert_refused(
        &app,
        &format!("{}.{}.{}", b64(&header), b64(&claims), signature),
    )
    .await;

    // A flipped signature bit.
    let mut bytes = URL_SAFE_NO_PAD.decode(&signature).unwrap();
    bytes[0] ^= 1;
    let (header, claims, _) = parts(&pair.access_token);
    assert_refused(
        &app,
        &format!(
            "{}.{}.{}",
            b64(&header),
            b64(&claims),
            URL_SAFE_NO_PAD.encode(bytes)
        ),
    )
    .await;

    // The original still works: the cache did not learn the forgeries.
    assert_eq!(app.me(&pair.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_tokens_are_refused() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let (mut header, claims, _) = parts(&pair.access_token);

    // alg=none, with and without a trailing signature.
    header["alg"] = json!("none");
    assert_refused(&app, &format!("{}.{}.", b64(&header), b64(&claims))).await;
    assert_refused(&app, &format!("{}.{}", b64(&header), b64(&claims))).await;

    // HS256 keyed with the public key (the classic algorithm confusion).
    let jwks: Value = app
        .client
        .get(app.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (orig_header, _, _) = parts(&pair.access_token);
    // The token's own key, among the keys of every algorithm.
    let x = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == orig_header["kid"])
        .and_then(|k| k["x"].as_str())
        .unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = orig_header["kid"].as_str().map(str::to_string);
    hs.typ = Some("at+jwt".into());
    let forged =
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(x.as_bytes())).unwrap();
    assert_refused(&app, &forged).await;

    // A different Ed25519 key claiming our kid.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let mut ed = Header::new(Algorithm::EdDSA);
    ed.kid = hs.kid.clone();
    ed.typ = Some("at+jwt".into());
    let forged =
        jsonwebtoken::encode(&ed, &claims, &EncodingKey::from_ed_der(pkcs8.as_ref())).unwrap();
    assert_refused(&app, &forged).await;
}

#[tokio::test]
async fn tokens_for_clients_or_other_audiences_are_refused() {
    let app = spawn_app().await;
    let (_, pair) = app.new_user().await;
    let (_, claims, _) = parts(&pair.access_token);
    let signer = app.state.keys.signer();
    let sign = |claims: &Value, typ: &str| {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(signer.kid.clone());
        h.typ = Some(typ.into());
        jsonwebtoken::encode(&h, claims, &signer.encoding).unwrap()
    };
    // Control: re-signing the same claims yields a token we accept.
    assert_eq!(
        app.me(&sign(&claims, "at+jwt")).await.status(),
        StatusCode::OK
    );

    let mut client = claims.clone();
    client["client_id"] = json!("some-client");
    assert_refused(&app, &sign(&client, "at+jwt")).await;

    let mut audience = claims.clone();
    audience["aud"] = json!("https://elsewhere.example");
    assert_refused(&app, &sign(&audience, "at+jwt")).await;

    let mut issuer = claims.clone();
    issuer["iss"] = json!("https://evil.example");
    assert_refused(&app, &sign(&issuer, "at+jwt")).await;

    // An ID-token-shaped JWT is not an access token.
    assert_refused(&app, &sign(&claims, "JWT")).await;

    let mut future = claims.clone();
    future["nbf"] = json!(claims["iat"].as_i64().unwrap() + 3600);
    assert_refused(&app, &sign(&future, "at+jwt")).await;

    let mut expired = claims.clone();
    expired["exp"] = json!(claims["iat"].as_i64().unwrap() - 1);
    assert_refused(&app, &sign(&expired, "at+jwt")).await;
}

#[tokio::test]
async fn access_tokens_expire_when_they_say() {
    let app = spawn_app_with(&[("access_token_ttl", "1s")]).await;
    let (_, pair) = app.new_user().await;
    assert_eq!(pair.expires_in, 1);
    assert_eq!(
        app.me(&pair.access_token).await.status(),
        StatusCode::OK,
        "valid and now cached"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_refused(&app, &pair.access_token).await;
    // The refresh token still gets a fresh access token.
    assert_eq!(
        app.refresh(&pair.refresh_token).await.status(),
        StatusCode::OK
    );
}
