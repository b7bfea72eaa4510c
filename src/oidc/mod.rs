//! OpenID Connect provider: the JWKS that publishes our token signing keys, the registry of
//! clients, the authorization endpoint with its login, second-factor and consent pages,
//! RP-initiated logout, and the token side (token, userinfo, introspection, revocation,
//! discovery).

pub mod access;
pub mod authorize;
pub mod browser;
pub mod client_auth;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod discovery;
pub mod id_token;
pub mod introspect;
pub mod login;
pub mod logout;
pub mod oauth;
pub mod pages;
pub mod request;
pub mod revoke;
pub mod routes;
pub mod token;
pub mod userinfo;

use axum::Router;
use axum::routing::{get, post};
use uuid::Uuid;

use crate::accounts::UserId;
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::http::ClientInfo;

pub fn router() -> Router<AppState> {
    routes::router()
        .merge(clients::router())
        .merge(authorize::router())
        .merge(login::router())
        .merge(logout::router())
        .merge(token_router())
}

/// The token side's routes.
fn token_router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/token", post(token::token))
        .route(
            "/oauth2/userinfo",
            get(userinfo::userinfo_get).post(userinfo::userinfo_post),
        )
        .route("/oauth2/introspect", post(introspect::introspect))
        .route("/oauth2/revoke", post(revoke::revoke))
        .route(
            "/.well-known/openid-configuration",
            get(discovery::discovery),
        )
}

/// The OpenAPI description of the token side.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    token::token,
    userinfo::userinfo_get,
    userinfo::userinfo_post,
    introspect::introspect,
    revoke::revoke,
    discovery::discovery
))]
pub struct TokenDoc;

/// An audit entry about a user's grant to a client: the user is the actor (their consent is
/// what the client uses), the grant session the target.
fn grant_audit(
    action: Action,
    user: UserId,
    grant: Uuid,
    client_id: &str,
    origin: &ClientInfo,
) -> Entry {
    Entry::new(action)
        .actor(user)
        .target("session", grant)
        .client(origin)
        .detail("client_id", client_id.to_string())
}
