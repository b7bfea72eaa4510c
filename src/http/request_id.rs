//! `X-Request-Id`: echoed when the client sent a sane one, otherwise minted here. The id is
//! part of the request context (`telemetry::context`), so problem bodies and logs carry it.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    crate::telemetry::context::with_current(|c| c.request_id.to_string())
}

fn acceptable(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let ok = (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(s)
}

/// The client's id when it is 1-128 characters of `[A-Za-z0-9._-]`, else a fresh UUID.
pub fn from_headers(headers: &HeaderMap) -> Arc<str> {
    match headers.get(&X_REQUEST_ID).and_then(acceptable) {
        Some(given) => given.into(),
        None => {
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            Arc::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_echoed() {
        assert_eq!(
            acceptable(&HeaderValue::from_static("abc-1.2_3")),
            Some("abc-1.2_3")
        );
        assert_eq!(acceptable(&HeaderValue::from_static("")), None);
        assert_eq!(acceptable(&HeaderValue::from_static("has space")), None);
        assert_eq!(acceptable(&HeaderValue::from_static("semi;colon")), None);
        let long = "a".repeat(129);
        assert_eq!(acceptable(&HeaderValue::from_str(&long).unwrap()), None);
        let max = "a".repeat(128);
        assert!(acceptable(&HeaderValue::from_str(&max).unwrap()).is_some());
    }
}
