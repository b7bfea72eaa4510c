//! Cross-origin access for browsers: denied unless origins are configured. Credentials are
//! allowed only together with an explicit list (configuration refuses `*` with them).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{Config, CorsOrigins};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer, or `None` when no origin is allowed (browsers then refuse cross-origin
/// reads by themselves, and preflights get no approval).
pub fn layer(config: &Config) -> Option<CorsLayer> {
    let allow_origin = match &config.cors_origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(origins) => AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    let x_request_id = HeaderName::from_static("x-request-id");
    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            x_request_id.clone(),
        ])
        .expose_headers([
            x_request_id,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            header::LOCATION,
        ])
        .max_age(PREFLIGHT_MAX_AGE);
    Some(
        if config.cors_allow_credentials && matches!(config.cors_origins, CorsOrigins::List(_)) {
            layer.allow_credentials(true)
        } else {
            layer
        },
    )
}
