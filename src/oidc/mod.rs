//! OpenID Connect provider: the JWKS that publishes our token signing keys, the registry of
//! clients, and the authorization endpoint with its login, second-factor and consent pages, and RP-initiated logout.

pub mod authorize;
pub mod browser;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod login;
pub mod logout;
pub mod pages;
pub mod request;
pub mod routes;

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    routes::router()
        .merge(clients::router())
        .merge(authorize::router())
        .merge(login::router())
        .merge(logout::router())
}
