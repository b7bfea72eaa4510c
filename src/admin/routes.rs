//! The admin router, and `/api/v1/admin/users/{id}/unlock`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};

use crate::accounts::{UserId, service as accounts};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{AppError, ProblemBody};
use crate::http::ClientInfo;
use crate::roles::{self as permissions, Permission};

use super::{audit, keys, roles, users};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    unlock,
    super::users::list,
    super::users::show,
    super::users::update,
    super::users::revoke_sessions,
    super::roles::list,
    super::roles::create,
    super::roles::update,
    super::roles::require_mfa,
    super::roles::delete,
    super::audit::search,
    super::keys::rotate,
))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/users", get(users::list))
        .route(
            "/api/v1/admin/users/{id}",
            get(users::show).patch(users::update),
        )
        .route(
            "/api/v1/admin/users/{id}/sessions/revoke",
            post(users::revoke_sessions),
        )
        .route("/api/v1/admin/users/{id}/unlock", post(unlock))
        .route("/api/v1/admin/roles", get(roles::list).post(roles::create))
        .route(
            "/api/v1/admin/roles/{name}",
            put(roles::update).delete(roles::delete),
        )
        .route(
            "/api/v1/admin/roles/{name}/require-mfa",
            put(roles::require_mfa),
        )
        .route("/api/v1/admin/audit", get(audit::search))
        .route("/api/v1/admin/keys/rotate", post(keys::rotate))
}

/// Lifts a lockout: 204 whether or not the account was locked (the outcome is the same).
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/unlock", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user id.")),
    responses(
        (status = 204, description = "The account is not locked (any more); its failed-login count is reset."),
        (status = 403, description = "The caller lacks `users:write` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn unlock(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    permissions::require(&app.store, caller.principal(), Permission::UsersWrite).await?;
    let id = id
        .ok()
        .and_then(|Path(id)| UserId::parse(&id))
        .ok_or(AppError::NotFound)?;
    accounts::unlock(&app, id, Some(caller.user_id), Some(client)).await?;
    Ok(StatusCode::NO_CONTENT)
}
