//! The browser's side of the OIDC pages: the session cookie (a `sessions` row found by the
//! SHA-256 of the cookie) and CSRF protection of the forms (a random cookie, and a hidden field
//! that is the HMAC of that cookie and what the form is for).

use aws_lc_rs::{constant_time, hmac};
use axum::http::HeaderMap;

use crate::app::AppState;
use crate::auth::sessions::{self, LiveSession};
use crate::crypto::{hex, new_token, token_hash};

const SESSION_COOKIE: &str = "portvakt_session";
const SECURE_SESSION_COOKIE: &str = "__Host-portvakt_session";
const CSRF_COOKIE: &str = "portvakt_csrf";
const SECURE_CSRF_COOKIE: &str = "__Host-portvakt_csrf";
const CSRF_PURPOSE: &str = "oidc-csrf";

/// Whether the cookies are `Secure` (and `__Host-`): when the issuer is https.
fn secure(app: &AppState) -> bool {
    app.config.issuer.starts_with("https://")
}

fn session_cookie_name(app: &AppState) -> &'static str {
    if secure(app) {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

fn csrf_cookie_name(app: &AppState) -> &'static str {
    if secure(app) {
        SECURE_CSRF_COOKIE
    } else {
        CSRF_COOKIE
    }
}

/// The value of cookie `name` in the request, if sent (the first one).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn set_cookie(app: &AppState, name: &str, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure(app) {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// The live browser session of the request's cookie, if any.
pub async fn session(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Option<LiveSession>, sqlx::Error> {
    let Some(value) = cookie(headers, session_cookie_name(app)) else {
        return Ok(None);
    };
    let mut conn = app.store.pool().acquire().await?;
    sessions::find_browser(&mut conn, &token_hash(value)).await
}

/// A new session cookie: its value's hash (for the `sessions` row) and the `Set-Cookie`.
pub fn new_session_cookie(app: &AppState) -> (String, String) {
    let value = new_token();
    let header = set_cookie(
        app,
        session_cookie_name(app),
        &value,
        Some(app.config.oidc_session_ttl.as_secs()),
    );
    (token_hash(&value), header)
}

/// The `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(app: &AppState) -> String {
    set_cookie(app, session_cookie_name(app), "", Some(0))
}

/// A form's CSRF protection.
pub struct Csrf {
    /// The hidden field of the form.
    pub field: String,
    /// A `Set-Cookie` when the browser had no CSRF cookie yet.
    pub set_cookie: Option<String>,
}

fn mac(app: &AppState, cookie: &str, purpose: &str) -> String {
    let key = app.master.hmac_key(CSRF_PURPOSE);
    let message = format!("{purpose}\n{cookie}");
    hex(hmac::sign(&key, message.as_bytes()).as_ref())
}

/// The CSRF field of a form for `purpose` (the pending request's id, or `logout`), reusing
/// the browser's CSRF cookie or making one.
pub fn csrf_for(app: &AppState, headers: &HeaderMap, purpose: &str) -> Csrf {
    match cookie(headers, csrf_cookie_name(app)) {
        Some(existing) => Csrf {
            field: mac(app, existing, purpose),
            set_cookie: None,
        },
        None => {
            let fresh = new_token();
            Csrf {
                field: mac(app, &fresh, purpose),
                set_cookie: Some(set_cookie(app, csrf_cookie_name(app), &fresh, None)),
            }
        }
    }
}

/// Whether `field` is the CSRF field for `purpose` and this browser's CSRF cookie, compared
/// in constant time.
pub fn csrf_ok(app: &AppState, headers: &HeaderMap, purpose: &str, field: &str) -> bool {
    let Some(existing) = cookie(headers, csrf_cookie_name(app)) else {
        return false;
    };
    let expected = mac(app, existing, purpose);
    constant_time::verify_slices_are_equal(expected.as_bytes(), field.as_bytes()).is_ok()
}
