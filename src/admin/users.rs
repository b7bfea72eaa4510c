//! `/api/v1/admin/users`: search, view, edit, disable and end the sessions of accounts.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::query::{self, Pagination, Params};
use crate::accounts::directory::{self, AdminUserView, Prefix};
use crate::accounts::manage::{self, Changes};
use crate::accounts::routes::no_store;
use crate::accounts::{Email, Name, UserId};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::{ClientInfo, Json};
use crate::roles::{self, Permission, RoleName};

/// A page of users.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserPage {
    items: Vec<AdminUserView>,
    page: u32,
    per_page: u32,
    /// How many users match: exact when `total_exact`, otherwise a lower bound that is always
    /// past the end of this page (matches are counted up to 1,000 past it).
    total: i64,
    /// Whether `total` is the exact count.
    total_exact: bool,
}

/// The user id of the path; anything that is not one is a user that does not exist.
pub fn user_id(id: Result<Path<String>, PathRejection>) -> Result<UserId, AppError> {
    id.ok()
        .and_then(|Path(id)| UserId::parse(&id))
        .ok_or(AppError::NotFound)
}

/// Search accounts by a prefix of their email or name, any case.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin",
    security(("bearer" = [])),
    params(
        ("q" = Option<String>, Query, description = "A prefix of the email or the name, any case; empty lists everyone.", max_length = 254),
        ("page" = Option<u32>, Query, description = "Page number, from 1.", minimum = 1, maximum = 2147483647),
        ("per_page" = Option<u32>, Query, description = "Users per page, 1 to 200 (default 50).", minimum = 1, maximum = 200),
    ),
    responses(
        (status = 200, description = "Matching users, ordered by the text that matched (email, or lowercase name), then id; everyone by email when `q` is empty.", body = UserPage),
        (status = 400, description = "A query parameter is invalid (`errors` names it).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks `users:read` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::UsersRead).await?;
    let params = Params::parse(raw.as_deref());
    let mut errors = Vec::new();
    let pagination = Pagination::parse(&params, &mut errors);
    let prefix = Prefix::parse(params.get("q").unwrap_or(""))
        .map_err(|m| errors.push(FieldError::new("q", m)))
        .ok()
        .flatten();
    query::finish(errors)?;
    let found = directory::search(
        app.store.pool(),
        app.store.backend(),
        prefix.as_ref(),
        pagination.limit(),
        pagination.offset(),
    )
    .await?;
    Ok((
        no_store(),
        Json(UserPage {
            items: found.users,
            page: pagination.page,
            per_page: pagination.per_page,
            total: found.total,
            total_exact: found.total_exact,
        }),
    ))
}

/// One account, with `disabled` and `last_login_at`.
#[utoipa::path(get, path = "/api/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user id.")),
    responses(
        (status = 200, description = "The account.", body = AdminUserView),
        (status = 403, description = "The caller lacks `users:read` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::UsersRead).await?;
    let user = manage::view(&app, user_id(id)?).await?;
    Ok((no_store(), Json(user)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// The display name; `null` clears it, leaving it out changes nothing.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 200, nullable)]
    name: Option<Option<String>>,
    /// A new address (unverified unless only its case changes).
    #[schema(format = "email", max_length = 254)]
    email: Option<String>,
    /// `true` disables the account and ends every session; `false` enables it.
    disabled: Option<bool>,
    /// The complete set of roles the account should hold.
    roles: Option<Vec<String>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl UpdateUserRequest {
    fn parse(self) -> Result<Changes, AppError> {
        let mut errors = Vec::new();
        let mut changes = Changes {
            disabled: self.disabled,
            ..Changes::default()
        };
        if let Some(name) = self.name {
            match Name::parse(name.as_deref()) {
                Ok(n) => changes.name = Some(n),
                Err(m) => errors.push(FieldError::new("name", m)),
            }
        }
        if let Some(email) = self.email {
            match Email::parse(&email) {
                Ok(e) => changes.email = Some(e),
                Err(m) => errors.push(FieldError::new("email", m)),
            }
        }
        if let Some(roles) = self.roles {
            match roles
                .iter()
                .map(|r| RoleName::parse(r))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(r) => changes.roles = Some(r),
                Err(m) => errors.push(FieldError::new("roles", format!("each role {m}"))),
            }
        }
        query::finish(errors)?;
        Ok(changes)
    }
}

/// Change an account: name, email, disabled, roles. Every change is audited; disabling ends
/// every session at once.
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user id.")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The updated account.", body = AdminUserView),
        (status = 400, description = "A field is invalid, or `roles` names a role that does not exist (`errors` names the field).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks `users:write`, a permission the account holds, or a permission of a role it would assign or remove (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The email belongs to another account (slug `email-taken`), or the change would leave no enabled admin (slug `last-admin`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateUserRequest>, AppError>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::UsersWrite).await?;
    let id = user_id(id)?;
    // An unknown account is a 404 before the body is judged (docs/api.md's order of
    // answers); the change finds the account again in its own transaction.
    if crate::accounts::store::find_by_id(app.store.pool(), id)
        .await?
        .is_none()
    {
        return Err(AppError::NotFound);
    }
    let Json(req) = body?;
    let changes = req.parse()?;
    let actor = caller.actor(client);
    let user = manage::update(&app, id, changes, actor).await?;
    Ok((no_store(), Json(user)))
}

/// End every session of an account; its access tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/sessions/revoke", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user id.")),
    responses(
        (status = 204, description = "Every session of the account has ended."),
        (status = 403, description = "The caller lacks `users:write`, or a permission the account holds (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn revoke_sessions(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    roles::require(&app.store, caller.principal(), Permission::UsersWrite).await?;
    let actor = caller.actor(client);
    manage::revoke_sessions(&app, user_id(id)?, actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
