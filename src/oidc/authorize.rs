//! The authorization endpoint (OIDC Core §3.1.2) and the pages it leads through: login, the
//! second factor, consent; then the code goes back to the client (RFC 6749 §4.1.2, with `iss`
//! per RFC 9207).
//!
//! Until the client and its redirect URI are known-good every error is a page (RFC 6749
//! §4.1.2.1: never redirect to an unchecked URI); after, errors go back to the client.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;

use super::browser;
use super::clients::{self, Client, ClientId};
use super::codes::{self, NewCode};
use super::consents;
use super::pages::{self, Page, PageError, PageResult};
use super::request::{self, AuthRequest, Refusal, ReplyTo, Untrusted};
use crate::accounts::Email;
use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::auth::mfa;
use crate::auth::service::{self, Checked, Verified};
use crate::auth::sessions::{self, LiveSession};
use crate::error::AppError;
use crate::http::{AuthRateLimit, ClientInfo};
use crate::store::now_micros;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(authorize_get, authorize_post, login, mfa_page, consent, stylesheet))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/authorize", get(authorize_get).post(authorize_post))
        .route("/oauth2/login", post(login))
        .route("/oauth2/mfa", post(mfa_page))
        .route("/oauth2/consent", post(consent))
        .route("/oauth2/assets/pages.css", get(stylesheet))
}

/// One value per name (the first); what the pages' own forms send.
fn form(body: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        fields
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    fields
}

/// Start an OpenID Connect authorization (code flow).
///
/// Parameters per OIDC Core §3.1.2.1: `client_id`, `redirect_uri` (exact match), `response_type=code`,
/// `scope`, `state`, `nonce`, `code_challenge` + `code_challenge_method=S256` (required for public
/// clients), `prompt` (`none`, `login`, `consent`; `select_account` counts as `login`), `max_age`.
/// An unknown client or redirect URI is a 400 page; any other error redirects to the client with
/// `error`, `error_description`, `state` and `iss`. Otherwise the login or consent page, or a
/// redirect with `code`, `state` and `iss`.
#[utoipa::path(get, path = "/oauth2/authorize", tag = "oauth2",
    params(
        ("client_id" = Option<String>, Query, description = "The client's id."),
        ("redirect_uri" = Option<String>, Query, description = "One of the client's redirect URIs, exactly."),
        ("response_type" = Option<String>, Query, description = "`code`."),
        ("scope" = Option<String>, Query, description = "Space-separated, within the client's scope."),
        ("state" = Option<String>, Query, description = "Returned unchanged."),
        ("nonce" = Option<String>, Query, description = "Put into the ID token."),
        ("code_challenge" = Option<String>, Query, description = "RFC 7636, S256."),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`."),
        ("prompt" = Option<String>, Query, description = "`none`, `login`, `consent`."),
        ("max_age" = Option<String>, Query, description = "Seconds since the last login beyond which the user logs in again."),
    ),
    responses(
        (status = 200, description = "The login or consent page.", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client with `code` (or `error`), `state` and `iss`."),
        (status = 400, description = "Unknown client or unregistered redirect URI: an error page.", content_type = "text/html", body = String),
    ))]
async fn authorize_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    start(&app, &headers, query.unwrap_or_default().as_bytes())
        .await
        .into_response()
}

/// Start an OpenID Connect authorization with the parameters in a form body (OIDC Core
/// §3.1.2.1 allows POST); otherwise as the GET.
#[utoipa::path(post, path = "/oauth2/authorize", tag = "oauth2",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "The parameters of the GET, form-encoded."),
    responses(
        (status = 200, description = "The login or consent page.", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client with `code` (or `error`), `state` and `iss`."),
        (status = 400, description = "Unknown client or unregistered redirect URI: an error page.", content_type = "text/html", body = String),
    ))]
async fn authorize_post(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    start(&app, &headers, &body).await.into_response()
}

#[tracing::instrument(skip_all, fields(client_id))]
async fn start(app: &AppState, headers: &HeaderMap, raw: &[u8]) -> PageResult {
    let (client, reply, checked) = match request::parse(app, raw).await {
        Ok(parsed) => parsed,
        Err(Untrusted::Page(message)) => return Err(PageError::bad_request(message)),
        Err(Untrusted::Failed(e)) => return Err(e.into()),
    };
    let req = match checked {
        Ok(req) => req,
        Err(refusal) => return refuse(app, &reply, &refusal),
    };
    tracing::Span::current().record("client_id", tracing::field::display(client.client_id));
    let session = browser::session(app, headers).await?;
    proceed(app, headers, &client, &req, None, session, Stage::Start).await
}

/// How far a request has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Fresh from the client: the login rules apply to the browser's session.
    Start,
    /// The user just logged in.
    LoggedIn,
    /// The user just allowed it.
    Consented,
}

/// Whether the session's login is older than the request's `max_age`.
fn too_old(req: &AuthRequest, session: &LiveSession) -> bool {
    req.max_age.is_some_and(|max| {
        let age = now_micros().saturating_sub(session.auth_time);
        age > i64::try_from(max.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    })
}

/// The next step of a request: the login page, the consent page, or the code.
async fn proceed(
    app: &AppState,
    headers: &HeaderMap,
    client: &Client,
    req: &AuthRequest,
    pending: Option<&str>,
    session: Option<LiveSession>,
    stage: Stage,
) -> PageResult {
    let reply = ReplyTo {
        redirect_uri: req.redirect_uri.clone(),
        state: req.state.clone(),
    };
    let session = match (stage, session) {
        (Stage::Start, Some(s)) if !req.login && !too_old(req, &s) => s,
        (Stage::LoggedIn | Stage::Consented, Some(s)) => s,
        _ if req.none => {
            return refuse(app, &reply, &login_required());
        }
        _ => return login_form(app, headers, client, req, pending).await,
    };
    if stage != Stage::Consented {
        let mut conn = app.store.pool().acquire().await?;
        let covered = !req.consent
            && consents::covers(
                &mut conn,
                session.user_id,
                &client.client_id.to_string(),
                &req.scope,
            )
            .await?;
        drop(conn);
        if !covered {
            if req.none {
                return refuse(
                    app,
                    &reply,
                    &Refusal {
                        error: "consent_required",
                        description: "The user has not allowed this client these scopes.",
                    },
                );
            }
            return consent_form(app, headers, client, req, pending).await;
        }
    }
    issue(app, req, pending, &session, stage == Stage::Consented).await
}

fn login_required() -> Refusal {
    Refusal {
        error: "login_required",
        description: "The user must log in.",
    }
}

/// The error redirect back to the client.
fn refuse(app: &AppState, reply: &ReplyTo, refusal: &Refusal) -> PageResult {
    tracing::info!(error = refusal.error, "authorization request refused");
    request::error_location(app, reply, refusal)
        .map(Page::redirect)
        .ok_or_else(|| PageError::bad_request("The redirect_uri cannot be used."))
}

/// Issues the code (recording the consent, if just given) and sends the browser back.
async fn issue(
    app: &AppState,
    req: &AuthRequest,
    pending: Option<&str>,
    session: &LiveSession,
    consented: bool,
) -> PageResult {
    let client_id = ClientId(req.client_id);
    let mut tx = app.store.begin_write().await?;
    if consented {
        consents::grant(&mut tx, session.user_id, &client_id.to_string(), &req.scope).await?;
        let entry = Entry::new(Action::ConsentGranted)
            .actor(session.user_id)
            .target("client", client_id)
            .detail("scope", req.scope.as_str());
        app.audit.record(&mut tx, entry).await?;
    }
    let code = codes::issue(
        &mut tx,
        &NewCode {
            client_id,
            user_id: session.user_id,
            browser_session: session.id,
            redirect_uri: req.redirect_uri.clone(),
            scope: req.scope.clone(),
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.clone(),
            auth_time: session.auth_time,
            mfa_method: session.mfa_method.clone(),
        },
    )
    .await?;
    if let Some(id) = pending {
        request::finish(&mut tx, id).await?;
    }
    tx.commit().await?;
    tracing::info!(client_id = %client_id, user_id = %session.user_id, session_id = %session.id, "authorization code issued");
    let location = request::code_location(app, req, &code)
        .ok_or_else(|| PageError::bad_request("The redirect_uri cannot be used."))?;
    Ok(Page::redirect(location))
}

/// The id of the pending request: the one the form carried, or a new one.
async fn pending_id(
    app: &AppState,
    req: &AuthRequest,
    pending: Option<&str>,
) -> Result<String, PageError> {
    match pending {
        Some(id) => Ok(id.to_owned()),
        None => Ok(request::save(app, req).await?),
    }
}

fn with_csrf(page: Page, csrf: browser::Csrf) -> Page {
    match csrf.set_cookie {
        Some(c) => page.cookie(c),
        None => page,
    }
}

async fn login_form(
    app: &AppState,
    headers: &HeaderMap,
    client: &Client,
    req: &AuthRequest,
    pending: Option<&str>,
) -> PageResult {
    let id = pending_id(app, req, pending).await?;
    login_again(app, headers, client, &id, "", None, StatusCode::OK)
}

fn login_again(
    app: &AppState,
    headers: &HeaderMap,
    client: &Client,
    id: &str,
    email: &str,
    message: Option<(&str, Option<std::time::Duration>)>,
    status: StatusCode,
) -> PageResult {
    let csrf = browser::csrf_for(app, headers, &format!("login:{id}"));
    let page = pages::again(
        status,
        &pages::Login {
            client_name: &client.spec.client_name,
            request: id,
            csrf: &csrf.field,
            email,
            message: message.map(|(m, _)| m),
        },
        message.and_then(|(_, wait)| wait),
    )?;
    Ok(with_csrf(page, csrf))
}

async fn consent_form(
    app: &AppState,
    headers: &HeaderMap,
    client: &Client,
    req: &AuthRequest,
    pending: Option<&str>,
) -> PageResult {
    let id = pending_id(app, req, pending).await?;
    let csrf = browser::csrf_for(app, headers, &format!("consent:{id}"));
    let page = Page::render(
        StatusCode::OK,
        &pages::Consent {
            client_name: &client.spec.client_name,
            scopes: req.scope.split(' ').collect(),
            request: &id,
            csrf: &csrf.field,
        },
    )?;
    Ok(with_csrf(page, csrf))
}

/// The pending request a form names, if the form is this browser's `page` (`login`, `mfa`,
/// `consent`: a form of one page cannot stand in for another's) and the request alive.
async fn from_form(
    app: &AppState,
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
    page: &str,
) -> Result<(String, AuthRequest, Client), PageError> {
    let id = fields.get("request").map(String::as_str).unwrap_or("");
    let csrf = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !browser::csrf_ok(app, headers, &format!("{page}:{id}"), csrf) {
        return Err(PageError::stale_form());
    }
    let req = request::load(app, id)
        .await?
        .ok_or_else(PageError::stale_form)?;
    let client = clients::find(app, ClientId(req.client_id))
        .await?
        .ok_or_else(PageError::stale_form)?;
    Ok((id.to_owned(), req, client))
}

/// Turns the rate limit's refusal into the page's.
fn limited(limit: Result<AuthRateLimit, AppError>) -> Result<(), PageError> {
    limit.map(|_| ()).map_err(PageError::from)
}

const WRONG_CREDENTIALS: &str = "The email or password is not right.";

/// The login form's submission (`email`, `password`, with the form's `request` and `csrf`).
///
/// Wrong credentials give the form again (401) with one message for every reason; the same
/// per-email backoff and per-route rate limit as `/api/v1/auth/login` apply.
#[utoipa::path(post, path = "/oauth2/login", tag = "oauth2",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`request`, `csrf`, `email`, `password`."),
    responses(
        (status = 200, description = "The second-factor or consent page.", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client with `code` (or `error`), `state` and `iss`."),
        (status = 401, description = "The form again: wrong credentials.", content_type = "text/html", body = String),
        (status = 403, description = "The form's request expired or its CSRF token does not match: an error page; or the email is not verified (the form again).", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (with `Retry-After`).", content_type = "text/html", body = String),
    ))]
async fn login(
    limit: Result<AuthRateLimit, AppError>,
    State(app): State<AppState>,
    client_info: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    login_submitted(&app, limit, &client_info, &headers, &body)
        .await
        .into_response()
}

#[tracing::instrument(skip_all)]
async fn login_submitted(
    app: &AppState,
    limit: Result<AuthRateLimit, AppError>,
    client_info: &ClientInfo,
    headers: &HeaderMap,
    body: &[u8],
) -> PageResult {
    limited(limit)?;
    let fields = form(body);
    let (id, req, client) = from_form(app, headers, &fields, "login").await?;
    let typed = fields.get("email").map(String::as_str).unwrap_or("");
    let password = fields.get("password").cloned().unwrap_or_default();
    let again = |message: &str, wait, status| {
        login_again(
            app,
            headers,
            &client,
            &id,
            typed,
            Some((message, wait)),
            status,
        )
    };
    let Ok(email) = Email::parse(typed) else {
        return again(WRONG_CREDENTIALS, None, StatusCode::UNAUTHORIZED);
    };
    if password.is_empty() || password.chars().count() > 1024 {
        return again(WRONG_CREDENTIALS, None, StatusCode::UNAUTHORIZED);
    }
    match service::check_password(app, &email, SecretString::from(password), client_info).await {
        Ok(Checked::Verified(v)) => {
            logged_in(app, headers, client_info, &client, &req, &id, v).await
        }
        Ok(Checked::Mfa(m)) => {
            if !m
                .methods
                .iter()
                .any(|m| *m == "totp" || *m == "recovery_code")
            {
                return Err(PageError::forbidden(
                    "This account's second factor is a passkey, which this sign-in page does not offer yet. Sign in to the application another way.",
                ));
            }
            mfa_form(app, headers, &id, &m.mfa_token, None, StatusCode::OK)
        }
        Err(AppError::InvalidCredentials) => {
            again(WRONG_CREDENTIALS, None, StatusCode::UNAUTHORIZED)
        }
        Err(AppError::RateLimited { retry_after, .. }) => again(
            "Too many failed attempts. Wait a little and try again.",
            Some(retry_after),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(AppError::Refused { .. }) => again(
            "Verify your email address before signing in.",
            None,
            StatusCode::FORBIDDEN,
        ),
        Err(e) => Err(e.into()),
    }
}

/// Every factor passed: the browser session, its cookie, and the next step.
async fn logged_in(
    app: &AppState,
    headers: &HeaderMap,
    client_info: &ClientInfo,
    client: &Client,
    req: &AuthRequest,
    id: &str,
    verified: Verified,
) -> PageResult {
    let (user, mfa) = (verified.user, verified.mfa);
    let previous = browser::session(app, headers).await?;
    let (cookie_hash, cookie) = browser::new_session_cookie(app);
    let created = service::open_browser_session(
        app,
        verified,
        client_info,
        &cookie_hash,
        app.config.oidc_session_ttl,
    )
    .await?;
    if let Some(previous) = previous {
        replace(app, &previous, user, created.session_id).await?;
    }
    let session = LiveSession {
        id: created.session_id,
        user_id: user,
        mfa_method: mfa.map(str::to_owned),
        client_id: None,
        parent_id: None,
        scope: None,
        auth_time: created.auth_time,
        expires_at: 0,
    };
    proceed(
        app,
        headers,
        client,
        req,
        Some(id),
        Some(session),
        Stage::LoggedIn,
    )
    .await
    .map(|page| page.cookie(cookie))
}

/// Ends the browser session a new login in the same browser replaces. The same user's grants
/// move to the new session (logging out there ends them); another user's end with it.
async fn replace(
    app: &AppState,
    previous: &LiveSession,
    user: crate::accounts::UserId,
    new: uuid::Uuid,
) -> Result<(), PageError> {
    let mut tx = app.store.begin_write().await?;
    if previous.user_id == user {
        sessions::adopt_children(&mut tx, previous.id, new).await?;
    }
    let ended = sessions::revoke_family(&app.store, &mut tx, previous.id, "replaced").await?;
    tx.commit().await?;
    app.sessions.forget(&ended);
    Ok(())
}

fn mfa_form(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
    challenge: &str,
    message: Option<(&str, Option<std::time::Duration>)>,
    status: StatusCode,
) -> PageResult {
    let csrf = browser::csrf_for(app, headers, &format!("mfa:{id}"));
    let page = pages::again(
        status,
        &pages::Mfa {
            request: id,
            csrf: &csrf.field,
            challenge,
            message: message.map(|(m, _)| m),
        },
        message.and_then(|(_, wait)| wait),
    )?;
    Ok(with_csrf(page, csrf))
}

/// The second-factor form's submission (`code`: TOTP or a recovery code, with `request`,
/// `csrf` and `challenge`). Passkeys are not offered on these pages.
#[utoipa::path(post, path = "/oauth2/mfa", tag = "oauth2",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`request`, `csrf`, `challenge`, `code`."),
    responses(
        (status = 200, description = "The consent page.", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client with `code` (or `error`), `state` and `iss`."),
        (status = 400, description = "The challenge expired or was used up: an error page.", content_type = "text/html", body = String),
        (status = 401, description = "The form again: wrong code.", content_type = "text/html", body = String),
        (status = 403, description = "The form's request expired or its CSRF token does not match.", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (with `Retry-After`).", content_type = "text/html", body = String),
    ))]
async fn mfa_page(
    limit: Result<AuthRateLimit, AppError>,
    State(app): State<AppState>,
    client_info: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    mfa_submitted(&app, limit, &client_info, &headers, &body)
        .await
        .into_response()
}

#[tracing::instrument(skip_all)]
async fn mfa_submitted(
    app: &AppState,
    limit: Result<AuthRateLimit, AppError>,
    client_info: &ClientInfo,
    headers: &HeaderMap,
    body: &[u8],
) -> PageResult {
    limited(limit)?;
    let fields = form(body);
    let (id, req, client) = from_form(app, headers, &fields, "mfa").await?;
    let challenge = fields.get("challenge").cloned().unwrap_or_default();
    let code = fields.get("code").cloned().unwrap_or_default();
    if challenge.is_empty() || challenge.len() > 128 {
        return Err(PageError::stale_form());
    }
    if code.trim().is_empty() || code.len() > 128 {
        return mfa_form(
            app,
            headers,
            &id,
            &challenge,
            Some(("That code is not right or was used already.", None)),
            StatusCode::UNAUTHORIZED,
        );
    }
    match mfa::check_code(app, &challenge, code, client_info).await {
        Ok(v) => logged_in(app, headers, client_info, &client, &req, &id, v).await,
        Err(AppError::InvalidCredentials) => mfa_form(
            app,
            headers,
            &id,
            &challenge,
            Some(("That code is not right or was used already.", None)),
            StatusCode::UNAUTHORIZED,
        ),
        Err(AppError::RateLimited { retry_after, .. }) => mfa_form(
            app,
            headers,
            &id,
            &challenge,
            Some((
                "Too many failed attempts. Wait a little and try again.",
                Some(retry_after),
            )),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(AppError::BadRequest { .. }) => Err(PageError::bad_request(
            "This sign-in has expired. Go back to the application and sign in again.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The consent form's submission: `decision` `allow` or `deny` (with `request` and `csrf`).
/// Deny sends `access_denied` to the client.
#[utoipa::path(post, path = "/oauth2/consent", tag = "oauth2",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`request`, `csrf`, `decision` (`allow` or `deny`)."),
    responses(
        (status = 200, description = "The login page, when the browser's session ended meanwhile.", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client with `code` (or `error=access_denied`), `state` and `iss`."),
        (status = 400, description = "No valid decision: an error page.", content_type = "text/html", body = String),
        (status = 403, description = "The form's request expired or its CSRF token does not match.", content_type = "text/html", body = String),
    ))]
async fn consent(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    consent_submitted(&app, &headers, &body)
        .await
        .into_response()
}

#[tracing::instrument(skip_all)]
async fn consent_submitted(app: &AppState, headers: &HeaderMap, body: &[u8]) -> PageResult {
    let fields = form(body);
    let (id, req, client) = from_form(app, headers, &fields, "consent").await?;
    match fields.get("decision").map(String::as_str) {
        Some("allow") => {
            let session = browser::session(app, headers).await?;
            proceed(
                app,
                headers,
                &client,
                &req,
                Some(&id),
                session,
                Stage::Consented,
            )
            .await
        }
        Some("deny") => {
            let mut conn = app.store.pool().acquire().await?;
            request::finish(&mut conn, &id).await?;
            let reply = ReplyTo {
                redirect_uri: req.redirect_uri.clone(),
                state: req.state.clone(),
            };
            refuse(
                app,
                &reply,
                &Refusal {
                    error: "access_denied",
                    description: "The user denied the request.",
                },
            )
        }
        _ => Err(PageError::bad_request("Choose Allow or Deny.")),
    }
}

/// The pages' stylesheet.
#[utoipa::path(get, path = "/oauth2/assets/pages.css", tag = "oauth2",
    responses((status = 200, description = "CSS.", content_type = "text/css", body = String)))]
async fn stylesheet() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::STYLESHEET,
    )
        .into_response()
}
