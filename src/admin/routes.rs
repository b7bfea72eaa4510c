//! `/api/v1/admin/users/{id}/unlock`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

use crate::accounts::{UserId, service as accounts};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::http::ClientInfo;
use crate::roles::{self, Permission};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/admin/users/{id}/unlock", post(unlock))
}

/// Lifts a lockout: 204 whether or not the account was locked (the outcome is the same).
async fn unlock(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    roles::require(&app.store, caller.user_id, Permission::UsersWrite).await?;
    let id = id
        .ok()
        .and_then(|Path(id)| UserId::parse(&id))
        .ok_or(AppError::NotFound)?;
    accounts::unlock(&app, id, Some(caller.user_id), Some(client)).await?;
    Ok(StatusCode::NO_CONTENT)
}
