//! `GET`/`POST /oauth2/userinfo` (OIDC Core §5.3): the claims the grant's scope allows, for
//! a client's access token whose grant is alive and has `openid`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::access::{self, Live};
use super::oauth::{ErrorBody, OAuthError, Params, json_no_store};
use crate::app::AppState;

/// OIDC Core §5.1 standard claims we know.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    /// The user id, as `sub` of the ID token.
    sub: String,
    /// With `profile`, when the user gave a name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// With `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
}

/// RFC 6750 §2.2 form body of the POST variant.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form `Params` reads
struct UserInfoForm {
    /// The access token, when not in the `Authorization` header.
    access_token: Option<String>,
}

/// The signed-in user's claims.
#[utoipa::path(get, path = "/oauth2/userinfo", tag = "oauth2",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Claims allowed by the grant's scope.", body = UserInfo),
        (status = 400, description = "`invalid_request`: the token sent twice, or a bad body.", body = ErrorBody),
        (status = 401, description = "`invalid_token`: missing, unknown, expired or revoked token, or not a client's token for a user.", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: the grant lacks `openid`.", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`.", body = ErrorBody),
    ))]
pub async fn userinfo_get(State(app): State<AppState>, headers: HeaderMap) -> Response {
    answer(&app, &Method::GET, &headers, &Bytes::new()).await
}

/// The signed-in user's claims (token in the header or the form).
#[utoipa::path(post, path = "/oauth2/userinfo", tag = "oauth2",
    security(("bearer" = []), ()),
    request_body(content = UserInfoForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Claims allowed by the grant's scope.", body = UserInfo),
        (status = 400, description = "`invalid_request`: the token sent twice, or a bad body.", body = ErrorBody),
        (status = 401, description = "`invalid_token`: missing, unknown, expired or revoked token, or not a client's token for a user.", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: the grant lacks `openid`.", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`.", body = ErrorBody),
    ))]
pub async fn userinfo_post(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&app, &Method::POST, &headers, &body).await
}

#[tracing::instrument(skip_all)]
async fn answer(app: &AppState, method: &Method, headers: &HeaderMap, body: &Bytes) -> Response {
    match claims(app, method, headers, body).await {
        Ok(info) => json_no_store(&info),
        Err(e) => e.into_response(),
    }
}

fn no_token() -> OAuthError {
    OAuthError {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_token",
        description: "An access token is required.".into(),
        challenge: Some("Bearer realm=\"portvakt\""),
    }
}

async fn claims(
    app: &AppState,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<UserInfo, OAuthError> {
    let from_header = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().map_err(|_| OAuthError::invalid_token())?;
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(token.trim().to_string())
                }
                _ => return Err(OAuthError::invalid_token()),
            }
        }
        None => None,
    };
    let from_form = if method == Method::POST {
        Params::from_form(headers, body)?
            .get("access_token")
            .map(str::to_string)
    } else {
        None
    };
    // RFC 6750 §2: one method per request.
    let token = match (from_header, from_form) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "Send the access token once, in the header or the body.",
            ));
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return Err(no_token()),
    };
    let Some(Live::Grant(claims, session)) = access::verify(app, &token).await? else {
        return Err(OAuthError::invalid_token());
    };
    let scopes: Vec<&str> = claims.scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return Err(OAuthError {
            status: StatusCode::FORBIDDEN,
            error: "insufficient_scope",
            description: "The access token lacks the openid scope.".into(),
            challenge: Some("Bearer error=\"insufficient_scope\", scope=\"openid\""),
        });
    }
    let Some(user) = crate::accounts::store::find_by_id(app.store.pool(), session.user_id).await?
    else {
        return Err(OAuthError::invalid_token());
    };
    if user.disabled_at.is_some() {
        return Err(OAuthError::invalid_token());
    }
    let email = scopes.contains(&"email");
    Ok(UserInfo {
        sub: user.id.to_string(),
        name: if scopes.contains(&"profile") {
            user.name.clone()
        } else {
            None
        },
        email: email.then(|| user.email.clone()),
        email_verified: email.then_some(user.email_verified_at.is_some()),
    })
}
