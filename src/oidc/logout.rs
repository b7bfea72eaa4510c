//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the browser session and
//! every grant it authorized, clears the cookie, and goes back to the client or says "signed
//! out".
//!
//! With a valid `id_token_hint` (our signature; expiry ignored, §2) the logout happens at
//! once. Without one, a browser that has a session is asked to confirm (a CSRF-protected
//! form), so that a link on another site cannot sign the user out.

use std::collections::{HashMap, HashSet};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::browser;
use super::clients::{self, ClientId};
use super::pages::{self, Page, PageError, PageResult};
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::auth::sessions::{self, LiveSession};
use crate::auth::tokens::{ACCESS_TOKEN_TYPE, Audience};
use crate::http::ClientInfo;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(logout_get, logout_post))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth2/logout", get(logout_get).post(logout_post))
}

const CSRF_PURPOSE: &str = "logout";

/// What an ID token hint tells.
#[derive(Debug, Deserialize)]
struct Hint {
    sub: String,
    aud: Audience,
}

/// An ID token we signed, whatever its age (RP-Initiated Logout §2: expired hints are fine).
async fn verify_hint(app: &AppState, token: &str) -> Option<Hint> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    // An access token is not an ID token.
    if header.typ.as_deref() == Some(ACCESS_TOKEN_TYPE) {
        return None;
    }
    let (alg, key) = app.keys.decoding_key(header.kid.as_deref()?).await?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::from(["iss".to_owned(), "sub".to_owned()]);
    validation.set_issuer(&[&app.config.issuer]);
    jsonwebtoken::decode::<Hint>(token, &key, &validation)
        .ok()
        .map(|d| d.claims)
}

/// End the browser session (RP-initiated logout).
///
/// With a valid `id_token_hint` naming the user of this browser's session, that session ends
/// at once, with every grant (refresh token) it authorized; then a 303 to
/// `post_logout_redirect_uri` (with `state`) or a "signed out" page. Otherwise a browser with
/// a session gets a confirmation form first (RP-Initiated Logout 1.0 §2): a hint alone, which
/// may be old or leaked, never ends a session.
#[utoipa::path(get, path = "/oauth2/logout", tag = "oauth2",
    params(
        ("id_token_hint" = Option<String>, Query, description = "An ID token we issued; expired ones are fine."),
        ("client_id" = Option<String>, Query, description = "The client, when there is no hint."),
        ("post_logout_redirect_uri" = Option<String>, Query, description = "One of the client's registered post-logout redirect URIs."),
        ("state" = Option<String>, Query, description = "Returned unchanged with the redirect."),
    ),
    responses(
        (status = 200, description = "The confirmation form, or the signed-out page.", content_type = "text/html", body = String),
        (status = 303, description = "Signed out: back to `post_logout_redirect_uri` with `state`."),
        (status = 400, description = "A query that is not form-encoded, an invalid hint, an unknown client, or an unregistered `post_logout_redirect_uri`: an error page.", content_type = "text/html", body = String),
    ))]
async fn logout_get(
    State(app): State<AppState>,
    client_info: ClientInfo,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(fields) = fields(query.unwrap_or_default().as_bytes()) else {
        return not_a_form();
    };
    logout(&app, &client_info, &headers, &fields, false)
        .await
        .into_response()
}

/// End the browser session, with the parameters (or the confirmation form's fields) in a form body.
#[utoipa::path(post, path = "/oauth2/logout", tag = "oauth2",
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded", description = "The parameters of the GET, or the confirmation form (`csrf`, `confirm=yes`, and those parameters)."),
    responses(
        (status = 200, description = "The confirmation form, or the signed-out page.", content_type = "text/html", body = String),
        (status = 303, description = "Signed out: back to `post_logout_redirect_uri` with `state`."),
        (status = 400, description = "An empty or not form-encoded body, an invalid hint, an unknown client, or an unregistered `post_logout_redirect_uri`: an error page.", content_type = "text/html", body = String),
        (status = 403, description = "A confirmation whose CSRF token does not match.", content_type = "text/html", body = String),
    ))]
async fn logout_post(
    State(app): State<AppState>,
    client_info: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Without parameters, GET is the way; an empty POST is most likely not a form at all.
    let Some(fields) = fields(&body).filter(|f| !f.is_empty()) else {
        return not_a_form();
    };
    logout(&app, &client_info, &headers, &fields, true)
        .await
        .into_response()
}

fn not_a_form() -> Response {
    PageError::bad_request("The request is not form-encoded.").into_response()
}

/// The form's fields (the first value of each), or `None` when `raw` is not form-encoded (a
/// part without `=`).
fn fields(raw: &[u8]) -> Option<HashMap<String, String>> {
    if raw
        .split(|b| *b == b'&')
        .any(|part| !part.is_empty() && !part.contains(&b'='))
    {
        return None;
    }
    Some(super::authorize::form(raw))
}

#[tracing::instrument(skip_all)]
async fn logout(
    app: &AppState,
    client_info: &ClientInfo,
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
    post: bool,
) -> PageResult {
    let field = |name: &str| {
        fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let hint = match field("id_token_hint") {
        Some(token) => Some(
            verify_hint(app, token)
                .await
                .ok_or_else(|| PageError::bad_request("The id_token_hint is not valid."))?,
        ),
        None => None,
    };
    let client_id = match (
        hint.as_ref().and_then(|h| h.aud.first()),
        field("client_id"),
    ) {
        (Some(a), Some(c)) if a != c => {
            return Err(PageError::bad_request(
                "The client_id does not match the id_token_hint.",
            ));
        }
        (Some(a), _) => Some(a),
        (None, c) => c,
    };
    let redirect = match field("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = match client_id.and_then(ClientId::parse) {
                Some(id) => clients::find(app, id).await?,
                None => None,
            };
            let registered = client.is_some_and(|c| {
                c.spec
                    .post_logout_redirect_uris
                    .iter()
                    .any(|r| r.as_str() == uri)
            });
            if !registered {
                return Err(PageError::bad_request(
                    "The post_logout_redirect_uri is not registered for this application.",
                ));
            }
            Some(uri)
        }
    };
    let state = field("state").filter(|s| s.len() <= 2048);
    let session = browser::session(app, headers).await?;
    // RP-Initiated Logout 1.0 §2: without asking, only when the hint names the user of this
    // browser's session. A hint alone (it may be old, or have leaked from any relying party)
    // never ends a session.
    let hint_is_this_browsers =
        matches!((&hint, &session), (Some(h), Some(s)) if s.user_id.to_string() == h.sub);
    let confirmed = hint_is_this_browsers
        || (post
            && field("confirm") == Some("yes")
            && browser::csrf_ok(app, headers, CSRF_PURPOSE, field("csrf").unwrap_or("")));
    if post && field("confirm").is_some() && !confirmed {
        return Err(PageError::stale_form());
    }
    if !confirmed && session.is_some() {
        let csrf = browser::csrf_for(app, headers, CSRF_PURPOSE);
        let page = Page::render(
            StatusCode::OK,
            &pages::LogoutConfirm {
                csrf: &csrf.field,
                post_logout_redirect_uri: redirect,
                client_id,
                state,
            },
        )?;
        return Ok(match csrf.set_cookie {
            Some(c) => page.cookie(c),
            None => page,
        });
    }
    if confirmed && let Some(s) = session {
        end(app, client_info, &s).await?;
    }
    let done = match redirect.and_then(|uri| url::Url::parse(uri).ok()) {
        Some(mut url) => {
            if let Some(state) = state {
                url.query_pairs_mut().append_pair("state", state);
            }
            Page::redirect(url.into())
        }
        None => Page::render(StatusCode::OK, &pages::SignedOut)?,
    };
    Ok(done.cookie(browser::clear_session_cookie(app)))
}

/// Revokes the browser session and its grants, with the `logout` audit entry.
async fn end(
    app: &AppState,
    client_info: &ClientInfo,
    session: &LiveSession,
) -> Result<(), PageError> {
    let mut tx = app.store.begin_write().await?;
    let ended = sessions::revoke_family(&app.store, &mut tx, session.id, "logout").await?;
    let entry = Entry::new(Action::Logout)
        .actor(session.user_id)
        .target("session", session.id)
        .client(client_info)
        .detail("via", "oidc")
        .detail("sessions_ended", ended.len());
    let audit_id = app
        .audit
        .record(&mut tx, entry)
        .await
        .map_err(PageError::from)?;
    tx.commit().await?;
    app.sessions.forget(&ended);
    tracing::info!(user_id = %session.user_id, session_id = %session.id, ended = ended.len(), %audit_id, "browser session ended");
    Ok(())
}

/// The logout parameters, or the confirmation form, as a form body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the form `logout` reads
struct LogoutForm {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    /// The confirmation form's CSRF token.
    csrf: Option<String>,
    /// `yes` on the confirmation form.
    confirm: Option<String>,
}
