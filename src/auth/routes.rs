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
use super::service::{self, Ending, LoginOutcome, TokenPair};
use super::sessions;
use crate::accounts::Email;
use crate::accounts::routes::no_store;
use crate::app::AppState;
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::{AuthRateLimit, ClientInfo, Json};
use crate::store::rfc3339;
use crate::telemetry::metrics;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(login, refresh, logout, list_sessions, revoke_session))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/users/me/sessions", get(list_sessions))
        .route("/api/v1/users/me/sessions/{id}", delete(revoke_session))
        .merge(super::mfa::router())
        .merge(super::passkeys::account::router())
        .merge(super::passkeys::login::router())
        .merge(super::email_flows::router())
}

/// Longest password accepted at login. Longer input cannot be anyone's password (signup
/// allows 128 characters), but it is still checked against a hash so the answer looks alike.
const MAX_LOGIN_PASSWORD_CHARS: usize = 1024;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    #[schema(format = "email", max_length = 254, example = "ada@example.com")]
    email: String,
    #[schema(min_length = 1, max_length = 1024)]
    password: String,
}

/// Log in with email and password.
///
/// Every failure (unknown email, wrong password, disabled or locked account) is the same
/// 401 in the same time. After repeated failures for one email, further attempts wait
/// (429 with `Retry-After`), even with the right password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A new session, or (when the account has MFA) `mfa_required` with an `mfa_token` for `/auth/mfa`.", body = LoginOutcome),
        (status = 401, description = "Invalid credentials (slug `invalid-credentials`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]

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
    let result = service::login(&app, &email, SecretString::from(req.password), client).await;
    // One `failure` for every wrong credential: these counters may be public, and a label
    // per reason would tell a scraper whether the email it just tried exists.
    metrics::login(match &result {
        Ok(_) => "success",
        Err(AppError::InvalidCredentials) => "failure",
        Err(AppError::RateLimited { .. }) => "rate_limited",
        Err(AppError::Overloaded) => "overloaded",
        Err(_) => "error",
    });
    Ok((no_store(), Json(result?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Trade a refresh token for a new pair. The old refresh token dies; presenting a used one
/// again revokes the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The rotated pair.", body = TokenPair),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn refresh(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<RefreshRequest>,
) -> Result<impl IntoResponse, AppError> {
    let pair = service::refresh(&app, &SecretString::from(req.refresh_token), client).await?;
    Ok((no_store(), Json(pair)))
}

/// End the current session: its refresh token and access tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses((status = 204, description = "The session is over.")))]
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
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Session)]
struct SessionView {
    #[schema(format = "uuid")]
    id: String,
    #[schema(format = "date-time")]
    created_at: String,
    #[schema(format = "date-time")]
    last_seen_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    /// Whether this is the session of the token that asked.
    current: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SessionList)]
struct Items {
    items: Vec<SessionView>,
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/api/v1/users/me/sessions", tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "Sessions neither revoked nor expired.", body = Items)))]
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

/// Revoke one of the caller's sessions.
#[utoipa::path(delete, path = "/api/v1/users/me/sessions/{id}", tag = "auth",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "No such live session of the caller.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
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
