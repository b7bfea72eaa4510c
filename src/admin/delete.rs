//! `DELETE /api/v1/admin/users/{id}`: an admin erases an account (see `accounts::gdpr`).

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::delete;

use crate::accounts::{UserId, gdpr};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{AppError, ProblemBody};
use crate::http::ClientInfo;
use crate::roles::{self, Permission};

/// The OpenAPI description of this route.
#[derive(utoipa::OpenApi)]
#[openapi(paths(delete_user))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/admin/users/{id}", delete(delete_user))
}

/// Erases an account as `POST /users/me/erase` does, on an admin's behalf. An admin may
/// delete itself unless it is the last enabled admin.
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user id.")),
    responses(
        (status = 204, description = "Erased: the account, its roles, sessions and refresh tokens are gone; audit entries about it keep only its random id."),
        (status = 403, description = "The caller lacks `users:write`, or a permission the account holds (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The account is the last enabled admin (slug `last-admin`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn delete_user(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    roles::require(&app.store, caller.principal(), Permission::UsersWrite).await?;
    let id = id
        .ok()
        .and_then(|Path(id)| UserId::parse(&id))
        .ok_or(AppError::NotFound)?;
    gdpr::erase_by_admin(&app, id, caller.principal(), client).await?;
    Ok(StatusCode::NO_CONTENT)
}
