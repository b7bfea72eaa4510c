//! One span per request (method, matched route, request id, user id once known) and one log
//! line when it finishes (status, latency). Internal error causes are logged here, inside the
//! span, never in the response.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::{Instrument, Span, field};

use crate::error::ErrorReport;
use crate::http::request_id::RequestId;

/// The span of the current request, for extractors that learn who is calling.
#[derive(Debug, Clone)]
pub struct RequestSpan(pub Span);

impl RequestSpan {
    pub fn record_user(&self, user_id: &impl std::fmt::Display) {
        self.0.record("user_id", field::display(user_id));
    }
}

pub async fn middleware(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let quiet = route == "/health" || route == "/ready";
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
        user_id = field::Empty,
    );
    request.extensions_mut().insert(RequestSpan(span.clone()));
    let response = next.run(request).instrument(span.clone()).await;

    let status = response.status().as_u16();
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
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
    response
}
