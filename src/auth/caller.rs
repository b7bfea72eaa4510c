//! `Caller`: the authenticated user behind a request, from `Authorization: Bearer`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::sync::Arc;

use uuid::Uuid;

use super::amr;
use super::tokens::Verified;

use crate::accounts::{User, UserId};
use crate::app::AppState;
use crate::error::AppError;
use crate::http::ClientInfo;
use crate::roles::Principal;
use crate::roles::service::Actor;

/// Who is calling: the user, the session the token belongs to, and what the token says
/// (its roles among it; shared with the token cache, not copied).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub session_id: Uuid,
    pub token: Arc<Verified>,
}

impl Caller {
    /// The caller as the permission check sees it: its account, and whether its session
    /// passed a second factor (the token's `amr`, fixed at login for the session's life).
    pub fn principal(&self) -> Principal {
        Principal {
            user: self.user_id,
            mfa: amr::is_multi_factor(&self.token.amr),
        }
    }

    /// The caller's account as stored now. Erased since the token was issued: the same 401
    /// as an ended session.
    pub async fn account(&self, app: &AppState) -> Result<User, AppError> {
        crate::accounts::store::find_by_id(app.store.pool(), self.user_id)
            .await?
            .ok_or(AppError::Unauthorized {
                detail: "The account no longer exists.",
                token_sent: true,
            })
    }

    /// The caller as the author of an admin change.
    pub fn actor(&self, client: ClientInfo) -> Actor {
        Actor::Admin {
            user: self.user_id,
            mfa: self.principal().mfa,
            client,
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme is case-insensitive,
/// RFC 7235 §2.1). `None` when there is no header or it uses another scheme.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, AppError> {
        let Some(token) = bearer_token(parts) else {
            return Err(AppError::Unauthorized {
                detail: "A bearer access token is required.",
                token_sent: false,
            });
        };
        authenticate(app, token).await
    }
}

/// Who `token` (an access token) speaks for, checked as every `/api/v1` request is: a token
/// of ours, unexpired, not issued to an OIDC client, whose session is still alive. Also
/// used where the token does not come in a header (the live events socket).
pub async fn authenticate(app: &AppState, token: &str) -> Result<Caller, AppError> {
    let verified = app.tokens.verify(token).await.map_err(|e| {
        tracing::debug!(reason = %e, "access token refused");
        AppError::Unauthorized {
            detail: "The access token is invalid or expired.",
            token_sent: true,
        }
    })?;
    if !app
        .sessions
        .is_active(&app.store, verified.session_id)
        .await?
    {
        return Err(AppError::Unauthorized {
            detail: "The session of this access token has ended.",
            token_sent: true,
        });
    }
    crate::telemetry::context::set_user(verified.user_id);
    Ok(Caller {
        user_id: verified.user_id,
        session_id: verified.session_id,
        token: verified,
    })
}
