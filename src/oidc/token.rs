//! `POST /oauth2/token` (RFC 6749 §3.2): authorization codes (with PKCE, RFC 7636), refresh
//! tokens (rotated, reuse ends the grant) and client credentials. Every answer is no-store.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;

use super::clients::{AuthMethod, Client, GrantType, Scope};
use super::codes::{self, Claim};
use super::id_token::{self, IdTokenInput};
use super::oauth::{ErrorBody, OAuthError, Params, json_no_store};
use super::{client_auth, grant_audit};
use crate::accounts::{User, UserId};
use crate::app::AppState;
use crate::audit::{Action, Entry as AuditEntry};
use crate::auth::sessions::{self, NewSession, Rotation};
use crate::auth::tokens::ClientGrant;
use crate::http::ClientInfo;

/// Scopes about the user, which a client acting for itself cannot have.
const USER_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// RFC 6749 §5.1 (and OIDC Core §3.1.3.3) success body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// An RFC 9068 JWT access token.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    expires_in: u64,
    /// The scope the access token carries.
    scope: String,
    /// Rotated on every use; only for clients allowed the `refresh_token` grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// With the `openid` scope, on the code and refresh grants.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

/// The form of a token request (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form `Params` reads
struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    grant_type: String,
    /// authorization_code: the code from the authorization response.
    code: Option<String>,
    /// authorization_code: exactly the `redirect_uri` of the authorization request.
    redirect_uri: Option<String>,
    /// authorization_code: the PKCE verifier (RFC 7636), when the request had a challenge.
    code_verifier: Option<String>,
    /// refresh_token: the refresh token.
    refresh_token: Option<String>,
    /// refresh_token: a narrower scope; client_credentials: the scope wanted.
    scope: Option<String>,
    /// RFC 8707: the absolute URI of the resource server the access token is for (its `aud`).
    resource: Option<String>,
    /// `client_secret_post` and public clients.
    client_id: Option<String>,
    /// `client_secret_post`.
    client_secret: Option<String>,
}

/// Exchange a grant for tokens.
///
/// Client authentication as registered: HTTP Basic (`client_secret_basic`, id and secret
/// form-urlencoded), form fields (`client_secret_post`), or `client_id` alone for public
/// clients (which must use PKCE). Errors are RFC 6749 §5.2 JSON.
#[utoipa::path(post, path = "/oauth2/token", tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses(
        (status = 200, description = "Tokens.", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope` or `invalid_target`.", body = ErrorBody),
        (status = 401, description = "`invalid_client`: client authentication failed.", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`.", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn token(
    State(app): State<AppState>,
    origin: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let params = Params::from_form(&headers, &body)?;
        let client = client_auth::authenticate(&app, &headers, &params).await?;
        let grant = params.require("grant_type")?;
        let resource = resource(&params)?;
        match grant {
            "authorization_code" => {
                authorization_code(&app, &client, &params, resource, origin).await
            }
            "refresh_token" => refresh(&app, &client, &params, resource, origin).await,
            "client_credentials" => client_credentials(&app, &client, &params, resource).await,
            _ => Err(OAuthError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The grant_type is not supported.",
            )),
        }
    };
    match answer.await {
        Ok(body) => json_no_store(&body),
        Err(e) => e.into_response(),
    }
}

/// RFC 8707 §2: one absolute URI without a fragment.
fn resource(params: &Params) -> Result<Option<String>, OAuthError> {
    let Some(raw) = params.get("resource") else {
        return Ok(None);
    };
    let target = || {
        OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_target",
            "`resource` must be an absolute URI without a fragment.",
        )
    };
    let url = url::Url::parse(raw).map_err(|_| target())?;
    if url.fragment().is_some() || raw.len() > 2000 {
        return Err(target());
    }
    Ok(Some(raw.to_string()))
}

fn require_grant(client: &Client, grant: GrantType) -> Result<(), OAuthError> {
    if client.spec.allows(grant) {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(format!(
            "The client may not use the {} grant.",
            grant.as_str()
        )))
    }
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    // §4.1: 43..=128 unreserved characters.
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

async fn live_user(app: &AppState, user: UserId) -> Result<User, OAuthError> {
    match crate::accounts::store::find_by_id(app.store.pool(), user).await? {
        Some(u) if u.disabled_at.is_none() => Ok(u),
        _ => Err(OAuthError::invalid_grant("The grant is no longer valid.")),
    }
}

#[tracing::instrument(skip_all)]
async fn authorization_code(
    app: &AppState,
    client: &Client,
    params: &Params,
    resource: Option<String>,
    origin: ClientInfo,
) -> Result<TokenResponse, OAuthError> {
    require_grant(client, GrantType::AuthorizationCode)?;
    let code = params.require("code")?.to_string();
    let redirect_uri = params.require("redirect_uri")?.to_string();
    let verifier = params.get("code_verifier").map(str::to_string);
    let client = client.clone();
    // Run to completion: a client that hangs up must not leave a claimed code without its
    // grant.
    app.to_completion(move |app| async move {
        Ok(exchange_code(
            &app,
            &client,
            &code,
            &redirect_uri,
            verifier,
            resource,
            &origin,
        )
        .await)
    })
    .await
    .map_err(OAuthError::from)?
}

async fn exchange_code(
    app: &AppState,
    client: &Client,
    code: &str,
    redirect_uri: &str,
    verifier: Option<String>,
    resource: Option<String>,
    origin: &ClientInfo,
) -> Result<TokenResponse, OAuthError> {
    let invalid =
        || OAuthError::invalid_grant("The authorization code is invalid, expired or used.");
    let mut tx = app.store.begin_write().await?;
    let row = match codes::claim(&mut tx, code).await? {
        Claim::Unknown => return Err(invalid()),
        Claim::Reused { grant_session, .. } => {
            // RFC 6749 §4.1.2: a code used twice revokes what its first use produced.
            if let Some(grant) = grant_session {
                let revoked =
                    sessions::revoke_family(&app.store, &mut tx, grant, "code_reused").await?;
                if !revoked.is_empty() {
                    let entry = AuditEntry::new(Action::CodeReuseDetected)
                        .failure()
                        .target("session", grant)
                        .client(origin)
                        .detail("client_id", client.client_id.to_string())
                        .detail("grant_revoked", true);
                    app.audit.record(&mut tx, entry).await?;
                }
                tx.commit().await?;
                app.sessions.forget(&revoked);
            }
            return Err(invalid());
        }
        Claim::Fresh(row) => row,
    };
    if row.code.client_id != client.client_id {
        // Not this client's: leave the code to its owner (the claim rolls back).
        return Err(invalid());
    }
    let code_row = &row.code;
    let pkce_ok = match (&code_row.code_challenge, &verifier) {
        (Some(challenge), Some(v)) => pkce_matches(challenge, v),
        (None, None) => client.spec.token_endpoint_auth_method != AuthMethod::None,
        _ => false,
    };
    if code_row.redirect_uri != redirect_uri || !pkce_ok {
        // The code is spent either way: a wrong guess must not leave it open to the next.
        tx.commit().await?;
        return Err(OAuthError::invalid_grant(
            "The redirect_uri or code_verifier does not match the authorization request.",
        ));
    }
    let Some(browser) = sessions::find_live(&mut tx, code_row.browser_session).await? else {
        tx.commit().await?;
        return Err(invalid());
    };
    let user = match crate::accounts::store::find_by_id(&mut *tx, code_row.user_id).await? {
        Some(u) if u.disabled_at.is_none() && u.id == browser.user_id => u,
        _ => {
            tx.commit().await?;
            return Err(invalid());
        }
    };
    let client_id = client.client_id.to_string();
    let created = sessions::create_with(
        &mut tx,
        &NewSession {
            user: user.id,
            ip: &origin.ip,
            user_agent: origin.user_agent.as_deref(),
            mfa_method: code_row.mfa_method.as_deref(),
            ttl: app.config.refresh_token_ttl,
            client_id: Some(&client_id),
            parent_id: Some(code_row.browser_session),
            scope: Some(&code_row.scope),
            auth_time: Some(code_row.auth_time),
            browser_token_hash: None,
            refresh: client.spec.allows(GrantType::RefreshToken),
        },
    )
    .await?;
    codes::attach_grant(&mut tx, &row.code_hash, created.session_id).await?;
    app.audit
        .record(
            &mut tx,
            grant_audit(
                Action::TokenIssued,
                user.id,
                created.session_id,
                &client_id,
                origin,
            )
            .detail("grant_type", "authorization_code")
            .detail("scope", code_row.scope.clone()),
        )
        .await?;
    tx.commit().await?;
    let tokens = Tokens {
        user: &user,
        session: created.session_id,
        scope: &code_row.scope,
        mfa_method: code_row.mfa_method.as_deref(),
        auth_time_micros: created.auth_time,
        browser_session: Some(code_row.browser_session),
        nonce: code_row.nonce.as_deref(),
        resource: resource.as_deref(),
    };
    tokens.issue(app, client, created.refresh_token).await
}

/// What the access and ID tokens of a user's grant say.
struct Tokens<'a> {
    user: &'a User,
    session: Uuid,
    scope: &'a str,
    mfa_method: Option<&'a str>,
    auth_time_micros: i64,
    browser_session: Option<Uuid>,
    nonce: Option<&'a str>,
    resource: Option<&'a str>,
}

impl Tokens<'_> {
    async fn issue(
        &self,
        app: &AppState,
        client: &Client,
        refresh_token: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let roles =
            crate::roles::for_session(app.store.pool(), self.user.id, self.mfa_method.is_some())
                .await?;
        let amr = crate::auth::amr::values(self.mfa_method);
        let client_id = client.client_id.to_string();
        let user_id = self.user.id.to_string();
        let (access, _) = app
            .tokens
            .issue_for_client(ClientGrant {
                client_id: &client_id,
                sub: &user_id,
                session: Some(self.session),
                scope: self.scope,
                audience: self.resource,
                auth_time: Some(self.auth_time_micros.div_euclid(1_000_000)),
                roles,
                amr: amr.clone(),
            })
            .map_err(|e| OAuthError::from(crate::error::AppError::Internal(e.into())))?;
        let id_token = if self.scope.split(' ').any(|s| s == "openid") {
            Some(
                id_token::sign(
                    app,
                    IdTokenInput {
                        client,
                        user: self.user,
                        scope: self.scope,
                        auth_time_micros: self.auth_time_micros,
                        nonce: self.nonce,
                        access_token: &access.token,
                        browser_session: self.browser_session,
                        amr,
                    },
                )
                .map_err(|e| OAuthError::from(crate::error::AppError::Internal(e)))?,
            )
        } else {
            None
        };
        Ok(TokenResponse {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_in,
            scope: self.scope.to_string(),
            refresh_token,
            id_token,
        })
    }
}

/// `scope` of a request as a subset of `allowed` (RFC 6749 §3.3); `None` when absent.
fn narrower_scope(raw: Option<&str>, allowed: &str) -> Result<Option<String>, OAuthError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let wanted = Scope::parse(raw).map_err(|e| OAuthError::invalid_scope(format!("scope {e}.")))?;
    let allowed: Vec<&str> = allowed.split(' ').collect();
    if let Some(extra) = wanted.as_str().split(' ').find(|s| !allowed.contains(s)) {
        return Err(OAuthError::invalid_scope(format!(
            "The scope `{extra}` is not granted."
        )));
    }
    Ok(Some(wanted.as_str().to_string()))
}

#[tracing::instrument(skip_all)]
async fn refresh(
    app: &AppState,
    client: &Client,
    params: &Params,
    resource: Option<String>,
    origin: ClientInfo,
) -> Result<TokenResponse, OAuthError> {
    require_grant(client, GrantType::RefreshToken)?;
    let presented = SecretString::from(params.require("refresh_token")?.to_string());
    let requested = params.get("scope").map(str::to_string);
    let client_id = client.client_id.to_string();
    let holder = client_id.clone();
    // A scope the grant does not cover is refused before the token is spent.
    if requested.is_some() {
        let mut conn = app.store.pool().acquire().await?;
        if let Some(grant) =
            sessions::find_by_refresh(&mut conn, presented.expose_secret(), &holder).await?
        {
            narrower_scope(
                requested.as_deref(),
                grant.scope.as_deref().unwrap_or_default(),
            )?;
        }
    }
    let rotation = app
        .to_completion(move |app| async move {
            Ok(sessions::rotate(
                &app.store,
                &app.audit,
                presented.expose_secret(),
                app.config.refresh_token_ttl,
                &origin,
                Some(&holder),
            )
            .await?)
        })
        .await?;
    let invalid =
        || OAuthError::invalid_grant("The refresh token is invalid, expired or already used.");
    match rotation {
        Rotation::Rotated {
            user_id,
            session_id,
            refresh_token,
            mfa_method,
            scope,
            parent_id,
            auth_time,
        } => {
            let granted = scope.unwrap_or_default();
            let scope = narrower_scope(requested.as_deref(), &granted)?.unwrap_or(granted);
            let user = live_user(app, user_id).await?;
            let tokens = Tokens {
                user: &user,
                session: session_id,
                scope: &scope,
                mfa_method: mfa_method.as_deref(),
                auth_time_micros: auth_time,
                browser_session: parent_id,
                nonce: None,
                resource: resource.as_deref(),
            };
            tokens.issue(app, client, Some(refresh_token)).await
        }
        Rotation::Reused { session_id, .. } => {
            app.sessions.forget(&[session_id]);
            Err(invalid())
        }
        Rotation::Rejected => Err(invalid()),
    }
}

#[tracing::instrument(skip_all)]
async fn client_credentials(
    app: &AppState,
    client: &Client,
    params: &Params,
    resource: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    if !client.spec.token_endpoint_auth_method.is_confidential() {
        return Err(OAuthError::unauthorized_client(
            "A public client cannot use the client_credentials grant.",
        ));
    }
    require_grant(client, GrantType::ClientCredentials)?;
    let allowed: Vec<&str> = client
        .spec
        .scope
        .as_str()
        .split(' ')
        .filter(|s| !USER_SCOPES.contains(s))
        .collect();
    let scope = match narrower_scope(params.get("scope"), &allowed.join(" "))? {
        Some(s) => s,
        None => allowed.join(" "),
    };
    let client_id = client.client_id.to_string();
    let (access, claims) = app
        .tokens
        .issue_for_client(ClientGrant {
            client_id: &client_id,
            sub: &client_id,
            session: None,
            scope: &scope,
            audience: resource.as_deref(),
            auth_time: None,
            roles: Vec::new(),
            amr: Vec::new(),
        })
        .map_err(|e| OAuthError::from(crate::error::AppError::Internal(e.into())))?;
    let entry = AuditEntry::new(Action::TokenIssued)
        .target("client", &client_id)
        .detail("client_id", client_id.clone())
        .detail("grant_type", "client_credentials")
        .detail("scope", scope.clone())
        .detail("jti", claims.jti);
    let mut tx = app.store.begin_write().await?;
    app.audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        scope,
        refresh_token: None,
        id_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(challenge, verifier));
        assert!(!pkce_matches(
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"
        ));
        assert!(!pkce_matches(challenge, "short"));
    }
}
