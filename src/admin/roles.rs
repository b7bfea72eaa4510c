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
use crate::roles::service;
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
    /// Built-in roles (`admin`, `user`) cannot be changed or deleted, except for whether
    /// they require MFA.
    builtin: bool,
    /// The role gives nothing to a session without MFA: no admin permission, and it is left
    /// out of the access token's `roles` (slug `mfa-required` on an admin route).
    require_mfa: bool,
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> RoleView {
        RoleView {
            name: r.name.clone(),
            permissions: r.permissions.iter().map(|p| p.as_str()).collect(),
            builtin: r.builtin,
            require_mfa: r.require_mfa,
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
    /// Whether the role requires MFA; `false` when absent.
    #[serde(default)]
    require_mfa: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    /// The complete new set.
    #[schema(value_type = Vec<Permission>)]
    permissions: Vec<String>,
    /// Whether the role requires MFA; absent leaves it as it is, so that a client unaware
    /// of the field cannot switch the requirement off by leaving it out.
    #[serde(default)]
    require_mfa: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequireMfaRequest {
    require_mfa: bool,
}

fn permissions(raw: &[String], errors: &mut Vec<FieldError>) -> Vec<Permission> {
    Permission::parse_set(raw)
        .map_err(|m| errors.push(FieldError::new("permissions", m)))
        .unwrap_or_default()
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
        (status = 403, description = "The caller lacks `roles:read` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::RolesRead).await?;
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
        (status = 403, description = "The caller lacks `roles:write`, or one of the permissions it would grant (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A role of this name exists (slug `role-exists`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    body: Result<Json<CreateRoleRequest>, AppError>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::RolesWrite).await?;
    let Json(req) = body?;
    let mut errors = Vec::new();
    let name = RoleName::parse(&req.name)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok();
    let perms = permissions(&req.permissions, &mut errors);
    let (Some(name), true) = (name, errors.is_empty()) else {
        return Err(AppError::Invalid(errors));
    };
    let role = service::create(&app, name, perms, req.require_mfa, caller.actor(client)).await?;
    Ok((StatusCode::CREATED, Json(RoleView::from(&role))))
}

/// Replace a custom role's permissions (and set whether it requires MFA); its holders' rights
/// change with their next request.
#[utoipa::path(put, path = "/api/v1/admin/roles/{name}", tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The role name.")),
    request_body = UpdateRoleRequest,
    responses(
        (status = 200, description = "The role with its new permissions.", body = RoleView),
        (status = 403, description = "The caller lacks `roles:write`, or one of the permissions it would add or remove (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
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
    roles::require(&app.store, caller.principal(), Permission::RolesWrite).await?;
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
    let role = service::update(&app, name, perms, req.require_mfa, caller.actor(client)).await?;
    Ok(Json(RoleView::from(&role)))
}

/// Make a role, built-in ones included, require MFA or not.
///
/// A role that requires MFA gives nothing to a session whose login had no second factor: its
/// permissions are refused (403, slug `mfa-required`) from the holders' next request, and it
/// is left out of the `roles` of their access tokens from their next login or refresh.
/// Changing it takes every permission of the role. Audited as `role_changed`.
#[utoipa::path(put, path = "/api/v1/admin/roles/{name}/require-mfa", tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The role name; `admin` and `user` too.")),
    request_body = RequireMfaRequest,
    responses(
        (status = 200, description = "The role with its new setting.", body = RoleView),
        (status = 403, description = "The caller lacks `roles:write`, or one of the role's permissions (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such role, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn require_mfa(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<RequireMfaRequest>, AppError>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::RolesWrite).await?;
    let name = role_name(name)?;
    // An unknown role is a 404 before the body is judged, as for PUT on the role.
    let mut conn = app.store.pool().acquire().await?;
    if roles::store::find(&mut conn, name.as_str())
        .await?
        .is_none()
    {
        return Err(AppError::NotFound);
    }
    drop(conn);
    let Json(req) = body?;
    let role = service::set_require_mfa(&app, name, req.require_mfa, caller.actor(client)).await?;
    Ok(Json(RoleView::from(&role)))
}

/// Delete a custom role; whoever held it loses it at once.
#[utoipa::path(delete, path = "/api/v1/admin/roles/{name}", tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The role name.")),
    responses(
        (status = 204, description = "The role is gone."),
        (status = 403, description = "The caller lacks `roles:write`, or one of the role's permissions (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such role, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Built-in roles cannot be deleted (slug `builtin-role`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    roles::require(&app.store, caller.principal(), Permission::RolesWrite).await?;
    service::delete(&app, role_name(name)?, caller.actor(client)).await?;
    Ok(StatusCode::NO_CONTENT)
}
