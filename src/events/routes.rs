//! `GET /api/v1/events`: the WebSocket upgrade.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};

use crate::app::AppState;
use crate::error::AppError;
use crate::http::cors;
use crate::http::server::ConnectionSlot;
use crate::telemetry::context;

/// Largest client message or frame. Clients send a token or a subscription, never more than
/// a few hundred bytes; the cap keeps anyone from making the server buffer megabytes.
pub const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events", get(connect))
}

/// Upgrades to the events socket. A browser's `Origin` must be allowed by `cors_origins`
/// (browsers apply no CORS to WebSockets, so this check is the only one): otherwise 403,
/// before anything is upgraded.
async fn connect(
    State(app): State<AppState>,
    headers: HeaderMap,
    slot: Option<Extension<ConnectionSlot>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let origin = headers.get(header::ORIGIN);
    if !cors::origin_allowed(&app.config, origin) {
        tracing::info!(origin = ?origin, "events socket refused: origin not allowed");
        return Err(AppError::Forbidden);
    }
    let upgrade = upgrade.map_err(|rejection| {
        AppError::Malformed(format!(
            "This address is a WebSocket (API.md, Live events): {rejection}"
        ))
    })?;
    let slot = slot.map(|Extension(slot)| slot);
    // The socket outlives the request; its log lines keep the request's id.
    let request = context::current();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let serve = super::socket::run(socket, app, slot);
            match request {
                Some(request) => context::scope(request, serve).await,
                None => serve.await,
            }
        }))
}
