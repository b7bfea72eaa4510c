//! Error reporting to a Sentry-compatible endpoint (`PORTVAKT_SENTRY_DSN`): every answer in
//! the 5xx range that the server caused (a panic, an internal error, the database
//! unavailable) becomes one event carrying the request id, method, matched route, status and
//! user id. Never the request or response body, headers, query string or client address:
//! those may hold passwords and tokens, and the request id finds the rest in our own logs.
//!
//! Each application instance owns its client, with no process-global hub, so instances in
//! one process (tests, embedders) report independently. Events are sent from the SDK's
//! background thread; a request never waits for the endpoint.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sentry::protocol::{Event, Level, User};
use sentry::types::Dsn;

use crate::config::Config;

/// How long shutdown waits for queued events to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `dsn` is a DSN the SDK can send to.
pub fn check_dsn(dsn: &str) -> Result<(), String> {
    Dsn::from_str(dsn)
        .map(|_| ())
        .map_err(|e| format!("not a valid DSN ({e}); expected https://<key>@<host>/<project>"))
}

/// Sends events for one application instance.
pub struct Reporter {
    client: Arc<sentry::Client>,
}

/// What the edge knows about a failed request.
pub struct Failure<'a> {
    pub status: u16,
    pub method: &'a str,
    pub route: &'a str,
    pub request_id: &'a str,
    pub user_id: Option<&'a str>,
    /// Our own description of the cause (the error chain or the panic message), never input.
    pub cause: Option<&'a str>,
}

impl Reporter {
    /// A reporter when a DSN is configured.
    pub fn from_config(config: &Config) -> Option<Arc<Reporter>> {
        let dsn = config.sentry_dsn.as_ref()?;
        let dsn = Dsn::from_str(dsn.expose_secret()).ok()?;
        // `ClientOptions` is non-exhaustive: set fields on a default.
        let mut options = sentry::ClientOptions::default();
        options.dsn = Some(dsn);
        options.release = Some(Cow::Borrowed(concat!(
            "portvakt@",
            env!("CARGO_PKG_VERSION")
        )));
        options.environment = Some(Cow::Owned(config.env.to_string()));
        // No panic hook, no process-wide integrations: handler panics reach `report` through
        // the edge, with their request id.
        options.default_integrations = false;
        options.send_default_pii = false;
        options.transport = Some(Arc::new(sentry::transports::DefaultTransportFactory));
        Some(Arc::new(Reporter {
            client: Arc::new(sentry::Client::with_options(options)),
        }))
    }

    /// Queues one event for a 5xx answer.
    pub fn report(&self, failure: &Failure<'_>) {
        self.client.capture_event(event(failure), None);
    }

    /// Sends what is queued, waiting at most a moment.
    pub fn flush(&self) {
        self.client.flush(Some(FLUSH_TIMEOUT));
    }
}

fn event(f: &Failure<'_>) -> Event<'static> {
    let title = match f.cause {
        Some(cause) if cause.starts_with("panic") => format!("{cause} ({} {})", f.method, f.route),
        _ => format!("HTTP {} on {} {}", f.status, f.method, f.route),
    };
    let mut event = Event {
        level: Level::Error,
        message: Some(title),
        transaction: Some(format!("{} {}", f.method, f.route)),
        // One issue per route and status, whatever the request id.
        fingerprint: Cow::Owned(vec![
            Cow::Owned(f.method.to_owned()),
            Cow::Owned(f.route.to_owned()),
            Cow::Owned(f.status.to_string()),
        ]),
        user: f.user_id.map(|id| User {
            id: Some(id.to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    event
        .tags
        .insert("request_id".into(), f.request_id.to_owned());
    event.tags.insert("status".into(), f.status.to_string());
    event.tags.insert("route".into(), f.route.to_owned());
    event.tags.insert("method".into(), f.method.to_owned());
    if let Some(cause) = f.cause {
        event.extra.insert("cause".into(), cause.into());
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_titled_by_its_message_and_carries_the_request() {
        let e = event(&Failure {
            status: 500,
            method: "GET",
            route: "/api/v1/users/me",
            request_id: "req-1",
            user_id: Some("0190"),
            cause: Some("panic: boom"),
        });
        assert_eq!(
            e.message.as_deref(),
            Some("panic: boom (GET /api/v1/users/me)")
        );
        assert_eq!(e.tags["request_id"], "req-1");
        assert_eq!(e.user.and_then(|u| u.id).as_deref(), Some("0190"));
        assert!(e.request.is_none(), "no request data is ever attached");
    }

    #[test]
    fn dsns_are_checked() {
        assert!(check_dsn("https://key@sentry.example.com/42").is_ok());
        assert!(check_dsn("not a dsn").is_err());
    }
}
