//! Turns every error response that our handlers did not render (the router's 404 and 405,
//! a body limit, a timeout, a panic) into problem+json, keeping headers such as `Allow`.
//! `/oauth2/*` answers errors the OAuth way and is left alone.

use axum::http::header;
use axum::response::Response;

use crate::error::{PROBLEM_JSON, Problem};

/// Marks an error response whose body is deliberate (e.g. `/ready`'s 503 report).
#[derive(Debug, Clone, Copy)]
pub struct KeepBody;

/// Renders `response` as a problem if it is an error that is not one already.
pub fn normalize(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<KeepBody>().is_some()
    {
        return response;
    }
    let already = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if already {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut rendered = Problem::for_status(status).render();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    *rendered.extensions_mut() = parts.extensions;
    rendered
}

/// The response to a panic: an opaque 500 whose cause goes to the log only.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let cause = if let Some(s) = err.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = err.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "panic".to_string()
    };
    metrics::counter!(crate::telemetry::metrics::PANICS).increment(1);
    let mut response = Problem::for_status(axum::http::StatusCode::INTERNAL_SERVER_ERROR).render();
    response
        .extensions_mut()
        .insert(crate::error::ErrorReport(format!("panic: {cause}").into()));
    response
}
