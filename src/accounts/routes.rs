//! `/api/v1/users` and `/api/v1/users/me`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use serde::Deserialize;

use super::gdpr::{self, Export};
use super::model::{Email, Name, UserView};
use super::service::{self, NewAccount};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::{AuthRateLimit, ClientInfo, Json};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(signup, me, update_me, change_password, export, erase))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", post(signup))
        .route("/api/v1/users/me", get(me).patch(update_me))
        .route("/api/v1/users/me/password", post(change_password))
        .route("/api/v1/users/me/export", get(export))
        .route("/api/v1/users/me/erase", post(erase))
}

/// Responses about a person must not be stored by caches.
pub fn no_store() -> [(HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignupRequest {
    /// Trimmed; identity is case-insensitive.
    #[schema(format = "email", max_length = 254, example = "ada@example.com")]
    email: String,
    /// 8..=128 characters (the minimum is configurable) and strong enough (zxcvbn).
    #[schema(
        min_length = 8,
        max_length = 128,
        example = "correct horse battery staple"
    )]
    password: String,
    #[serde(default)]
    #[schema(max_length = 200, nullable)]
    name: Option<String>,
}

/// Create an account. The new user has role `user`.
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "The account was created.", body = UserView),
        (status = 409, description = "An account with this email exists (slug `email-taken`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
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

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "accounts",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's profile.", body = UserView)))]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateMeRequest {
    /// The new display name; `null` clears it, leaving it out changes nothing.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 200, nullable)]
    name: Option<Option<String>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Change the caller's display name.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "accounts",
    security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses((status = 200, description = "The updated profile.", body = UserView)))]
async fn update_me(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(req): Json<UpdateMeRequest>,
) -> Result<impl IntoResponse, AppError> {
    let Some(name) = req.name else {
        return profile_response(&app, caller).await;
    };
    let name = Name::parse(name.as_deref())
        .map_err(|m| AppError::Invalid(vec![FieldError::new("name", m)]))?;
    let user = service::rename(&app, caller.user_id, name, client).await?;
    Ok((no_store(), Json(UserView::from(&user))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    current_password: String,
    #[schema(min_length = 8, max_length = 128)]
    new_password: String,
}

/// Change the caller's password; every other session of the caller is revoked.
#[utoipa::path(post, path = "/api/v1/users/me/password", tag = "accounts",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed; every other session is revoked."),
        (status = 403, description = "`current_password` is wrong (slug `wrong-password`); counts towards the login backoff.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
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

/// Everything stored about the caller (GDPR art. 15 and 20): profile with roles, every
/// session on record, the audit entries about them with the personal data those hold, MFA
/// enrolment and OIDC consents (both empty until they exist).
#[utoipa::path(get, path = "/api/v1/users/me/export", tag = "accounts",
    security(("bearer" = [])),
    responses((status = 200, description = "The export document (`Cache-Control: no-store`).", body = Export)))]
async fn export(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, AppError> {
    let export = gdpr::export(&app, &caller).await?;
    Ok((no_store(), Json(export)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    /// The caller's current password.
    password: String,
}

/// Erase the caller's account (GDPR art. 17): the account, its roles, sessions and refresh
/// tokens are deleted and the audit entries about it lose IP, user agent and personal data,
/// keeping only the random user id. Every token of the account fails at once.
#[utoipa::path(post, path = "/api/v1/users/me/erase", tag = "accounts",
    security(("bearer" = [])),
    request_body = EraseRequest,
    responses(
        (status = 204, description = "Erased."),
        (status = 403, description = "`password` is wrong (slug `wrong-password`); counts towards the login backoff.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The caller is the last enabled admin (slug `last-admin`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn erase(
    _limit: AuthRateLimit,
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    Json(req): Json<EraseRequest>,
) -> Result<StatusCode, AppError> {
    gdpr::erase_self(&app, &caller, SecretString::from(req.password), client).await?;
    Ok(StatusCode::NO_CONTENT)
}
