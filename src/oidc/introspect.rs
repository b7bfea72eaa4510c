//! `POST /oauth2/introspect` (RFC 7662): for authenticated confidential clients. Any of our
//! live access tokens (a user's or a client's) is described; refresh tokens only to the
//! client that holds them. Everything else is `{"active": false}`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::access::{self, Live};
use super::client_auth;
use super::oauth::{ErrorBody, OAuthError, Params, json_no_store};
use crate::app::AppState;
use crate::auth::sessions;
use crate::auth::tokens::Audience;

/// RFC 7662 §2.2.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// A string, or an array of strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    /// The session (or grant session) of the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// RFC 7662 §2.1 form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form `Params` reads
struct IntrospectForm {
    token: String,
    /// `access_token` or `refresh_token`; a hint only, both are tried.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Whether a token is active, and what it says.
#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth2",
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses(
        (status = 200, description = "The token's state; `{\"active\": false}` for anything not live or not the caller's to see.", body = Introspection),
        (status = 400, description = "`invalid_request`: no `token`, or a bad body.", body = ErrorBody),
        (status = 401, description = "`invalid_client`: authentication failed, or a public client.", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`.", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn introspect(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = async {
        let params = Params::from_form(&headers, &body)?;
        let client = client_auth::authenticate(&app, &headers, &params).await?;
        if !client.spec.token_endpoint_auth_method.is_confidential() {
            return Err(OAuthError::invalid_client());
        }
        let token = params.require("token")?;
        if let Some(live) = access::verify(&app, token).await? {
            return Ok(describe(live));
        }
        let mut conn = app.store.pool().acquire().await?;
        let holder = client.client_id.to_string();
        if let Some(grant) = sessions::find_by_refresh(&mut conn, token, &holder).await? {
            return Ok(Introspection {
                active: true,
                scope: grant.scope,
                client_id: Some(holder),
                token_type: Some("refresh_token".into()),
                exp: Some(grant.expires_at.div_euclid(1_000_000)),
                sub: Some(grant.user_id.to_string()),
                iss: Some(app.config.issuer.clone()),
                sid: Some(grant.id.to_string()),
                ..Introspection::default()
            });
        }
        Ok(Introspection::default())
    };
    match answer.await {
        Ok(body) => json_no_store(&body),
        Err(e) => e.into_response(),
    }
}

fn describe(live: Live) -> Introspection {
    match live {
        Live::User(c) => Introspection {
            active: true,
            token_type: Some("Bearer".into()),
            exp: Some(c.exp),
            iat: Some(c.iat),
            nbf: Some(c.nbf),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            jti: Some(c.jti),
            sid: Some(c.sid),
            ..Introspection::default()
        },
        Live::Grant(c, _) | Live::Client(c) => Introspection {
            active: true,
            scope: Some(c.scope),
            client_id: Some(c.client_id),
            token_type: Some("Bearer".into()),
            exp: Some(c.exp),
            iat: Some(c.iat),
            nbf: Some(c.nbf),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            jti: Some(c.jti),
            sid: c.sid,
        },
    }
}
