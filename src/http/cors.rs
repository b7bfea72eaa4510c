//! Cross-origin access for browsers: denied unless origins are configured. Credentials are
//! allowed only together with an explicit list (configuration refuses `*` with them).
//!
//! Browsers do not apply CORS to WebSockets: they open one to any site and send `Origin`.
//! Routes that upgrade check it themselves with [`origin_allowed`].

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

/// Whether a request with this `Origin` header may open a WebSocket: yes without the header
/// (not a browser: the header is what a browser cannot leave out or forge), otherwise only
/// for an origin in `cors_origins`, compared as browsers serialise it.
pub fn origin_allowed(config: &Config, origin: Option<&HeaderValue>) -> bool {
    let Some(origin) = origin else { return true };
    match &config.cors_origins {
        CorsOrigins::None => false,
        CorsOrigins::Any => true,
        CorsOrigins::List(list) => origin
            .to_str()
            .is_ok_and(|o| list.iter().any(|allowed| allowed == o)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(origins: &str) -> Config {
        Config::from_pairs([("cors_origins", origins)]).unwrap()
    }

    #[test]
    fn websocket_origins_must_be_listed_and_non_browsers_pass() {
        let listed = config("https://app.example.com");
        let o = |v: &'static str| Some(HeaderValue::from_static(v));
        assert!(origin_allowed(&listed, None));
        assert!(origin_allowed(
            &listed,
            o("https://app.example.com").as_ref()
        ));
        assert!(!origin_allowed(&listed, o("https://evil.example").as_ref()));
        assert!(!origin_allowed(
            &listed,
            o("http://app.example.com").as_ref()
        ));
        assert!(!origin_allowed(&listed, o("null").as_ref()));
        assert!(!origin_allowed(
            &config(""),
            o("https://app.example.com").as_ref()
        ));
        assert!(origin_allowed(
            &config("*"),
            o("https://any.example").as_ref()
        ));
    }
}
