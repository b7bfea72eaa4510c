//! The outermost middleware, in one pass: request id, the request context that every log line
//! of the request carries (method, matched route, request id, user id once known),
//! problem+json for every error our handlers did not render, and one log line per request
//! (status, latency). Internal error causes are logged here, never in the response.
//! `/oauth2/*` keeps its OAuth error format.

use std::time::Instant;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::Response;
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use super::guard::ClientGuard;
use super::problem;
use super::request_id::{self, X_REQUEST_ID};
use crate::error::ErrorReport;
use crate::telemetry::context::{self, RequestContext, Route};
use crate::telemetry::errors::{Failure, Reporter};
use crate::telemetry::metrics;

/// The edge as a tower layer (cheaper per request than `from_fn`, which boxes the inner
/// service on every call). It also runs the client half of the guard, so that every
/// answer, even one rendered here, gets the security headers.
#[derive(Clone)]
pub struct EdgeLayer {
    pub guard: Arc<ClientGuard>,
    /// Where server-caused failures are reported, when error reporting is on.
    pub reporter: Option<Arc<Reporter>>,
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            guard: self.guard.clone(),
            reporter: self.reporter.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    guard: Arc<ClientGuard>,
    reporter: Option<Arc<Reporter>>,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The instance that was polled ready serves this request (tower's clone-and-swap).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let reporter = self.reporter.clone();
        Box::pin(async move { Ok(handle(request, inner, guard, reporter).await) })
    }
}

async fn handle<S>(
    mut request: Request,
    mut inner: S,
    guard: Arc<ClientGuard>,
    reporter: Option<Arc<Reporter>>,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let started = Instant::now();
    let client = guard.admit(&mut request);
    let id = request_id::from_headers(request.headers());
    let oauth = request.uri().path().starts_with("/oauth2/");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .cloned()
        .map_or(Route::Unmatched, Route::Matched);
    let quiet = matches!(route.as_str(), "/health" | "/ready");
    let context = Arc::new(RequestContext::new(
        id.clone(),
        request.method().clone(),
        route,
    ));

    let labels = context.clone();
    context::scope(context, async move {
        let response = match inner.call(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let mut response = if oauth {
            response
        } else {
            problem::normalize(response)
        };
        guard.finish(&mut response, client);
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(X_REQUEST_ID.clone(), value);
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        metrics::record_request(&labels.method, labels.route.as_str(), status, elapsed);
        let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let report = response.extensions().get::<ErrorReport>();
        // Our own failures, not a busy hashing pool or an unready instance answering 503.
        if let Some(reporter) = &reporter
            && (status == 500 || (status > 500 && report.is_some()))
        {
            reporter.report(&Failure {
                status,
                method: labels.method.as_str(),
                route: labels.route.as_str(),
                request_id: &id,
                user_id: labels.user_id(),
                cause: report.map(|r| &*r.0),
            });
        }
        if let Some(report) = report {
            tracing::error!(status, latency_ms, cause = %report.0, "request failed");
        } else if status >= 500 {
            tracing::error!(status, latency_ms, "request failed");
        } else if quiet {
            tracing::debug!(status, latency_ms, "request");
        } else {
            tracing::info!(status, latency_ms, "request");
        }
        response
    })
    .await
}
