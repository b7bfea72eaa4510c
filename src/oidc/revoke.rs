//! `POST /oauth2/revoke` (RFC 7009): a client ends its own grant (with a refresh token or
//! one of the grant's access tokens) or one of its `client_credentials` tokens. Tokens of
//! other clients, and unknown ones, are answered 200 and left alone (§2.2).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::oauth::{ErrorBody, OAuthError, Params, no_store};
use super::{access, client_auth, grant_audit};
use crate::app::AppState;
use crate::audit::{Action, Entry as AuditEntry};
use crate::auth::sessions;
use crate::auth::tokens::AnyAccess;
use crate::http::ClientInfo;

/// RFC 7009 §2.1 form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form `Params` reads
struct RevokeForm {
    token: String,
    /// `access_token` or `refresh_token`; a hint only, both are tried.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Revoke a refresh or access token.
#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth2",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (unknown, or another client's token)."),
        (status = 400, description = "`invalid_request`: no `token`, or a bad body.", body = ErrorBody),
        (status = 401, description = "`invalid_client`: authentication failed.", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`.", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn revoke(
    State(app): State<AppState>,
    origin: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let params = Params::from_form(&headers, &body)?;
        let client = client_auth::authenticate(&app, &headers, &params).await?;
        let token = params.require("token")?.to_string();
        let holder = client.client_id.to_string();
        app.to_completion(move |app| async move {
            revoke_token(&app, &token, &holder, &origin).await?;
            Ok(())
        })
        .await
        .map_err(OAuthError::from)
    };
    match answer.await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(response.headers_mut());
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn revoke_token(
    app: &AppState,
    token: &str,
    holder: &str,
    origin: &ClientInfo,
) -> Result<(), sqlx::Error> {
    let mut tx = app.store.begin_write().await?;
    if let Some(grant) = sessions::find_by_refresh(&mut tx, token, holder).await? {
        return end_grant(
            app,
            tx,
            grant.id,
            grant.user_id,
            holder,
            origin,
            "refresh_token",
        )
        .await;
    }
    // An access token: only its signature matters here, a dead one has nothing left to end.
    if let Ok(AnyAccess::Client(claims)) = app.tokens.verify_any(token).await
        && claims.client_id == holder
    {
        match claims.sid.as_deref().map(Uuid::parse_str) {
            Some(Ok(sid)) => {
                if let Some(grant) = sessions::find_live(&mut tx, sid).await?
                    && grant.client_id.as_deref() == Some(holder)
                {
                    return end_grant(app, tx, sid, grant.user_id, holder, origin, "access_token")
                        .await;
                }
            }
            Some(Err(_)) => {}
            None => {
                access::revoke_client_token(&mut tx, &claims.jti, claims.exp).await?;
                let entry = AuditEntry::new(Action::TokenRevoked)
                    .target("client", holder)
                    .client(origin)
                    .detail("client_id", holder.to_string())
                    .detail("token_type", "access_token")
                    .detail("jti", claims.jti.clone());
                app.audit.record(&mut tx, entry).await?;
                tx.commit().await?;
            }
        }
    }
    Ok(())
}

async fn end_grant(
    app: &AppState,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    grant: Uuid,
    user: crate::accounts::UserId,
    holder: &str,
    origin: &ClientInfo,
    presented: &str,
) -> Result<(), sqlx::Error> {
    let revoked = sessions::revoke_family(&app.store, &mut tx, grant, "client_revoked").await?;
    let entry = grant_audit(Action::TokenRevoked, user, grant, holder, origin)
        .detail("token_type", presented.to_string());
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    app.sessions.forget(&revoked);
    Ok(())
}
