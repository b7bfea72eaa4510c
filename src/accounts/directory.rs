//! Accounts as administrators see them: the admin user view, and the prefix search over
//! email and name that lists them page by page.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::model::{User, UserId};
use super::store as users;
use crate::store::{Backend, rfc3339};

/// A user as the admin API shows it: API.md's user plus `disabled` and `last_login_at`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = AdminUser)]
pub struct AdminUserView {
    #[schema(format = "uuid")]
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub mfa_enabled: bool,
    #[schema(format = "date-time")]
    pub created_at: String,
    #[schema(format = "date-time")]
    pub updated_at: String,
    pub disabled: bool,
    /// `null` until the first successful login.
    #[schema(format = "date-time")]
    pub last_login_at: Option<String>,
}

impl AdminUserView {
    pub fn new(u: &User, last_login_at: Option<i64>) -> AdminUserView {
        AdminUserView {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            email_verified: u.email_verified_at.is_some(),
            roles: u.roles.clone(),
            mfa_enabled: u.mfa_enabled,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
            disabled: u.disabled_at.is_some(),
            last_login_at: last_login_at.map(rfc3339),
        }
    }
}

/// The account with its roles and last login, as the admin API shows it.
pub async fn find(
    conn: &mut AnyConnection,
    id: UserId,
) -> Result<Option<AdminUserView>, sqlx::Error> {
    let Some(mut user) = users::find_by_id(&mut *conn, id).await? else {
        return Ok(None);
    };
    user.roles = crate::roles::of_user(&mut *conn, id).await?;
    let last: Option<i64> = sqlx::query_scalar("SELECT last_login_at FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some(AdminUserView::new(&user, last)))
}

/// What to search for: a prefix of the email or of the name, any case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// `None` for an empty (or blank) query, which lists everyone.
    pub fn parse(raw: &str) -> Result<Option<Prefix>, &'static str> {
        let q = raw.trim();
        if q.chars().count() > 254 {
            return Err("must be at most 254 characters");
        }
        // No email or name holds one, and PostgreSQL refuses a NUL in text outright.
        if q.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok((!q.is_empty()).then(|| Prefix(q.to_string())))
    }

    /// The LIKE pattern of emails: the lowercase prefix (emails are keyed by their lowercase
    /// form, made the same way), its wildcards escaped with `\`, then `%`.
    fn email_pattern(&self) -> String {
        like_prefix(&self.0.to_lowercase())
    }

    /// The LIKE pattern of names: the prefix as given, escaped. The database folds it as it
    /// folds the names (SQLite's `LIKE`, PostgreSQL's `lower` on both sides): Rust's
    /// lowercase differs from both (SQLite folds ASCII only, `lower` maps a final `Σ` to `σ`),
    /// so a name could not be found by its own spelling.
    fn name_pattern(&self) -> String {
        like_prefix(&self.0)
    }
}

fn like_prefix(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// How many matches a search counts past the end of the requested page. Counting every match
/// of a broad prefix costs as much as the matches (a million users, one letter: tens of
/// thousands), so the count stops here and says it is a lower bound; a pager still always
/// knows whether there is a next page.
pub const COUNT_AHEAD: i64 = 1000;

/// One page of a search and how many match.
#[derive(Debug)]
pub struct Found {
    pub users: Vec<AdminUserView>,
    /// Exact when `total_exact`, otherwise a lower bound past the end of the page.
    pub total: i64,
    pub total_exact: bool,
}

/// The SQL of a search on one backend. A prefix search is the merge of two index range scans,
/// emails by `email_key` and names by their lowercase form then id, each read only as far as
/// the page needs; no query sorts or counts more than a page plus [`COUNT_AHEAD`] rows,
/// whatever the size of the table. The merged order is by the text that matched (an account
/// found by both by the smaller), then id; each scan's order agrees with it, so the first `n`
/// of the merge are within the first `n` of each scan.
pub struct Queries {
    /// The emails matching `$1`, in order, with `k` the text that matched; at most `$2`.
    pub by_email: String,
    /// The names matching `$3`, in order, with `k` the lowercase name; at most `$2`.
    pub by_name: String,
    /// Ids of the page (`$4` rows from `$5`) of the merge of both scans (each at most `$2`).
    page: String,
    /// How many the first `$2` of each scan hold, and both together without duplicates.
    count: String,
    /// Ids of the page (`$1` rows from `$2`) of every account, by email.
    page_all: String,
    /// How many accounts there are, counting to `$1` at most.
    count_all: &'static str,
}

impl Queries {
    /// SQLite's `LIKE` ignores ASCII case and uses the `COLLATE NOCASE` indexes; NOCASE order
    /// is byte order of the lowercase text, which the merge sorts on. PostgreSQL's `LIKE` is
    /// case-sensitive and uses the `text_pattern_ops` indexes, whose order (`~<~`) is byte
    /// order, which `COLLATE "C"` sorts on. It applies inside `MIN` too: under the database's
    /// own collation (an ICU or glibc locale) `MIN` picks another key of an account found twice.
    pub fn new(backend: Backend) -> Queries {
        let (email_order, name_match, name_order, bytewise) = match backend {
            Backend::Sqlite => (
                "email_key COLLATE NOCASE",
                "name LIKE $3 ESCAPE '\\'",
                "name COLLATE NOCASE, id",
                "",
            ),
            Backend::Postgres => (
                "email_key USING ~<~",
                "lower(name) LIKE lower($3) ESCAPE '\\'",
                "lower(name) USING ~<~, id",
                " COLLATE \"C\"",
            ),
        };
        let by_email = format!(
            "SELECT id, email_key AS k FROM users WHERE email_key LIKE $1 ESCAPE '\\' ORDER BY {email_order} LIMIT $2"
        );
        let by_name = format!(
            "SELECT id, lower(name) AS k FROM users WHERE {name_match} ORDER BY {name_order} LIMIT $2"
        );
        let page = format!(
            "SELECT id FROM (SELECT * FROM ({by_email}) e UNION ALL SELECT * FROM ({by_name}) n) m \
             GROUP BY id ORDER BY MIN(k{bytewise}), id LIMIT $4 OFFSET $5"
        );
        let count = format!(
            "WITH e AS ({by_email}), n AS ({by_name}) \
             SELECT (SELECT COUNT(*) FROM e), (SELECT COUNT(*) FROM n), \
             (SELECT COUNT(*) FROM (SELECT id FROM e UNION SELECT id FROM n) u)"
        );
        let page_all = format!("SELECT id FROM users ORDER BY {email_order} LIMIT $1 OFFSET $2");
        Queries {
            by_email,
            by_name,
            page,
            count,
            page_all,
            count_all: "SELECT COUNT(*) FROM (SELECT 1 FROM users LIMIT $1) a",
        }
    }
}

/// One page of a search, in the order [`Queries`] describes (by email when there is no
/// prefix), and how many match.
pub async fn search<'c, E>(
    db: E,
    backend: Backend,
    prefix: Option<&Prefix>,
    limit: i64,
    offset: i64,
) -> Result<Found, sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let sql = Queries::new(backend);
    let reach = offset.saturating_add(limit);
    let counted = reach.saturating_add(COUNT_AHEAD);
    let (ids, total, total_exact): (Vec<String>, i64, bool) = match prefix {
        Some(prefix) => {
            let (email_like, name_like) = (prefix.email_pattern(), prefix.name_pattern());
            // Unnamed statements (`persistent(false)`) are planned for their pattern every
            // time: a generic PostgreSQL plan, chosen after a few runs, cannot use the pattern's
            // prefix as an index range and would walk the whole index for a rare prefix.
            let ids = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.page.as_str()))
                .persistent(false)
                .bind(&email_like)
                .bind(reach)
                .bind(&name_like)
                .bind(limit)
                .bind(offset)
                .fetch_all(db)
                .await?;
            let (emails, names, total): (i64, i64, i64) =
                sqlx::query_as(sqlx::AssertSqlSafe(sql.count.as_str()))
                    .persistent(false)
                    .bind(&email_like)
                    .bind(counted)
                    .bind(&name_like)
                    .fetch_one(db)
                    .await?;
            // A scan that stopped at the limit may have had more behind it.
            (ids, total, emails < counted && names < counted)
        }
        None => {
            let ids = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.page_all.as_str()))
                .bind(limit)
                .bind(offset)
                .fetch_all(db)
                .await?;
            let total: i64 = sqlx::query_scalar(sql.count_all)
                .bind(counted)
                .fetch_one(db)
                .await?;
            (ids, total, total < counted)
        }
    };
    Ok(Found {
        users: views(db, &ids).await?,
        total,
        total_exact,
    })
}

/// The admin views of the accounts `ids`, in that order; one that was deleted meanwhile is
/// left out.
async fn views<'c, E>(db: E, ids: &[String]) -> Result<Vec<AdminUserView>, sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = crate::store::placeholders(ids.len());
    let sql = format!(
        "SELECT id, email, name, email_verified_at, disabled_at, created_at, updated_at, last_login_at, {} FROM users WHERE id IN ({list})",
        crate::mfa_enabled_column!()
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(db).await?;
    let mut roles = crate::roles::of_users(db, ids).await?;
    let mut found = HashMap::with_capacity(rows.len());
    for r in &rows {
        let raw: String = r.try_get("id")?;
        let id = UserId::parse(&raw)
            .ok_or_else(|| sqlx::Error::Decode(format!("user id {raw} is not a UUID").into()))?;
        let user = User {
            id,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            password_hash: String::new(),
            email_verified_at: r.try_get("email_verified_at")?,
            disabled_at: r.try_get("disabled_at")?,
            locked_at: None,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            roles: roles.remove(&raw).unwrap_or_default(),
            mfa_enabled: r.try_get::<i64, _>("mfa_enabled")? != 0,
        };
        found.insert(raw, AdminUserView::new(&user, r.try_get("last_login_at")?));
    }
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_lowercased_for_emails_and_its_wildcards_are_escaped() {
        let p = Prefix::parse("  Åd_a%\\ ").unwrap().unwrap();
        assert_eq!(p.email_pattern(), "åd\\_a\\%\\\\%");
        assert_eq!(p.name_pattern(), "Åd\\_a\\%\\\\%");
        assert_eq!(Prefix::parse("   ").unwrap(), None);
        assert!(Prefix::parse(&"a".repeat(255)).is_err());
        assert!(Prefix::parse("a\0b").is_err());
    }
}
