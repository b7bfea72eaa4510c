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

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

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
