//! `GET /api/v1/events`: the WebSocket upgrade.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};

use crate::app::AppState;
use crate::error::{AppError, ProblemBody};
use crate::http::cors;
use crate::http::server::ConnectionSlot;
use crate::telemetry::context;

/// Largest client message or frame. Clients send a token or a subscription, never more than
/// a few hundred bytes; the cap keeps anyone from making the server buffer megabytes.
pub const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

/// The OpenAPI description of this route.
#[derive(utoipa::OpenApi)]
#[openapi(paths(connect))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events", get(connect))
}

// Upgrades to the events socket. A browser's `Origin` must be allowed by `cors_origins`
// (browsers apply no CORS to WebSockets, so this check is the only one): otherwise 403,
// before anything is upgraded.
/// Open the live events WebSocket.
///
/// After the upgrade the client sends `{"type": "auth", "token": "<access token>"}` within
/// 10 s and gets `{"type": "ready"}`; with `audit:read` it may send `{"type": "subscribe",
/// "stream": "audit"}`. Events arrive as `{"type": "event", "event": <audit entry>}`.
/// Close codes: 4401 bad token, first message not `auth`, or the token expired or its session
/// ended (reconnect with a fresh token), 4403 not allowed, 4408 nothing
/// within the time limit or pongs missed, 1008 too slow to read, 1001 server shutting down.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses(
        (status = 101, description = "Switched to the WebSocket protocol."),
        (status = 400, description = "Not a WebSocket upgrade request.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The browser's `Origin` is not in `PORTVAKT_CORS_ORIGINS`.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
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
