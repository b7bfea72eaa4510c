//! The admin API (`/api/v1/admin/*`): actions on other people's accounts, roles and the audit
//! log, each behind a permission checked against the database on every request. Hidden from
//! networks outside `admin_allowed_networks` by the HTTP guard.

pub mod audit;
pub mod delete;
pub mod keys;
pub mod query;
pub mod roles;
pub mod routes;
pub mod users;

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    routes::router().merge(delete::router())
}
