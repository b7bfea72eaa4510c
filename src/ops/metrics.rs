//! `GET /metrics`: the Prometheus text exposition. Counters and histograms are kept by the
//! recorder as things happen; gauges that describe state (pool, hashing queue, sessions) are
//! read when scraped, so they cost nothing between scrapes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::AppState;
use crate::error::AppError;
use crate::store::now_micros;
use crate::telemetry::metrics::{self as names, install};

/// Counting live sessions scans an index; one count serves every scrape for this long.
const DATABASE_TTL: Duration = Duration::from_secs(15);

/// The Prometheus text format's content type (exposition format 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct Exporter {
    handle: PrometheusHandle,
    database: Mutex<Option<(Instant, DatabaseFigures)>>,
}

/// What a scrape reads from the database, at most once per `DATABASE_TTL`.
#[derive(Clone, Copy)]
struct DatabaseFigures {
    active_sessions: i64,
    /// Seconds since the epoch of the newest recorded backup, by any instance.
    last_backup: Option<f64>,
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter {
            handle: install(),
            database: Mutex::new(None),
        }
    }
}

impl Exporter {
    async fn database(&self, app: &AppState) -> Result<DatabaseFigures, sqlx::Error> {
        if let Some((at, figures)) = *self.database.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < DATABASE_TTL
        {
            return Ok(figures);
        }
        let active_sessions: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now_micros())
        .fetch_one(app.store.pool())
        .await?;
        // From the database rather than this process's memory: after a restart, or on an
        // instance that did not take the backup, the age must still be right.
        let last_backup = crate::ops::backup::last_backup(&app.store)
            .await?
            .map(|b| b.created_at as f64 / 1e6);
        let figures = DatabaseFigures {
            active_sessions,
            last_backup,
        };
        *self.database.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), figures));
        Ok(figures)
    }
}

/// Prometheus text exposition. Served on `PORTVAKT_METRICS_ADDR` instead when that is set.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in the Prometheus text format 0.0.4.",
        body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")))]
pub async fn metrics(State(app): State<AppState>) -> Result<Response, AppError> {
    let exporter = &app.exporter;
    let pool = app.store.pool();
    let idle = pool.num_idle() as f64;
    let size = f64::from(pool.size());
    metrics::gauge!(names::DB_POOL, "state" => "idle").set(idle);
    metrics::gauge!(names::DB_POOL, "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!(names::HASH_QUEUE).set(app.hasher.in_flight() as f64);
    // A database that cannot count is reported by /ready; the scrape still answers.
    match exporter.database(&app).await {
        Ok(figures) => {
            metrics::gauge!(names::ACTIVE_SESSIONS).set(figures.active_sessions as f64);
            // 0 when there never was one, so that an age alert fires rather than sees nothing.
            metrics::gauge!(names::LAST_BACKUP).set(figures.last_backup.unwrap_or(0.0));
        }
        Err(e) => tracing::warn!(error = %e, "cannot read sessions and backups for /metrics"),
    }
    let body = exporter.handle.render();
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}
