//! Security headers on every response, errors included: no sniffing, no framing, no
//! referrer, no powerful browser features, a process of its own for our pages, no caching
//! unless a handler chose otherwise (also for the CSP), HSTS when the client came over https, and a strict CSP
//! (no inline script, nothing from other origins) on HTML.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

static PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
static CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
static CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");

/// JSON and everything else that is not a page: nothing may load or frame it.
const CSP_API: &str = "default-src 'none'; frame-ancestors 'none'";
/// Server-rendered pages: our own scripts, styles, images and forms only.
const CSP_HTML: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const PERMISSIONS: &str = "accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), payment=(), usb=()";

#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    hsts: Option<HeaderValue>,
}

impl SecurityHeaders {
    /// `hsts_max_age` of zero sends no `Strict-Transport-Security`.
    pub fn new(hsts_max_age: Duration) -> SecurityHeaders {
        let hsts = (hsts_max_age > Duration::ZERO)
            .then(|| HeaderValue::from_str(&format!("max-age={}", hsts_max_age.as_secs())).ok())
            .flatten();
        SecurityHeaders { hsts }
    }

    /// Adds the headers to a response; ones a handler set itself (a cache policy, say) stay.
    pub fn apply(&self, headers: &mut HeaderMap, https: bool) {
        let html = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
        let set = |headers: &mut HeaderMap, name: &HeaderName, value: &'static str| {
            headers.insert(name.clone(), HeaderValue::from_static(value));
        };
        set(headers, &header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        set(headers, &header::X_FRAME_OPTIONS, "DENY");
        // A page may bring a stricter policy of its own (the OIDC pages leave out
        // `form-action`, which Chrome applies to the redirect after a POST).
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            set(
                headers,
                &header::CONTENT_SECURITY_POLICY,
                if html { CSP_HTML } else { CSP_API },
            );
        }
        set(headers, &header::REFERRER_POLICY, "no-referrer");
        set(headers, &PERMISSIONS_POLICY, PERMISSIONS);
        set(headers, &CROSS_ORIGIN_OPENER_POLICY, "same-origin");
        set(headers, &CROSS_ORIGIN_RESOURCE_POLICY, "same-origin");
        if !headers.contains_key(header::CACHE_CONTROL) {
            set(headers, &header::CACHE_CONTROL, "no-store");
        }
        // No `Server` header: hyper sends none, and nothing may add a version.
        headers.remove(header::SERVER);
        if https && let Some(hsts) = &self.hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_gets_the_page_policy_and_https_gets_hsts() {
        let h = SecurityHeaders::new(Duration::from_secs(63_072_000));
        let mut map = HeaderMap::new();
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        map.insert(header::SERVER, HeaderValue::from_static("thing/1.0"));
        h.apply(&mut map, true);
        assert_eq!(map[header::CONTENT_SECURITY_POLICY], CSP_HTML);
        assert_eq!(map[header::STRICT_TRANSPORT_SECURITY], "max-age=63072000");
        assert!(!map.contains_key(header::SERVER));
        let csp = map[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline") && !csp.contains("http"));
    }

    #[test]
    fn a_pages_own_csp_stays() {
        let mut map = HeaderMap::new();
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        map.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'"),
        );
        SecurityHeaders::new(Duration::ZERO).apply(&mut map, false);
        assert_eq!(map[header::CONTENT_SECURITY_POLICY], "default-src 'none'");
    }

    #[test]
    fn plain_http_gets_no_hsts_and_a_handlers_cache_policy_stays() {
        let h = SecurityHeaders::new(Duration::from_secs(10));
        let mut map = HeaderMap::new();
        map.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        h.apply(&mut map, false);
        assert!(!map.contains_key(header::STRICT_TRANSPORT_SECURITY));
        assert_eq!(map[header::CACHE_CONTROL], "public, max-age=300");
        assert_eq!(map[header::CONTENT_SECURITY_POLICY], CSP_API);
        let mut map = HeaderMap::new();
        SecurityHeaders::new(Duration::ZERO).apply(&mut map, true);
        assert!(!map.contains_key(header::STRICT_TRANSPORT_SECURITY));
        assert_eq!(map[header::CACHE_CONTROL], "no-store");
    }
}
