//! `/health` answers while the process can serve; `/ready` also needs the database.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::AppState;
use crate::http::problem::KeepBody;

/// Readiness must answer quickly even when the database hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, ready, super::metrics::metrics))]
pub struct Doc;

#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON the handlers build
struct Health {
    #[schema(example = "ok")]
    status: String,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    status: String,
    /// Each dependency: `ok` or `down`.
    #[schema(value_type = Object, example = json!({"database": "ok"}))]
    checks: serde_json::Map<String, serde_json::Value>,
}

/// The main listener's operations routes; `/metrics` is among them unless it has a listener
/// of its own (`metrics_addr`).
pub fn router(metrics_here: bool) -> Router<AppState> {
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready));
    if metrics_here {
        router.route("/metrics", get(super::metrics::metrics))
    } else {
        router
    }
}

/// The separate metrics listener serves only this.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(super::metrics::metrics))
}

/// Liveness: 200 while the process can serve.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive.", body = Health)))]
async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Readiness: 200 when the database answers, else 503 with `Retry-After`.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve.", body = Readiness),
        (status = 503, description = "Not ready; a load balancer should route elsewhere.", body = Readiness,
            headers(("Retry-After" = u32, description = "Seconds to wait."))),
    ))]
async fn ready(State(app): State<AppState>) -> Response {
    let database_up = tokio::time::timeout(READY_TIMEOUT, app.store.ping())
        .await
        .unwrap_or(false);
    if database_up {
        axum::Json(json!({ "status": "ready", "checks": { "database": "ok" } })).into_response()
    } else {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "not_ready", "checks": { "database": "down" } })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        response.extensions_mut().insert(KeepBody);
        response
    }
}
