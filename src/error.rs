//! The one error type of the HTTP API and its RFC 9457 problem+json rendering.
//!
//! Client errors carry messages that are safe to show; an internal error renders as an
//! opaque 500 and travels to the request log as a [`ErrorReport`] extension, so the cause
//! is logged once, with the request's context, and never reaches the client.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://portvakt.dev/problems/";

/// The media type of problem documents (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field of a request that failed: a body field or a query parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request could not be read at all (bad JSON syntax, not an object, bad encoding).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Specific fields failed: missing, wrong type, unknown, or a rule such as password strength.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// Missing or unusable credentials. `token_sent` decides the `WWW-Authenticate` error
    /// parameter (RFC 6750 §3.1).
    #[error("unauthorized: {detail}")]
    Unauthorized {
        detail: &'static str,
        token_sent: bool,
    },
    /// Login failed. One answer for every reason so that it reveals nothing.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The current password given to re-authenticate an action was wrong.
    #[error("wrong password")]
    WrongPassword,
    /// Authenticated, but not allowed to do this.
    #[error("forbidden")]
    Forbidden,
    /// Not allowed, for a reason the client may know: 403 with its own slug.
    #[error("forbidden: {detail}")]
    Refused {
        slug: &'static str,
        detail: &'static str,
    },
    #[error("not found")]
    NotFound,
    /// A well-formed request that cannot be honoured (a wrong code, a dead token): 400 with
    /// its own slug.
    #[error("bad request: {detail}")]
    BadRequest {
        slug: &'static str,
        detail: &'static str,
    },
    #[error("conflict: {detail}")]
    Conflict { slug: &'static str, detail: String },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Too many requests from this client, or too many failed logins for this account.
    #[error("rate limited")]
    RateLimited {
        retry_after: std::time::Duration,
        detail: &'static str,
    },
    /// Password hashing is saturated; the client should come back shortly.
    #[error("overloaded")]
    Overloaded,
    /// A dependency (the database) is not answering in time.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if database_unavailable(&e) {
            AppError::Unavailable(format!("database: {e}"))
        } else {
            AppError::Internal(anyhow::Error::new(e).context("database"))
        }
    }
}

/// Whether a database error means "not now" (the client may retry) rather than a bug.
fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code.len() == 5 {
                // PostgreSQL SQLSTATE: connection exceptions (08xxx), insufficient resources
                // (53xxx), shutdown or terminated backend (57P01..57P03), and what a retry
                // resolves: serialization failure, deadlock, lock or statement timeout.
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(
                        code.as_ref(),
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03" | "57014"
                    )
            } else {
                // SQLite result codes: BUSY (5) and LOCKED (6), also as extended codes.
                code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            }
        }
        _ => false,
    }
}

/// The cause of a 500, handed to the request log through response extensions.
#[derive(Debug, Clone)]
pub struct ErrorReport(pub Arc<str>);

/// A problem details document ready to render.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub slug: &'static str,
    pub detail: String,
    pub errors: Option<Vec<FieldError>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The problem document (RFC 9457) as sent; the OpenAPI description's `Problem` schema.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody<'a> {
    /// `https://portvakt.dev/problems/<slug>`.
    #[serde(rename = "type")]
    #[schema(
        format = "uri",
        example = "https://portvakt.dev/problems/validation-failed"
    )]
    kind: String,
    title: &'a str,
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    detail: &'a str,
    /// Also in the `X-Request-Id` header and in the server's logs.
    request_id: &'a str,
    /// Only when specific fields or query parameters failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    errors: Option<&'a [FieldError]>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            detail: detail.into(),
            errors: None,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    pub fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The generic problem for a status that something other than our handlers produced
    /// (the router's 404/405, a body limit, a timeout, a panic).
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, detail) = match status.as_u16() {
            400 => ("bad-request", "The request could not be understood."),
            401 => ("unauthorized", "Authentication is required."),
            403 => ("forbidden", "You are not allowed to do this."),
            404 => ("not-found", "There is nothing at this address."),
            405 => (
                "method-not-allowed",
                "This address does not accept that method; see the Allow header.",
            ),
            408 => (
                "request-timeout",
                "The request took too long and was stopped.",
            ),
            413 => (
                "payload-too-large",
                "The request body is larger than this server accepts.",
            ),
            415 => (
                "unsupported-media-type",
                "Send the body as application/json.",
            ),
            429 => ("rate-limited", "Too many requests; see Retry-After."),
            503 => (
                "unavailable",
                "The service cannot answer right now; try again shortly.",
            ),
            s if s >= 500 => (
                "internal",
                "Something went wrong on our side. The request id identifies it in our logs.",
            ),
            _ => ("error", "The request failed."),
        };
        Self::new(status, slug, detail)
    }

    pub fn render(&self) -> Response {
        let request_id = crate::http::request_id::current().unwrap_or_default();
        let body = ProblemBody {
            kind: format!("{PROBLEM_BASE}{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            request_id: &request_id,
            errors: self.errors.as_deref(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            bytes,
        )
            .into_response();
        for (name, value) in &self.headers {
            response.headers_mut().append(name.clone(), value.clone());
        }
        response
    }
}

impl AppError {
    pub fn to_problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            AppError::Malformed(detail) => {
                Problem::new(S::BAD_REQUEST, "malformed-request", detail.clone())
            }
            AppError::Invalid(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{} {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut p = Problem::new(S::BAD_REQUEST, "validation-failed", detail);
                p.errors = Some(errors.clone());
                p
            }
            AppError::Unauthorized { detail, token_sent } => {
                let challenge = if *token_sent {
                    r#"Bearer error="invalid_token""#
                } else {
                    "Bearer"
                };
                Problem::new(S::UNAUTHORIZED, "unauthorized", *detail)
                    .header(header::WWW_AUTHENTICATE, challenge)
            }
            AppError::InvalidCredentials => Problem::new(
                S::UNAUTHORIZED,
                "invalid-credentials",
                "The email or password is wrong.",
            )
            .header(header::WWW_AUTHENTICATE, "Bearer"),
            AppError::WrongPassword => Problem::new(
                S::FORBIDDEN,
                "wrong-password",
                "The current password is wrong.",
            ),
            AppError::Forbidden => Problem::for_status(S::FORBIDDEN),
            AppError::Refused { slug, detail } => Problem::new(S::FORBIDDEN, slug, *detail),
            AppError::NotFound => Problem::for_status(S::NOT_FOUND),
            AppError::BadRequest { slug, detail } => Problem::new(S::BAD_REQUEST, slug, *detail),
            AppError::Conflict { slug, detail } => Problem::new(S::CONFLICT, slug, detail.clone()),
            AppError::PayloadTooLarge => Problem::for_status(S::PAYLOAD_TOO_LARGE),
            AppError::UnsupportedMediaType => Problem::for_status(S::UNSUPPORTED_MEDIA_TYPE),
            AppError::RateLimited {
                retry_after,
                detail,
            } => Problem::new(S::TOO_MANY_REQUESTS, "rate-limited", *detail)
                .header_value(header::RETRY_AFTER, retry_after_seconds(*retry_after)),
            AppError::Overloaded => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many password checks are queued; retry shortly.",
            )
            .header(header::RETRY_AFTER, "1"),
            AppError::Unavailable(_) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "The database is not answering; retry shortly.",
            )
            .header(header::RETRY_AFTER, "2"),
            AppError::Internal(_) => Problem::for_status(S::INTERNAL_SERVER_ERROR),
        }
    }
}

/// `Retry-After` in whole seconds (RFC 9110 §10.2.3), rounded up so that a client that waits
/// exactly that long is let through.
fn retry_after_seconds(wait: std::time::Duration) -> HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = self.to_problem().render();
        match &self {
            AppError::Internal(e) => {
                response
                    .extensions_mut()
                    .insert(ErrorReport(format!("{e:#}").into()));
            }
            AppError::Unavailable(why) => {
                response
                    .extensions_mut()
                    .insert(ErrorReport(why.as_str().into()));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_never_show_their_cause() {
        let response =
            AppError::Internal(anyhow::anyhow!("connection to 10.0.0.5 refused")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("10.0.0.5"), "{text}");
        assert!(
            text.contains(r#""type":"https://portvakt.dev/problems/internal""#),
            "{text}"
        );
    }

    #[test]
    fn a_bearer_challenge_names_the_error_only_when_a_token_was_sent() {
        let p = AppError::Unauthorized {
            detail: "x",
            token_sent: true,
        }
        .to_problem();
        assert_eq!(p.headers[0].1, r#"Bearer error="invalid_token""#);
        let p = AppError::Unauthorized {
            detail: "x",
            token_sent: false,
        }
        .to_problem();
        assert_eq!(p.headers[0].1, "Bearer");
    }
}
