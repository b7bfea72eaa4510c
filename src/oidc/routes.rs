//! `GET /oauth2/jwks` (RFC 7517): the public keys that verify our tokens.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(jwks))]
pub struct Doc;

/// RFC 7517 JWK Set.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON `KeyRing::jwks` builds
struct JwkSet {
    /// Every public key in use: `kty`, `crv`, `x`, `kid`, `alg`, `use`.
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth2/jwks", get(jwks))
}

/// The public keys that verify portvakt's tokens (RFC 7517).
#[utoipa::path(get, path = "/oauth2/jwks", tag = "oauth2",
    responses((status = 200, description = "The JWK Set.", body = JwkSet)))]
async fn jwks(State(app): State<AppState>) -> Response {
    let mut response = axum::Json(app.keys.jwks()).into_response();
    // Relying parties may cache the set briefly; common clients refetch on an unknown kid.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
