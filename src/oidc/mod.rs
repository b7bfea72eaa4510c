//! OpenID Connect provider. For now: the JWKS that publishes our token signing keys, and the
//! registry of clients.

pub mod clients;
pub mod codes;
pub mod routes;

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    routes::router().merge(clients::router())
}
