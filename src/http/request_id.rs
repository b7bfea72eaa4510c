//! `X-Request-Id`: echoed when the client sent a sane one, otherwise minted here. The id is
//! available to everything below through a task-local, so problem bodies and logs carry it.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

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

pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id: Arc<str> = match request.headers().get(&X_REQUEST_ID).and_then(acceptable) {
        Some(given) => given.into(),
        None => uuid::Uuid::new_v4().to_string().into(),
    };
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
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
