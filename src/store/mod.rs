//! The database: one pool over SQLite or PostgreSQL through sqlx's `Any` driver, so every
//! query is written once. The few places where the dialects differ sit in this module.
//!
//! Column conventions that keep `Any` portable: ids are TEXT (UUIDv7), timestamps are
//! BIGINT microseconds since the Unix epoch, booleans are nullable timestamps (`disabled_at`),
//! and no type outside integers, text and blobs crosses the driver.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Transaction};

use crate::config::Config;

pub mod migrate;
pub mod notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The shared connection pool and which backend sits behind it.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Microseconds since the Unix epoch: the unit of every timestamp column.
pub fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// Adds a duration to a microsecond timestamp without overflowing.
pub fn micros_after(start: i64, d: Duration) -> i64 {
    start.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Store {
    /// Opens the pool. For SQLite the data directory and the database file are created
    /// (owner-only permissions) when missing.
    pub async fn connect(config: &Config) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let url = config.database_url.expose_secret();
        let backend = if config.is_postgres() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(url)
        {
            prepare_sqlite_file(&path)?;
        }
        let busy_ms = config.db_busy_timeout.as_millis();
        let options: AnyConnectOptions = url
            .parse::<AnyConnectOptions>()
            .context("PORTVAKT_DATABASE_URL is not a valid database URL")?
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = AnyPoolOptions::new()
            .max_connections(config.db_pool_max)
            .min_connections(config.db_pool_min)
            .acquire_timeout(config.db_acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; NORMAL is durable in WAL mode
                        // except for the last transactions on power loss, the usual trade-off.
                        let pragmas = format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {busy_ms};"
                        );
                        sqlx::raw_sql(sqlx::AssertSqlSafe(pragmas)).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the {} database", backend.name()))?;
        Ok(Store { pool, backend })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of one failing
    /// when it tries to upgrade a read lock.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Starts a read-only transaction that sees one state of the database throughout, for
    /// reads that must agree with each other (walking the audit chain while others append).
    /// SQLite in WAL mode keeps the snapshot of a transaction's first read until it ends.
    pub async fn begin_snapshot(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin().await,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
        }
    }

    /// A cheap round trip for readiness.
    pub async fn ping(&self) -> bool {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The SQLite file `config` points at, if it uses SQLite with a file.
pub fn sqlite_file(config: &Config) -> Option<PathBuf> {
    if config.is_postgres() {
        return None;
    }
    sqlite_path(config.database_url.expose_secret())
}

/// The file behind a `sqlite:` URL, when it names one.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

fn prepare_sqlite_file(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    Ok(())
}

/// Creates a directory readable by its owner only (it holds the database and secrets).
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://./data/portvakt.db?mode=rwc"),
            Some(PathBuf::from("./data/portvakt.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/p.db"),
            Some(PathBuf::from("/var/lib/p.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }
}

/// `$1, $2, ..., $n`: the parameters of an `IN (...)` list or a `VALUES (...)` row of `n`.
pub fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A microsecond timestamp as RFC 3339 UTC with `Z` (the API's timestamp format): seconds
/// always, a fraction only when there is one, without trailing zeros.
pub fn rfc3339(micros: i64) -> String {
    let mut out = String::with_capacity(27);
    push_rfc3339(&mut out, micros);
    out
}

/// Appends [`rfc3339`] to `out` without allocating. On the path of every log line.
pub fn push_rfc3339(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days to civil date (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac != 0 {
        let mut digits = [0u8; 6];
        let mut f = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + u8::try_from(f % 10).unwrap_or(0);
            f /= 10;
        }
        let len = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
        out.push('.');
        for d in &digits[..len] {
            out.push(char::from(*d));
        }
    }
    out.push('Z');
}

/// Whether a database error is a unique-constraint violation, on either backend.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn timestamps_match_the_time_crate_everywhere() {
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            // xorshift over 0..year 2400, in microseconds
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let micros = x.rem_euclid(13_569_465_600_000_000);
            let expected =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                    .unwrap()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
            assert_eq!(rfc3339(micros), expected, "{micros}");
        }
        assert_eq!(rfc3339(1_709_164_800_000_000), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_120_000), "2023-11-14T22:13:20.12Z");
    }

    #[test]
    fn timestamps_render_as_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
