//! The HTML of the OIDC pages (askama templates under `templates/oidc/`), how a page becomes a
//! response (its own CSP, no caching, no framing), and the one error path of every page.

use std::time::Duration;

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::AppError;

/// Our stylesheet and nothing else; no `form-action`: Chrome applies it to the redirect that
/// follows a POST, and that goes to the client's `redirect_uri`.
const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages' stylesheet, served at `/oauth2/assets/pages.css`.
pub const STYLESHEET: &str = include_str!("../../templates/oidc/pages.css");

#[derive(Template)]
#[template(path = "oidc/login.html")]
pub struct Login<'a> {
    pub client_name: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
    pub email: &'a str,
    pub message: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "oidc/mfa.html")]
pub struct Mfa<'a> {
    pub request: &'a str,
    pub csrf: &'a str,
    pub challenge: &'a str,
    pub message: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "oidc/consent.html")]
pub struct Consent<'a> {
    pub client_name: &'a str,
    pub scopes: Vec<&'a str>,
    pub request: &'a str,
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "oidc/error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "oidc/signed_out.html")]
pub struct SignedOut;

#[derive(Template)]
#[template(path = "oidc/logout_confirm.html")]
pub struct LogoutConfirm<'a> {
    pub csrf: &'a str,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub state: Option<&'a str>,
}

/// A rendered page, or a redirect, with the cookies it sets.
pub struct Page {
    status: StatusCode,
    body: Body,
    headers: HeaderMap,
}

enum Body {
    Html(String),
    Redirect(String),
}

impl Page {
    /// Renders `template` with `status`.
    pub fn render(status: StatusCode, template: &impl Template) -> Result<Page, PageError> {
        let html = template
            .render()
            .map_err(|e| PageError::from(AppError::Internal(anyhow::anyhow!("template: {e}"))))?;
        Ok(Page {
            status,
            body: Body::Html(html),
            headers: HeaderMap::new(),
        })
    }

    /// A 303 to `location` (already a complete URL of the client's).
    pub fn redirect(location: String) -> Page {
        Page {
            status: StatusCode::SEE_OTHER,
            body: Body::Redirect(location),
            headers: HeaderMap::new(),
        }
    }

    /// Adds a `Set-Cookie`.
    pub fn cookie(mut self, cookie: String) -> Page {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            self.headers.append(header::SET_COOKIE, v);
        }
        self
    }

    fn retry_after(mut self, wait: Duration) -> Page {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Body::Html(html) => (self.status, axum::response::Html(html)).into_response(),
            Body::Redirect(location) => Redirect::to(&location).into_response(),
        };
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.extend(self.headers);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        response
    }
}

/// Everything that ends a page request without the page it asked for: shown as an error page
/// (never a redirect: nothing here is known to be the client's), with the status it deserves.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    title: &'static str,
    message: &'static str,
    retry_after: Option<Duration>,
}

impl PageError {
    pub fn bad_request(message: &'static str) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            title: "This request cannot be completed",
            message,
            retry_after: None,
        }
    }

    pub fn forbidden(message: &'static str) -> PageError {
        PageError {
            status: StatusCode::FORBIDDEN,
            title: "This request cannot be completed",
            message,
            retry_after: None,
        }
    }

    /// The form's request or CSRF token does not check out.
    pub fn stale_form() -> PageError {
        PageError::forbidden(
            "This form has expired or was not sent by this browser. Go back to the application and sign in again.",
        )
    }
}

impl From<AppError> for PageError {
    fn from(e: AppError) -> PageError {
        match e {
            AppError::RateLimited { retry_after, .. } => PageError {
                status: StatusCode::TOO_MANY_REQUESTS,
                title: "Too many attempts",
                message: "Too many attempts. Wait a little and try again.",
                retry_after: Some(retry_after),
            },
            AppError::Overloaded | AppError::Unavailable(_) => PageError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                title: "Temporarily unavailable",
                message: "The service is busy. Try again in a moment.",
                retry_after: Some(Duration::from_secs(1)),
            },
            other => {
                // Logged here, inside the request span; the page says nothing of the cause.
                tracing::error!(error = ?other, "OIDC page failed");
                PageError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    title: "Something went wrong",
                    message: "Something went wrong on our side. Try again later.",
                    retry_after: None,
                }
            }
        }
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> PageError {
        PageError::from(AppError::from(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            title: self.title,
            message: self.message,
        };
        let html = page
            .render()
            .unwrap_or_else(|_| "<!doctype html><title>Error</title>".to_owned());
        let mut page = Page {
            status: self.status,
            body: Body::Html(html),
            headers: HeaderMap::new(),
        };
        if let Some(wait) = self.retry_after {
            page = page.retry_after(wait);
        }
        page.into_response()
    }
}

/// A page answer: the page, or the error page.
pub type PageResult = Result<Page, PageError>;

/// A form page shown again with a message and `status` (wrong password, rate limited).
pub fn again(status: StatusCode, template: &impl Template, wait: Option<Duration>) -> PageResult {
    let page = Page::render(status, template)?;
    Ok(match wait {
        Some(w) => page.retry_after(w),
        None => page,
    })
}
