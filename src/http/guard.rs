//! The guard in front of every route, in two parts with CORS between them:
//!
//! - [`ClientGuard`], run by the outermost edge layer, resolves the client (trusted
//!   proxies) and puts the security headers on whatever comes back, CORS preflights and
//!   refusals included;
//! - [`GuardLayer`] (inside CORS) hides the admin API from networks outside the allow-list
//!   and applies the per-IP rate limit. Being inside CORS, its refusals carry the CORS
//!   headers a browser needs to let the page read them.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use super::client::{self, ClientAddr};
use super::headers::SecurityHeaders;
use super::ratelimit::{RateLimits, Rule};
use super::server::Tls;
use crate::config::{Config, ForwardedHeader, NetList};
use crate::error::AppError;

/// The admin API's path prefix, hidden from networks outside `admin_allowed_networks`.
const ADMIN_PREFIX: &str = "/api/v1/admin";

/// Who the client is and which headers every answer gets.
pub struct ClientGuard {
    trusted_proxies: NetList,
    forwarded_header: ForwardedHeader,
    headers: SecurityHeaders,
}

impl ClientGuard {
    pub fn new(config: &Config) -> ClientGuard {
        ClientGuard {
            trusted_proxies: config.trusted_proxies.clone(),
            forwarded_header: config.forwarded_header,
            headers: SecurityHeaders::new(config.hsts_max_age),
        }
    }

    /// Resolves the client of `request` and records it there for everything inside.
    pub fn admit(&self, request: &mut Request) -> ClientAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let tls = request.extensions().get::<Tls>().is_some();
        let client = client::resolve(
            peer,
            tls,
            request.headers(),
            &self.trusted_proxies,
            self.forwarded_header,
        );
        request.extensions_mut().insert(client);
        client
    }

    /// Puts the security headers on the answer to `client`.
    pub fn finish(&self, response: &mut Response, client: ClientAddr) {
        self.headers.apply(response.headers_mut(), client.https);
    }
}

/// What a client may reach and how often.
pub struct Guard {
    admin_networks: NetList,
    limits: Arc<RateLimits>,
}

impl Guard {
    pub fn new(config: &Config, limits: Arc<RateLimits>) -> Guard {
        Guard {
            admin_networks: config.admin_allowed_networks.clone(),
            limits,
        }
    }

    /// Decides before the router runs; `Some` is the answer instead of it.
    async fn screen(&self, client: ClientAddr, path: &str) -> Option<Response> {
        let admin = path
            .strip_prefix(ADMIN_PREFIX)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        // A client a proxy could not name is nobody the allow-list can vouch for.
        // Metrics on the main listener are an operator's view too: the same networks see them.
        if (admin || path == "/metrics")
            && !self.admin_networks.is_empty()
            && !(client.placed && self.admin_networks.contains(client.ip))
        {
            return Some(AppError::NotFound.into_response());
        }
        if !matches!(path, "/health" | "/ready" | "/metrics")
            && let Err(retry_after) = self.limits.check(Rule::Global, client.ip).await
        {
            crate::telemetry::metrics::rate_limited("global");
            return Some(
                AppError::RateLimited {
                    retry_after,
                    detail: "Too many requests from your address; see Retry-After.",
                }
                .into_response(),
            );
        }
        None
    }
}

#[derive(Clone)]
pub struct GuardLayer(pub Arc<Guard>);

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            guard: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct GuardService<S> {
    guard: Arc<Guard>,
    inner: S,
}

impl<S> Service<Request> for GuardService<S>
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let client = request
                .extensions()
                .get::<ClientAddr>()
                .copied()
                .unwrap_or(ClientAddr {
                    ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    https: false,
                    placed: false,
                });
            if let Some(refused) = guard.screen(client, request.uri().path()).await {
                return Ok(refused);
            }
            inner.call(request).await
        })
    }
}
