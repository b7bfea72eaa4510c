//! `GET /oauth2/jwks` (RFC 7517): the public keys that verify our tokens.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth2/jwks", get(jwks))
}

async fn jwks(State(app): State<AppState>) -> Response {
    let mut response = axum::Json(app.keys.jwks()).into_response();
    // Relying parties may cache the set briefly; common clients refetch on an unknown kid.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
