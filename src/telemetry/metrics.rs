//! Prometheus metrics: one process-wide recorder behind the `metrics` facade, so any module
//! counts with `metrics::counter!` and nothing passes registries around. Names follow the
//! Prometheus conventions (`portvakt_` prefix, `_total` counters, base units in the name).
//!
//! Label values are kept to small, fixed sets: the matched route template (never the raw
//! path), a known method, the status code. Unbounded labels would let any client grow the
//! exposition without limit.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::Method;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "portvakt_http_requests_total";
pub const HTTP_DURATION: &str = "portvakt_http_request_duration_seconds";
pub const LOGINS: &str = "portvakt_logins_total";
pub const HASH_DURATION: &str = "portvakt_password_hash_duration_seconds";
pub const HASH_QUEUE: &str = "portvakt_password_hash_queue_depth";
pub const RATE_LIMITED: &str = "portvakt_rate_limited_total";
pub const ACTIVE_SESSIONS: &str = "portvakt_active_sessions";
pub const DB_POOL: &str = "portvakt_db_pool_connections";
pub const AUDIT_ENTRIES: &str = "portvakt_audit_entries_total";
pub const WEBSOCKET_SUBSCRIBERS: &str = "portvakt_websocket_subscribers";
pub const WEBSOCKET_DROPPED: &str = "portvakt_websocket_dropped_total";
pub const PANICS: &str = "portvakt_panics_total";
pub const BUILD_INFO: &str = "portvakt_build_info";
pub const LAST_BACKUP: &str = "portvakt_last_backup_timestamp_seconds";
pub const BACKUPS: &str = "portvakt_backups_total";
pub const MAIL_SENT: &str = "portvakt_mail_sent_total";
pub const MAIL_OUTBOX_DEPTH: &str = "portvakt_mail_outbox_depth";
pub const MAIL_FAILED: &str = "portvakt_mail_failed_total";
pub const MAIL_PRUNED: &str = "portvakt_mail_pruned_total";

/// Request latency buckets: most answers take well under a millisecond, password work tens
/// of milliseconds, and the request timeout caps the tail.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// One argon2id verification takes ~30 ms at the default cost; the tail shows queueing.
const HASH_BUCKETS: &[f64] = &[0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5];

/// How often histograms are drained when nobody scrapes, so memory stays flat.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders it. Later
/// calls (several instances in one test process) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(HASH_DURATION.into()), HASH_BUCKETS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                // Only possible if something else installed a recorder first; our metrics
                // then go there and this handle renders an empty page.
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, matched route and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from receiving a request to its response, by method, route and status."
    );
    describe_counter!(
        LOGINS,
        "Password logins by outcome: success, failure (any wrong credential), rate_limited, overloaded or error."
    );
    describe_histogram!(
        HASH_DURATION,
        Unit::Seconds,
        "Time one password hash or verification took on the hashing pool, waiting excluded."
    );
    describe_gauge!(
        HASH_QUEUE,
        "Password hashes admitted and not finished (running or waiting for a thread)."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429, by limit: global (per IP), auth (per IP and route) or backoff (per email)."
    );
    describe_gauge!(
        ACTIVE_SESSIONS,
        "Sessions neither revoked nor expired, in the whole database (every instance reports the same number)."
    );
    describe_gauge!(
        DB_POOL,
        "Database connections of this instance's pool, by state: in_use or idle."
    );
    describe_counter!(
        AUDIT_ENTRIES,
        "Audit log entries appended by this instance."
    );
    describe_gauge!(
        WEBSOCKET_SUBSCRIBERS,
        "Live-event WebSocket connections that completed authentication."
    );
    describe_counter!(
        WEBSOCKET_DROPPED,
        "Live-event WebSockets closed by the server: slow_client (buffer full) or pong_timeout."
    );
    describe_counter!(PANICS, "Request handlers that panicked (answered 500).");
    describe_gauge!(BUILD_INFO, "Always 1; the labels carry the version.");
    describe_counter!(
        BACKUPS,
        "Backups taken by this process, by outcome: success or failure."
    );
    describe_counter!(
        MAIL_SENT,
        "Email delivery attempts of this instance, by outcome: sent (accepted by the SMTP server), written (no SMTP: to the outbox folder), retry (failed, tried again later) or failed (given up)."
    );
    describe_counter!(
        MAIL_FAILED,
        "Emails this instance gave up, by reason: permanent (the SMTP server refused the message with a 5xx), attempts (mail_max_attempts used up) or unbuildable (the stored message cannot be read)."
    );
    describe_counter!(
        MAIL_PRUNED,
        "Emails deleted from the outbox after their retention by this instance, by state: sent or failed."
    );
    describe_gauge!(
        MAIL_OUTBOX_DEPTH,
        "Emails neither sent nor given up, in the whole database, as last seen by this instance's worker."
    );
    describe_gauge!(
        LAST_BACKUP,
        "When the newest backup recorded in the database was taken (any instance, manual or scheduled)."
    );
}

/// Counts one answered request and its latency.
pub fn record_request(method: &Method, route: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("method", method_label(method)),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Counts one request refused with 429 by `limit` (`global`, `auth` or `backoff`).
pub fn rate_limited(limit: &'static str) {
    metrics::counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// Counts one password login attempt by outcome.
pub fn login(outcome: &'static str) {
    metrics::counter!(LOGINS, "outcome" => outcome).increment(1);
}

/// A method label from a fixed set; extension methods all count as `other`.
fn method_label(method: &Method) -> String {
    match *method {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS => method.as_str().to_owned(),
        _ => "other".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_methods_share_one_label() {
        let custom = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&custom), "other");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
