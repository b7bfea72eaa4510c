//! Reading the log by filters, newest first, a page at a time (the admin audit query).

use sqlx::{Any, Executor};

use super::store::{COLUMNS, StoredEntry, from_row};

/// Which entries to list; `None` matches anything. Times are microseconds, `[since, until)`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

const WHERE: &str = "WHERE ($1 IS NULL OR actor_id = $1) AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4)";

/// One page of matching entries, newest first, and how many match in all.
pub async fn search<'c, E>(
    db: E,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<StoredEntry>, i64), sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM audit_log {WHERE}"
    )))
    .bind(&filter.actor)
    .bind(&filter.action)
    .bind(filter.since)
    .bind(filter.until)
    .fetch_one(db)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_log {WHERE} ORDER BY seq DESC LIMIT $5 OFFSET $6"
    )))
    .bind(&filter.actor)
    .bind(&filter.action)
    .bind(filter.since)
    .bind(filter.until)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let entries = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok((entries, total))
}
