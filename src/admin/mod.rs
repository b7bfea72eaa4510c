//! The admin API (`/api/v1/admin/*`): actions on other people's accounts, each behind a
//! permission. Hidden from networks outside `admin_allowed_networks` by the HTTP guard.

pub mod delete;
pub mod routes;

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    routes::router().merge(delete::router())
}
