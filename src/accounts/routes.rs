//! `/api/v1/users` and `/api/v1/users/me`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use serde::Deserialize;

use super::model::{Email, Name, UserView};
use super::service::{self, NewAccount};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{AppError, FieldError};
use crate::http::{AuthRateLimit, ClientInfo, Json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", post(signup))
        .route("/api/v1/users/me", get(me).patch(update_me))
        .route("/api/v1/users/me/password", post(change_password))
}

/// Responses about a person must not be stored by caches.
pub fn no_store() -> [(HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupRequest {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

async fn signup(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    client: ClientInfo,
    Json(req): Json<SignupRequest>,
) -> Result<impl IntoResponse, AppError> {
    let mut errors = Vec::new();
    let email = Email::parse(&req.email)
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok();
    let name = Name::parse(req.name.as_deref())
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok();
    let password = SecretString::from(req.password);
    let mut context = vec![req.email.trim().to_string()];
    context.extend(req.name.clone());
    match service::check_new_password(&app, "password", &password, context).await {
        Ok(()) => {}
        Err(AppError::Invalid(mut e)) => errors.append(&mut e),
        Err(other) => return Err(other),
    }
    let (Some(email), Some(name), true) = (email, name, errors.is_empty()) else {
        return Err(AppError::Invalid(errors));
    };
    let user = service::signup(
        &app,
        NewAccount {
            email,
            name,
            password,
        },
        &client,
    )
    .await?;
    Ok((StatusCode::CREATED, no_store(), Json(UserView::from(&user))))
}

async fn me(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    profile_response(&app, caller).await
}

/// The caller's profile, served from the JSON the cache keeps.
async fn profile_response(app: &AppState, caller: Caller) -> Result<Response, AppError> {
    let json = service::profile(app, caller.user_id).await?;
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    Ok((no_store(), content_type, json).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateMeRequest {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn update_me(
    State(app): State<AppState>,
    caller: Caller,
    Json(req): Json<UpdateMeRequest>,
) -> Result<impl IntoResponse, AppError> {
    let Some(name) = req.name else {
        return profile_response(&app, caller).await;
    };
    let name = Name::parse(name.as_deref())
        .map_err(|m| AppError::Invalid(vec![FieldError::new("name", m)]))?;
    let user = service::rename(&app, caller.user_id, name).await?;
    Ok((no_store(), Json(UserView::from(&user))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

async fn change_password(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(req): Json<ChangePasswordRequest>,
) -> Result<StatusCode, AppError> {
    service::change_password(
        &app,
        &caller,
        SecretString::from(req.current_password),
        SecretString::from(req.new_password),
        client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
