//! `/api/v1/admin/roles`: list, create, change and delete roles.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::{ClientInfo, Json};
use crate::roles::service::{self, Actor};
use crate::roles::{self, Permission, Role, RoleName};

/// A role as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Role)]
pub struct RoleView {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    name: String,
    /// Sorted; every permission for `admin`.
    #[schema(value_type = Vec<Permission>)]
    permissions: Vec<&'static str>,
    /// Built-in roles (`admin`, `user`) cannot be changed or deleted.
    builtin: bool,
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> RoleView {
        RoleView {
            name: r.name.clone(),
            permissions: r.permissions.iter().map(|p| p.as_str()).collect(),
            builtin: r.builtin,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoleList {
    items: Vec<RoleView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "support")]
    name: String,
    /// Any of `users:read`, `users:write`, `roles:read`, `roles:write`, `audit:read`,
    /// `clients:read`, `clients:write`, `keys:rotate`.
    #[schema(value_type = Vec<Permission>, example = json!(["users:read"]))]
    permissions: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    /// The complete new set.
    #[schema(value_type = Vec<Permission>)]
    permissions: Vec<String>,
}

fn permissions(raw: &[String], errors: &mut Vec<FieldError>) -> Vec<Permission> {
    Permission::parse_set(raw)
        .map_err(|m| errors.push(FieldError::new("permissions", m)))
        .unwrap_or_default()
}

fn actor(caller: &Caller, client: ClientInfo) -> Actor {
    Actor::Admin {
        user: caller.user_id,
        client,
    }
}

/// The role of the path; a name that cannot be one is a role that does not exist.
fn role_name(name: Result<Path<String>, PathRejection>) -> Result<RoleName, AppError> {
    name.ok()
        .and_then(|Path(n)| RoleName::parse(&n).ok())
        .ok_or(AppError::NotFound)
}

/// Every role with its permissions.
#[utoipa::path(get, path = "/api/v1/admin/roles", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every role, by name.", body = RoleList),
        (status = 403, description = "The caller lacks `roles:read` (slug `forbidden`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.user_id, Permission::RolesRead).await?;
    let items = service::list(&app)
        .await?
        .iter()
        .map(RoleView::from)
        .collect();
    Ok(Json(RoleList { items }))
}

/// Create a custom role.
#[utoipa::path(post, path = "/api/v1/admin/roles", tag = "admin",
    security(("bearer" = [])),
    request_body = CreateRoleRequest,
    responses(
        (status = 201, description = "The role was created.", body = RoleView),
        (status = 403, description = "The caller lacks `roles:write`, or one of the permissions it would grant (slug `forbidden`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A role of this name exists (slug `role-exists`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    body: Result<Json<CreateRoleRequest>, AppError>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.user_id, Permission::RolesWrite).await?;
    let Json(req) = body?;
    let mut errors = Vec::new();
    let name = RoleName::parse(&req.name)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok();
    let perms = permissions(&req.permissions, &mut errors);
    let (Some(name), true) = (name, errors.is_empty()) else {
        return Err(AppError::Invalid(errors));
    };
    let role = service::create(&app, name, perms, actor(&caller, client)).await?;
    Ok((StatusCode::CREATED, Json(RoleView::from(&role))))
}

/// Replace a custom role's permissions; its holders' rights change with their next request.
#[utoipa::path(put, path = "/api/v1/admin/roles/{name}", tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The role name.")),
    request_body = UpdateRoleRequest,
    responses(
        (status = 200, description = "The role with its new permissions.", body = RoleView),
        (status = 403, description = "The caller lacks `roles:write`, or one of the permissions it would add or remove (slug `forbidden`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such role, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Built-in roles cannot be changed (slug `builtin-role`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateRoleRequest>, AppError>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.user_id, Permission::RolesWrite).await?;
    let name = role_name(name)?;
    // An unknown role is a 404 before the body is judged (docs/api.md's order of answers).
    if !roles::is_builtin(name.as_str()) {
        let mut conn = app.store.pool().acquire().await?;
        if roles::store::find(&mut conn, name.as_str())
            .await?
            .is_none()
        {
            return Err(AppError::NotFound);
        }
    }
    let Json(req) = body?;
    let mut errors = Vec::new();
    let perms = permissions(&req.permissions, &mut errors);
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    let role = service::update(&app, name, perms, actor(&caller, client)).await?;
    Ok(Json(RoleView::from(&role)))
}

/// Delete a custom role; whoever held it loses it at once.
#[utoipa::path(delete, path = "/api/v1/admin/roles/{name}", tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The role name.")),
    responses(
        (status = 204, description = "The role is gone."),
        (status = 403, description = "The caller lacks `roles:write`, or one of the role's permissions (slug `forbidden`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such role, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Built-in roles cannot be deleted (slug `builtin-role`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    roles::require(&app.store, caller.user_id, Permission::RolesWrite).await?;
    service::delete(&app, role_name(name)?, actor(&caller, client)).await?;
    Ok(StatusCode::NO_CONTENT)
}
