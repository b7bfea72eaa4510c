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

/// The edge as a tower layer (cheaper per request than `from_fn`, which boxes the inner
/// service on every call). It also runs the client half of the guard, so that every
/// answer, even one rendered here, gets the security headers.
#[derive(Clone)]
pub struct EdgeLayer(pub Arc<ClientGuard>);

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            guard: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    guard: Arc<ClientGuard>,
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
        Box::pin(async move { Ok(handle(request, inner, guard).await) })
    }
}

async fn handle<S>(mut request: Request, mut inner: S, guard: Arc<ClientGuard>) -> Response
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
        let latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
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
    })
    .await
}
