//! An authorization request (OIDC Core §3.1.2.1): parsed and checked once at the edge, then
//! kept in `oidc_requests` (as JSON, for 10 minutes) while the user logs in and consents.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::clients::{AuthMethod, Client, ClientId, GrantType};
use crate::app::AppState;
use crate::crypto::new_token;
use crate::error::AppError;
use crate::store::{micros_after, now_micros};

/// How long a pending request waits for the user.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Longest `state` and `nonce` kept; they are echoed, not interpreted.
const MAX_ECHO_LEN: usize = 2048;

/// The checked request, as stored while it waits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The [`ClientId`]'s UUID.
    pub client_id: uuid::Uuid,
    pub redirect_uri: String,
    /// Space-separated, each within the client's scope.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// S256 only.
    pub code_challenge: Option<String>,
    /// `prompt=login` (or `select_account`): authenticate again whatever the session.
    pub login: bool,
    /// `prompt=consent`: ask again whatever was granted.
    pub consent: bool,
    /// `prompt=none`: never show a page.
    pub none: bool,
    /// Seconds since the last authentication beyond which the user logs in again.
    pub max_age: Option<u64>,
}

/// Where the client and redirect URI are not (yet) trusted: an error page, never a redirect.
#[derive(Debug)]
pub enum Untrusted {
    /// Unknown or missing client, or a redirect URI that is not one of its own.
    Page(&'static str),
    Failed(AppError),
}

/// A request error for the client, to go back to its redirect URI (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub error: &'static str,
    pub description: &'static str,
}

fn refuse(error: &'static str, description: &'static str) -> Refusal {
    Refusal { error, description }
}

/// The redirect target and state of a request, once the client and redirect URI are trusted.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    pub redirect_uri: String,
    pub state: Option<String>,
}

/// Parses the parameters of `/oauth2/authorize`. First the client and its redirect URI
/// (`Err(Untrusted)`), then everything else (`Ok((reply_to, Err(Refusal)))`).
pub async fn parse(
    app: &AppState,
    raw: &[u8],
) -> Result<(Client, ReplyTo, Result<AuthRequest, Refusal>), Untrusted> {
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        params
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let single = |name: &str| -> Option<&str> {
        match params.get(name).map(Vec::as_slice) {
            Some([one]) => Some(one.as_str()),
            _ => None,
        }
    };
    let client_id = single("client_id")
        .and_then(ClientId::parse)
        .ok_or(Untrusted::Page(
            "The application that sent you here is not known (missing or unknown client_id).",
        ))?;
    let client = super::clients::find(app, client_id)
        .await
        .map_err(Untrusted::Failed)?
        .ok_or(Untrusted::Page(
            "The application that sent you here is not known (missing or unknown client_id).",
        ))?;
    let redirect_uri = single("redirect_uri")
        .filter(|uri| client.spec.redirect_uris.iter().any(|r| r.as_str() == *uri))
        .ok_or(Untrusted::Page(
            "The redirect_uri is missing or not registered for this application.",
        ))?
        .to_owned();
    // The state goes back even with an error about the other parameters.
    let state = params
        .get("state")
        .and_then(|v| v.first())
        .filter(|s| echoable(s))
        .cloned();
    let reply = ReplyTo {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
    };
    let checked = check(&client, &params, redirect_uri, state);
    Ok((client, reply, checked))
}

/// Whether a `state` or `nonce` may be stored and sent back: not empty, bounded, and without
/// control characters (PostgreSQL cannot store NUL in text; none belongs in these values).
fn echoable(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_ECHO_LEN && !value.chars().any(char::is_control)
}

fn check(
    client: &Client,
    params: &HashMap<String, Vec<String>>,
    redirect_uri: String,
    state: Option<String>,
) -> Result<AuthRequest, Refusal> {
    // OIDC Core §3.1.2.1 / RFC 6749 §3.1: parameters must not be included more than once.
    if params.values().any(|v| v.len() > 1) {
        return Err(refuse(
            "invalid_request",
            "A parameter was given more than once.",
        ));
    }
    let get = |name: &str| params.get(name).and_then(|v| v.first()).map(String::as_str);
    if get("request").is_some() {
        return Err(refuse(
            "request_not_supported",
            "Request objects are not supported.",
        ));
    }
    if get("request_uri").is_some() {
        return Err(refuse(
            "request_uri_not_supported",
            "request_uri is not supported.",
        ));
    }
    match get("response_type") {
        None => return Err(refuse("invalid_request", "response_type is required.")),
        // RFC 6749 §4.1.2.1: a client not registered for the code flow may not ask for a code.
        Some("code") if !client.spec.allows(GrantType::AuthorizationCode) => {
            return Err(refuse(
                "unauthorized_client",
                "This client is not allowed the authorization_code grant.",
            ));
        }
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "Only response_type=code is supported.",
            ));
        }
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return Err(refuse(
            "invalid_request",
            "Only response_mode=query is supported.",
        ));
    }
    if get("state").is_some() && state.is_none() {
        return Err(refuse(
            "invalid_request",
            "state is empty, too long or holds control characters.",
        ));
    }
    let scope = get("scope").unwrap_or("");
    let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if scopes.is_empty() {
        return Err(refuse("invalid_request", "scope is required."));
    }
    if scopes.iter().any(|s| !client.spec.scope.contains(s)) {
        return Err(refuse(
            "invalid_scope",
            "The scope asks for more than this client may have.",
        ));
    }
    let mut unique: Vec<&str> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    // RFC 7636 §4.3: a missing method means `plain`, which we do not accept.
    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) => None,
        (Some(c), Some("S256")) if is_s256_challenge(c) => Some(c.to_owned()),
        (Some(_), Some("S256")) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be 43 base64url characters (S256).",
            ));
        }
        (Some(_), None) | (Some(_), Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256.",
            ));
        }
        (None, Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method without code_challenge.",
            ));
        }
    };
    if client.spec.token_endpoint_auth_method == AuthMethod::None && code_challenge.is_none() {
        return Err(refuse(
            "invalid_request",
            "Public clients must use PKCE (code_challenge with S256).",
        ));
    }
    let (mut login, mut consent, mut none) = (false, false, false);
    if let Some(prompt) = get("prompt") {
        let values: Vec<&str> = prompt.split(' ').filter(|s| !s.is_empty()).collect();
        for v in &values {
            match *v {
                "none" => none = true,
                "login" | "select_account" => login = true,
                "consent" => consent = true,
                _ => return Err(refuse("invalid_request", "Unknown prompt value.")),
            }
        }
        if none && values.len() > 1 {
            return Err(refuse(
                "invalid_request",
                "prompt=none cannot be combined with other values.",
            ));
        }
    }
    let max_age =
        match get("max_age") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                refuse("invalid_request", "max_age must be a non-negative integer.")
            })?),
        };
    let nonce = match get("nonce") {
        Some(n) if !echoable(n) => {
            return Err(refuse(
                "invalid_request",
                "nonce is empty, too long or holds control characters.",
            ));
        }
        n => n.map(str::to_owned),
    };
    Ok(AuthRequest {
        client_id: client.client_id.0,
        redirect_uri,
        scope: unique.join(" "),
        state,
        nonce,
        code_challenge,
        login,
        consent,
        none,
        max_age,
    })
}

fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The error redirect (RFC 6749 §4.1.2.1, RFC 9207 `iss`).
pub fn error_location(app: &AppState, reply: &ReplyTo, refusal: &Refusal) -> Option<String> {
    let mut url = url::Url::parse(&reply.redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", refusal.error);
        q.append_pair("error_description", refusal.description);
        if let Some(state) = &reply.state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", &app.config.issuer);
    }
    Some(url.into())
}

/// The success redirect with the code.
pub fn code_location(app: &AppState, req: &AuthRequest, code: &str) -> Option<String> {
    let mut url = url::Url::parse(&req.redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", code);
        if let Some(state) = &req.state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", &app.config.issuer);
    }
    Some(url.into())
}

/// Stores a request that waits for a page; returns its id (random, the forms carry it).
pub async fn save(app: &AppState, req: &AuthRequest) -> Result<String, AppError> {
    let id = new_token();
    let now = now_micros();
    let params = serde_json::to_string(req).map_err(|e| AppError::Internal(e.into()))?;
    let mut tx = app.store.begin_write().await?;
    // Sweeping here keeps the table small without a job of its own.
    sqlx::query("DELETE FROM oidc_requests WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO oidc_requests (id, client_id, params, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(req.client_id.to_string())
    .bind(params)
    .bind(now)
    .bind(micros_after(now, PENDING_TTL))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The pending request `id`, while it is alive.
pub async fn load(app: &AppState, id: &str) -> Result<Option<AuthRequest>, AppError> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    let params: Option<String> =
        sqlx::query_scalar("SELECT params FROM oidc_requests WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(now_micros())
            .fetch_optional(app.store.pool())
            .await?;
    Ok(params.and_then(|p| serde_json::from_str(&p).ok()))
}

/// Forgets a finished request.
pub async fn finish(conn: &mut sqlx::AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_requests WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
