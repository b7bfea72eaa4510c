//! Whether one of our access tokens is good right now: signature and time (the token
//! service), then its session (a user's, or a client's grant) still alive, or, for a
//! client's own token, not revoked.

use uuid::Uuid;

use crate::app::AppState;
use crate::auth::sessions::{self, LiveSession};
use crate::auth::tokens::{AccessClaims, AnyAccess, ClientClaims};
use crate::store::now_micros;

/// A live access token.
#[derive(Debug, Clone)]
pub enum Live {
    /// A user's API token.
    User(AccessClaims),
    /// A client's token for a user's grant, with the grant session.
    Grant(ClientClaims, LiveSession),
    /// A `client_credentials` token.
    Client(ClientClaims),
}

/// The token, if it is ours and alive. Database trouble is an error, not "inactive".
pub async fn verify(app: &AppState, token: &str) -> Result<Option<Live>, sqlx::Error> {
    let Ok(access) = app.tokens.verify_any(token).await else {
        return Ok(None);
    };
    match access {
        AnyAccess::User(claims) => {
            let Ok(sid) = Uuid::parse_str(&claims.sid) else {
                return Ok(None);
            };
            Ok(app
                .sessions
                .is_active(&app.store, sid)
                .await?
                .then_some(Live::User(claims)))
        }
        AnyAccess::Client(claims) => match claims.sid.as_deref().map(Uuid::parse_str) {
            Some(Ok(sid)) => {
                let mut conn = app.store.pool().acquire().await?;
                let live = sessions::find_live(&mut conn, sid).await?;
                Ok(live
                    .filter(|s| s.client_id.as_deref() == Some(claims.client_id.as_str()))
                    .map(|s| Live::Grant(claims, s)))
            }
            Some(Err(_)) => Ok(None),
            None => Ok((!is_revoked(app, &claims.jti).await?).then_some(Live::Client(claims))),
        },
    }
}

async fn is_revoked(app: &AppState, jti: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT jti FROM oidc_revoked_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(app.store.pool())
            .await?;
    Ok(found.is_some())
}

/// Records a `client_credentials` token as revoked until it expires (seconds), sweeping the
/// records of tokens that have expired anyway.
pub async fn revoke_client_token(
    conn: &mut sqlx::AnyConnection,
    jti: &str,
    exp_secs: i64,
) -> Result<(), sqlx::Error> {
    let now = now_micros();
    sqlx::query("DELETE FROM oidc_revoked_tokens WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO oidc_revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
        .bind(jti)
        .bind(exp_secs.saturating_mul(1_000_000))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
