//! What the token-side endpoints share: the RFC 6749 §5.2 error body, the form body they read
//! (RFC 6749 §3.2: `application/x-www-form-urlencoded`, no parameter twice) and the
//! no-store headers of every answer that carries a token.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Form bodies larger than this are not ours (a refresh token, a code and a verifier fit in
/// a few hundred bytes).
const MAX_FORM_LEN: usize = 16 * 1024;

/// An OAuth error answer: `{"error", "error_description"}` with its status.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `WWW-Authenticate` to send along (401 answers).
    pub challenge: Option<&'static str>,
}

/// RFC 6749 §5.2 body (also RFC 6750 §3.1 on the userinfo endpoint).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The RFC code: `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, `invalid_token`,
    /// `insufficient_scope`, `server_error`, `temporarily_unavailable`.
    pub error: String,
    pub error_description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    /// RFC 6749 §5.2: 401 with a `WWW-Authenticate` challenge for the scheme we accept.
    pub fn invalid_client() -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "Client authentication failed.".into(),
            challenge: Some("Basic realm=\"portvakt\""),
        }
    }

    /// RFC 6750 §3.1 for a missing, unknown, expired or revoked access token.
    pub fn invalid_token() -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_token",
            description: "The access token is invalid, expired or revoked.".into(),
            challenge: Some("Bearer error=\"invalid_token\""),
        }
    }

    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server could not complete the request.",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The server is busy; try again shortly.",
        )
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        crate::error::AppError::from(e).into()
    }
}

impl From<crate::error::AppError> for OAuthError {
    fn from(e: crate::error::AppError) -> Self {
        use crate::error::AppError;
        match e {
            AppError::Unavailable(_) | AppError::Overloaded => OAuthError::unavailable(),
            other => {
                tracing::error!(error = ?other, "oauth endpoint failed");
                OAuthError::server_error()
            }
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error.to_string(),
            error_description: self.description,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        no_store(response.headers_mut());
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A JSON answer with the no-store headers.
pub fn json_no_store<T: Serialize>(body: &T) -> Response {
    let mut response = axum::Json(body).into_response();
    no_store(response.headers_mut());
    response
}

/// The parameters of a form body, each at most once (RFC 6749 §3.2: "Request and response
/// parameters MUST NOT be included more than once"). Empty values count as absent.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses a form body, refusing any other content type.
    pub fn from_form(headers: &HeaderMap, body: &Bytes) -> Result<Params, OAuthError> {
        if body.is_empty() {
            return Ok(Params::default());
        }
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(OAuthError::invalid_request(
                "The body must be application/x-www-form-urlencoded.",
            ));
        }
        if body.len() > MAX_FORM_LEN {
            return Err(OAuthError::invalid_request("The body is too large."));
        }
        let mut map = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(body) {
            if map.insert(key.to_string(), value.to_string()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "The parameter `{key}` is repeated."
                )));
            }
        }
        Ok(Params(map))
    }

    /// A parameter's value; empty means absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("`{name}` is required.")))
    }
}
