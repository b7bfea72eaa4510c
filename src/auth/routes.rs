//! `/api/v1/auth/*` and `/api/v1/users/me/sessions`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Caller;
use super::service::{self, Ending};
use super::sessions;
use crate::accounts::Email;
use crate::accounts::routes::no_store;
use crate::app::AppState;
use crate::error::{AppError, FieldError};
use crate::http::{AuthRateLimit, ClientInfo, Json};
use crate::store::rfc3339;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/users/me/sessions", get(list_sessions))
        .route("/api/v1/users/me/sessions/{id}", delete(revoke_session))
}

/// Longest password accepted at login. Longer input cannot be anyone's password (signup
/// allows 128 characters), but it is still checked against a hash so the answer looks alike.
const MAX_LOGIN_PASSWORD_CHARS: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

async fn login(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<LoginRequest>,
) -> Result<impl IntoResponse, AppError> {
    let mut errors = Vec::new();
    let email = Email::parse(&req.email)
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok();
    if req.password.is_empty() {
        errors.push(FieldError::new("password", "must not be empty"));
    } else if req.password.chars().count() > MAX_LOGIN_PASSWORD_CHARS {
        errors.push(FieldError::new("password", "is too long"));
    }
    let (Some(email), true) = (email, errors.is_empty()) else {
        return Err(AppError::Invalid(errors));
    };
    let pair = service::login(&app, &email, SecretString::from(req.password), client).await?;
    Ok((no_store(), Json(pair)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<RefreshRequest>,
) -> Result<impl IntoResponse, AppError> {
    let pair = service::refresh(&app, &SecretString::from(req.refresh_token), client).await?;
    Ok((no_store(), Json(pair)))
}

async fn logout(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
) -> Result<StatusCode, AppError> {
    service::end_session(
        &app,
        caller.user_id,
        caller.session_id,
        Ending::Logout,
        client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// API.md "Session".
#[derive(Serialize)]
struct SessionView {
    id: String,
    created_at: String,
    last_seen_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    current: bool,
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

async fn list_sessions(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, AppError> {
    let rows = sessions::list_live(&app.store, caller.user_id).await?;
    let items = rows
        .into_iter()
        .map(|s| SessionView {
            current: s.id == caller.session_id,
            id: s.id.to_string(),
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect();
    Ok((no_store(), Json(Items { items })))
}

async fn revoke_session(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    // An id that is not a UUID (or not even decodable) cannot name a session: the same 404
    // as someone else's.
    let session = id
        .ok()
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .ok_or(AppError::NotFound)?;
    if service::end_session(&app, caller.user_id, session, Ending::Revoke, client).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound)
    }
}
