//! `portvakt check`: the production-readiness report. The configuration's own findings
//! (`Config::findings`) plus what only the database can tell: whether it answers, whether
//! its schema is current, the signing key's age, the last backup, the admins and the roles
//! that require MFA. Each item is
//! pass, warn or fail with a one-line fix; the score weighs a warning half a pass.
//! `/ready` stays the cheap probe; this is the deep one, run by people and CI.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Finding, Level};
use crate::store::{Store, now_micros};

/// A database that takes longer than this to answer is reported as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Without scheduled rotation, a signing key older than this should be rotated.
const KEY_ROTATION_AGE: Duration = Duration::from_secs(180 * 24 * 3600);
/// With scheduled rotation, how late it may be (an instance must run to rotate) before the
/// check says so.
const KEY_ROTATION_SLACK: Duration = Duration::from_secs(24 * 3600);

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// 0..=100: passes count 1, warnings one half, failures nothing.
    pub score: u32,
    pub passed: usize,
    pub warnings: usize,
    pub failures: usize,
    pub findings: Vec<FindingView>,
}

#[derive(Debug, Serialize)]
pub struct FindingView {
    pub item: &'static str,
    pub level: String,
    pub message: String,
    /// Empty when there is nothing to fix.
    pub fix: String,
}

impl Report {
    pub fn new(findings: Vec<Finding>) -> Report {
        let count = |level| findings.iter().filter(|f| f.level == level).count();
        let (passed, warnings, failures) =
            (count(Level::Pass), count(Level::Warn), count(Level::Fail));
        let total = findings.len().max(1);
        let score = ((passed * 2 + warnings) * 100).div_ceil(total * 2) as u32;
        Report {
            score: score.min(100),
            passed,
            warnings,
            failures,
            findings: findings
                .into_iter()
                .map(|f| FindingView {
                    item: f.item,
                    level: f.level.to_string(),
                    fix: if f.level == Level::Pass {
                        String::new()
                    } else {
                        f.fix
                    },
                    message: f.message,
                })
                .collect(),
        }
    }

    /// The report for people: one line per item, the fix under each problem, the score.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!("[{}] {:<18} {}\n", f.level, f.item, f.message));
            if !f.fix.is_empty() {
                out.push_str(&format!("         fix: {}\n", f.fix));
            }
        }
        out.push_str(&format!(
            "score: {}/100 ({} pass, {} warn, {} fail)\n",
            self.score, self.passed, self.warnings, self.failures
        ));
        out
    }
}

/// What the database says about readiness. Never creates an SQLite file that is not there.
pub async fn database_findings(config: &Config) -> Vec<Finding> {
    let prod = config.is_production();
    let bad = if prod { Level::Fail } else { Level::Warn };
    if let Some(path) = crate::store::sqlite_file(config)
        && !path.exists()
    {
        return vec![Finding::new(
            bad,
            "database",
            format!("the SQLite database {} does not exist yet", path.display()),
            "run `portvakt migrate` (or start `portvakt serve`) to create it",
        )];
    }
    let store = match tokio::time::timeout(CONNECT_TIMEOUT, Store::connect(config)).await {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            return vec![Finding::new(
                Level::Fail,
                "database",
                format!("cannot connect: {e:#}"),
                "check PORTVAKT_DATABASE_URL and that the database server is up",
            )];
        }
        Err(_) => {
            return vec![Finding::new(
                Level::Fail,
                "database",
                format!("no connection within {CONNECT_TIMEOUT:?}"),
                "check PORTVAKT_DATABASE_URL and the network to the database",
            )];
        }
    };
    let mut out = vec![Finding::new(
        Level::Pass,
        "database",
        format!(
            "{} answers; pool of {} (at least {} kept open)",
            store.backend().name(),
            config.db_pool_max,
            config.db_pool_min
        ),
        "",
    )];
    out.push(migrations(config, &store).await);
    out.push(signing_key(config, &store).await);
    out.push(last_backup(config, &store).await);
    out.push(admins(config, &store).await);
    out.push(admin_role_mfa(config, &store).await);
    out.push(mfa_roles(config, &store).await);
    store.close().await;
    out
}

async fn migrations(config: &Config, store: &Store) -> Finding {
    let latest = store.latest_schema_version();
    match store.applied_schema_version().await {
        Ok(applied) if applied == latest => Finding::new(
            Level::Pass,
            "migrations",
            format!("schema at version {applied}, current"),
            "",
        ),
        Ok(applied) if applied > latest => Finding::new(
            Level::Fail,
            "migrations",
            format!("schema at version {applied} is newer than this binary ({latest})"),
            "run the portvakt release that migrated it, or restore a backup",
        ),
        Ok(applied) if config.migrate_on_start => Finding::new(
            Level::Warn,
            "migrations",
            format!("schema at version {applied}; {latest} is applied at the next start"),
            "run `portvakt migrate` now to apply it ahead of the restart",
        ),
        Ok(applied) => Finding::new(
            Level::Fail,
            "migrations",
            format!(
                "schema at version {applied}, this binary needs {latest} and PORTVAKT_MIGRATE_ON_START is false"
            ),
            "run `portvakt migrate`",
        ),
        Err(e) => Finding::new(
            Level::Fail,
            "migrations",
            format!("cannot read the schema version: {e:#}"),
            "run `portvakt migrate`",
        ),
    }
}

async fn signing_key(config: &Config, store: &Store) -> Finding {
    let interval = config.key_rotation_interval;
    let (limit, fix) = if interval.is_zero() {
        (
            KEY_ROTATION_AGE,
            "run `portvakt keys rotate`, or set PORTVAKT_KEY_ROTATION_INTERVAL (e.g. `90d`)",
        )
    } else {
        (
            interval.saturating_add(KEY_ROTATION_SLACK),
            "scheduled rotation is late: is `portvakt serve` running? `portvakt keys rotate` rotates now",
        )
    };
    let oldest: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT MIN(created_at) FROM signing_keys WHERE retired_at IS NULL")
            .fetch_one(store.pool())
            .await;
    match oldest {
        Ok(Some(created)) => {
            let age = Duration::from_micros(now_micros().saturating_sub(created).max(0) as u64);
            let days = age.as_secs() / 86_400;
            if age > limit {
                Finding::new(
                    Level::Warn,
                    "signing_key",
                    format!("the token signing key is {days} days old"),
                    fix,
                )
            } else {
                Finding::new(
                    Level::Pass,
                    "signing_key",
                    format!("the token signing key is {days} days old"),
                    "",
                )
            }
        }
        Ok(None) => Finding::new(
            Level::Warn,
            "signing_key",
            "no signing key yet (the first start creates one)",
            "start `portvakt serve` once",
        ),
        Err(e) => Finding::new(
            Level::Fail,
            "signing_key",
            format!("cannot read the signing keys: {e}"),
            "run `portvakt migrate`",
        ),
    }
}

/// Without a schedule a backup a day is the expectation; with one, a backup older than two
/// intervals means the schedule is failing.
async fn last_backup(config: &Config, store: &Store) -> Finding {
    let prod = config.is_production();
    let expected = if config.backup_interval.is_zero() {
        Duration::from_secs(24 * 3600)
    } else {
        config.backup_interval
    };
    match super::backup::last_backup(store).await {
        Ok(Some(b)) => {
            let age =
                Duration::from_micros(now_micros().saturating_sub(b.created_at).max(0) as u64);
            let hours = age.as_secs() / 3600;
            let message = format!(
                "last backup {hours} h ago ({}, {} bytes, {})",
                b.triggered_by, b.bytes, b.file
            );
            if age > expected * 2 {
                Finding::new(
                    if prod { Level::Warn } else { Level::Pass },
                    "backups",
                    message,
                    "check the scheduled backups' log lines, or run `portvakt backup --out FILE`",
                )
            } else {
                Finding::new(Level::Pass, "backups", message, "")
            }
        }
        Ok(None) => Finding::new(
            if prod { Level::Warn } else { Level::Pass },
            "backups",
            "no backup recorded",
            "set PORTVAKT_BACKUP_INTERVAL (e.g. 24h), or run `portvakt backup --out FILE`",
        ),
        Err(e) => Finding::new(
            Level::Fail,
            "backups",
            format!("cannot read the backup records: {e}"),
            "run `portvakt migrate`",
        ),
    }
}

async fn admins(config: &Config, store: &Store) -> Finding {
    let counted: Result<(i64, i64), _> = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COUNT(m.user_id) AS BIGINT) FROM users u JOIN user_roles r ON r.user_id = u.id LEFT JOIN (SELECT user_id FROM mfa_totp WHERE confirmed_at IS NOT NULL UNION SELECT user_id FROM passkeys) m ON m.user_id = u.id WHERE r.role = $1 AND u.disabled_at IS NULL",
    )
    .bind(crate::roles::ADMIN)
    .fetch_one(store.pool())
    .await;
    match counted {
        Ok((0, _)) => Finding::new(
            Level::Warn,
            "admins",
            "no enabled admin account",
            "create one with `portvakt user create --email <you> --admin`",
        ),
        Ok((n, with_mfa)) if with_mfa >= n => Finding::new(
            Level::Pass,
            "admins",
            format!("{n} admin(s), all with MFA"),
            "",
        ),
        Ok((n, with_mfa)) => Finding::new(
            if config.is_production() {
                Level::Warn
            } else {
                Level::Pass
            },
            "admins",
            format!("{n} admin(s), {} without MFA", n - with_mfa),
            "have every admin enable TOTP (`POST /api/v1/users/me/mfa/totp`)",
        ),
        Err(e) => Finding::new(
            Level::Fail,
            "admins",
            format!("cannot count admins: {e}"),
            "run `portvakt migrate`",
        ),
    }
}

/// Whether the `admin` role requires MFA: without it, an admin's password alone opens the
/// whole admin API.
async fn admin_role_mfa(config: &Config, store: &Store) -> Finding {
    let since: Result<Option<Option<i64>>, _> =
        sqlx::query_scalar("SELECT mfa_required_at FROM roles WHERE name = $1")
            .bind(crate::roles::ADMIN)
            .fetch_optional(store.pool())
            .await;
    match since {
        Ok(Some(Some(_))) => Finding::new(
            Level::Pass,
            "admin_role_mfa",
            "the admin role requires MFA",
            "",
        ),
        Ok(_) => Finding::new(
            if config.is_production() {
                Level::Warn
            } else {
                Level::Pass
            },
            "admin_role_mfa",
            "the admin role does not require MFA: an admin's password alone opens the admin API",
            "once the admins have enabled TOTP, run `portvakt role require-mfa admin --on`",
        ),
        Err(e) => Finding::new(
            Level::Fail,
            "admin_role_mfa",
            format!("cannot read the admin role: {e}"),
            "run `portvakt migrate`",
        ),
    }
}

/// The roles that require MFA, and how many of their (enabled) holders have none: the role
/// gives those holders nothing until they enable it.
async fn mfa_roles(config: &Config, store: &Store) -> Finding {
    let counted: Result<Vec<(String, i64, i64)>, _> = sqlx::query_as(
        "SELECT r.name, CAST(COUNT(u.id) AS BIGINT), CAST(COUNT(u.id) - COUNT(m.user_id) AS BIGINT) FROM roles r LEFT JOIN user_roles ur ON ur.role = r.name LEFT JOIN users u ON u.id = ur.user_id AND u.disabled_at IS NULL LEFT JOIN (SELECT user_id FROM mfa_totp WHERE confirmed_at IS NOT NULL UNION SELECT user_id FROM passkeys) m ON m.user_id = u.id WHERE r.mfa_required_at IS NOT NULL GROUP BY r.name ORDER BY r.name",
    )
    .fetch_all(store.pool())
    .await;
    match counted {
        Ok(roles) if roles.is_empty() => {
            Finding::new(Level::Pass, "mfa_roles", "no role requires MFA", "")
        }
        Ok(roles) => {
            let names: Vec<&str> = roles.iter().map(|(n, _, _)| n.as_str()).collect();
            let lacking: Vec<String> = roles
                .iter()
                .filter(|(_, _, without)| *without > 0)
                .map(|(n, holders, without)| {
                    format!("{n}: {without} of {holders} holder(s) without MFA")
                })
                .collect();
            if lacking.is_empty() {
                Finding::new(
                    Level::Pass,
                    "mfa_roles",
                    format!(
                        "{} role(s) require MFA ({}); every holder has it",
                        roles.len(),
                        names.join(", ")
                    ),
                    "",
                )
            } else {
                Finding::new(
                    if config.is_production() {
                        Level::Warn
                    } else {
                        Level::Pass
                    },
                    "mfa_roles",
                    format!(
                        "roles requiring MFA give nothing to holders without it: {}",
                        lacking.join("; ")
                    ),
                    "have them enable TOTP (`POST /api/v1/users/me/mfa/totp`) and log in again",
                )
            }
        }
        Err(e) => Finding::new(
            Level::Fail,
            "mfa_roles",
            format!("cannot read the roles: {e}"),
            "run `portvakt migrate`",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(level: Level) -> Finding {
        Finding::new(level, "x", "m", "f")
    }

    #[test]
    fn the_score_weighs_a_warning_half_and_a_failure_nothing() {
        let all_pass = Report::new(vec![finding(Level::Pass); 4]);
        assert_eq!(all_pass.score, 100);
        let mixed = Report::new(vec![
            finding(Level::Pass),
            finding(Level::Pass),
            finding(Level::Warn),
            finding(Level::Fail),
        ]);
        assert_eq!((mixed.score, mixed.failures, mixed.warnings), (63, 1, 1));
        assert!(
            mixed.findings[0].fix.is_empty(),
            "a pass has nothing to fix"
        );
        assert_eq!(mixed.findings[3].fix, "f");
    }
}
