//! `POST /api/v1/admin/keys/rotate`: new signing keys now.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::app::AppState;
use crate::audit::Action;
use crate::auth::Caller;
use crate::crypto::keys::rotation::{self, Previous};
use crate::error::{AppError, ProblemBody};
use crate::http::{ClientInfo, Json};
use crate::roles::{self, Permission};

#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedView {
    /// The new key that signs access tokens from now on (as in the tokens' `kid` header).
    kid: String,
}

/// Rotate the token signing keys.
///
/// A new key of each algorithm (EdDSA, RS256, ES256) signs from now on, on every instance.
/// The previous keys stop signing but stay in `/oauth2/jwks`, and verify, until every token
/// they signed has expired: max(access token lifetime, 1 hour) plus 30 seconds; then they are
/// deleted. Audited as `key_rotated` with the new and the previous `kid`.
#[utoipa::path(post, path = "/api/v1/admin/keys/rotate", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys were rotated.", body = RotatedView),
        (status = 401, description = "No valid access token.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks `keys:rotate` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn rotate(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::KeysRotate).await?;
    let entry = caller.actor(client).entry(Action::KeyRotated);
    let rotated = app
        .to_completion(move |app| async move {
            rotation::rotate(&app.store, &app.keys, &app.audit, entry, Previous::Retire).await
        })
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(RotatedView { kid: rotated.kid }),
    ))
}
