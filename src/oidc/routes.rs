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
    /// Every public key whose tokens may still be presented: the signing key of each of
    /// `EdDSA` (`kty` `OKP`, `crv`, `x`), `RS256` (`kty` `RSA`, `n`, `e`) and `ES256` (`kty`
    /// `EC`, `crv`, `x`, `y`), and the keys retired less than max(access token lifetime,
    /// 1 hour) + 30 s ago; each with `kid`, `alg` and `use: sig`.
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth2/jwks", get(jwks))
}

/// The public keys that verify portvakt's tokens (RFC 7517).
///
/// After a key rotation the new keys appear at once and the retired ones stay until every
/// token they signed has expired. Tokens name their key in the `kid` header; refetch the set
/// on an unknown `kid`.
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
