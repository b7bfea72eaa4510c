//! The outermost middleware, in one pass: request id, the request span (method, matched route,
//! request id, user id once known), problem+json for every error our handlers did not render,
//! and one log line per request (status, latency). Internal error causes are logged here,
//! inside the span, never in the response. `/oauth2/*` keeps its OAuth error format.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::{Instrument, field};

use super::request_id::{self, RequestId, X_REQUEST_ID};
use super::{problem, trace::RequestSpan};
use crate::error::ErrorReport;

pub async fn middleware(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id::from_headers(request.headers());
    let oauth = request.uri().path().starts_with("/oauth2/");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let quiet = route == "/health" || route == "/ready";
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %id,
        user_id = field::Empty,
    );
    request.extensions_mut().insert(RequestId(id.clone()));
    request.extensions_mut().insert(RequestSpan(span.clone()));

    let (mut response, span) = request_id::scope(id.clone(), async move {
        let response = next.run(request).instrument(span.clone()).await;
        let response = if oauth {
            response
        } else {
            problem::normalize(response)
        };
        (response, span)
    })
    .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }

    let status = response.status().as_u16();
    let latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    let _entered = span.enter();
    if let Some(report) = response.extensions().get::<ErrorReport>() {
        tracing::error!(status, latency_ms, cause = %report.0, "request failed");
    } else if status >= 500 {
        tracing::error!(status, latency_ms, "request failed");
    } else if quiet {
        tracing::debug!(status, latency_ms, "request");
    } else {
        tracing::info!(status, latency_ms, "request");
    }
    drop(_entered);
    response
}
