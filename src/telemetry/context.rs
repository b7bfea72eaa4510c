//! What every log line of a request carries: its id, method, matched route and, once known,
//! the user. Held in a task-local for the duration of the request, so the log formatters add
//! it to every event the request causes without a tracing span per request (creating,
//! entering and closing one cost more than the rest of a cached `GET /users/me`).

use std::future::Future;
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    pub method: http::Method,
    pub route: Route,
    user_id: OnceLock<String>,
}

/// The matched route pattern (shared with the router, not copied), or none.
#[derive(Debug, Clone)]
pub enum Route {
    Matched(axum::extract::MatchedPath),
    Unmatched,
}

impl Route {
    pub fn as_str(&self) -> &str {
        match self {
            Route::Matched(p) => p.as_str(),
            Route::Unmatched => "unmatched",
        }
    }
}

impl RequestContext {
    pub fn new(request_id: Arc<str>, method: http::Method, route: Route) -> Self {
        RequestContext {
            request_id,
            method,
            route,
            user_id: OnceLock::new(),
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user_id.get().map(String::as_str)
    }
}

tokio::task_local! {
    static CONTEXT: Arc<RequestContext>;
}

/// Runs `f` as the request described by `context`.
pub async fn scope<F: Future>(context: Arc<RequestContext>, f: F) -> F::Output {
    CONTEXT.scope(context, f).await
}

/// The context of the request being served on this task, if any.
pub fn current() -> Option<Arc<RequestContext>> {
    CONTEXT.try_with(Arc::clone).ok()
}

/// Reads the current context without cloning it.
pub fn with_current<R>(f: impl FnOnce(&RequestContext) -> R) -> Option<R> {
    CONTEXT.try_with(|c| f(c)).ok()
}

/// Records who the current request is from (first caller wins).
pub fn set_user(user_id: impl std::fmt::Display) {
    let _ = CONTEXT.try_with(|c| c.user_id.set(user_id.to_string()));
}
