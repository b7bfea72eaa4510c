//! `X-Request-Id`: echoed when the client sent a sane one, otherwise minted here. The id is
//! available to everything below through a task-local, so problem bodies carry it.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

/// The request id, also placed in request extensions for extractors.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

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
        None => uuid::Uuid::new_v4().to_string().into(),
    }
}

/// Runs `f` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: Arc<str>, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
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
