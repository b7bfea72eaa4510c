//! The login and second-factor forms of the OIDC pages: the same checks, backoff, rate limit
//! and audit as the API's login (`auth::service::check_password`, `auth::mfa::check_code`);
//! only the session opened differs: a browser session with a cookie.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::SecretString;

use super::authorize::{Stage, form, from_form, login_again, proceed, with_csrf};
use super::browser;
use super::clients::Client;
use super::pages::{self, PageError, PageResult};
use super::request::AuthRequest;
use crate::accounts::Email;
use crate::app::AppState;
use crate::auth::mfa;
use crate::auth::service::{self, Checked, Verified};
use crate::auth::sessions::{self, LiveSession};
use crate::error::AppError;
use crate::http::{AuthRateLimit, ClientInfo};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(login, mfa_page))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/login", post(login))
        .route("/oauth2/mfa", post(mfa_page))
}

/// Turns the rate limit's refusal into the page's.
fn limited(limit: Result<AuthRateLimit, AppError>) -> Result<(), PageError> {
    limit.map(|_| ()).map_err(PageError::from)
}

const WRONG_CREDENTIALS: &str = "The email or password is not right.";
const WRONG_CODE: &str = "That code is not right or was used already.";

/// The login form's submission (`email`, `password`, with the form's `request` and `csrf`).
///
/// Wrong credentials give the form again (401) with one message for every reason; the same
/// per-email backoff and per-route rate limit as `/api/v1/auth/login` apply.
#[utoipa::path(post, path = "/oauth2/login", tag = "oauth2",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded", description = "The login page's form."),
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
    request_body(content = MfaForm, content_type = "application/x-www-form-urlencoded", description = "The second-factor page's form."),
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
    let again = |message: &str, wait, status| {
        mfa_form(app, headers, &id, &challenge, Some((message, wait)), status)
    };
    if code.trim().is_empty() || code.len() > 128 {
        return again(WRONG_CODE, None, StatusCode::UNAUTHORIZED);
    }
    match mfa::check_code(app, &challenge, code, client_info).await {
        Ok(v) => logged_in(app, headers, client_info, &client, &req, &id, v).await,
        Err(AppError::InvalidCredentials) => again(WRONG_CODE, None, StatusCode::UNAUTHORIZED),
        Err(AppError::RateLimited { retry_after, .. }) => again(
            "Too many failed attempts. Wait a little and try again.",
            Some(retry_after),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(AppError::BadRequest { .. }) => Err(PageError::bad_request(
            "This sign-in has expired. Go back to the application and sign in again.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The login page's form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the form `login_submitted` reads
struct LoginForm {
    /// The pending request's id (hidden field).
    request: String,
    /// The page's CSRF token (hidden field).
    csrf: String,
    email: String,
    password: String,
}

/// The second-factor page's form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the form `mfa_submitted` reads
struct MfaForm {
    /// The pending request's id (hidden field).
    request: String,
    /// The page's CSRF token (hidden field).
    csrf: String,
    /// The login's second-factor challenge (hidden field).
    challenge: String,
    /// A TOTP code or a recovery code.
    code: String,
}
