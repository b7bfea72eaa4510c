//! Accounts as administrators see them: the admin user view, and the prefix search over
//! email and name that lists them page by page.

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
            mfa_enabled: false,
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
        Ok((!q.is_empty()).then(|| Prefix(q.to_lowercase())))
    }

    /// The LIKE pattern: the lowercase prefix, its wildcards escaped with `\`, then `%`.
    fn pattern(&self) -> String {
        let mut p = String::with_capacity(self.0.len() + 1);
        for c in self.0.chars() {
            if matches!(c, '\\' | '%' | '_') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        p
    }
}

/// The expression a name prefix is matched on, so that an index serves it. SQLite's LIKE
/// folds ASCII case and uses the `name COLLATE NOCASE` index only on the bare column;
/// PostgreSQL's LIKE is case-sensitive and uses the `lower(name) text_pattern_ops` index.
fn name_expr(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "name",
        Backend::Postgres => "lower(name)",
    }
}

/// The `WHERE` clause of a search, with `$1` the pattern when there is a prefix.
pub fn filter(backend: Backend, prefix: Option<&Prefix>) -> String {
    match prefix {
        Some(_) => format!(
            "WHERE email_key LIKE $1 ESCAPE '\\' OR {} LIKE $1 ESCAPE '\\'",
            name_expr(backend)
        ),
        None => "WHERE $1 IS NULL".to_string(),
    }
}

/// One page of a search, ordered by email, and how many match in all.
pub async fn search<'c, E>(
    db: E,
    backend: Backend,
    prefix: Option<&Prefix>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AdminUserView>, i64), sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let pattern = prefix.map(Prefix::pattern);
    let filter = filter(backend, prefix);
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM users {filter}"
    )))
    .bind(&pattern)
    .fetch_one(db)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, email, name, email_verified_at, disabled_at, created_at, updated_at, last_login_at FROM users {filter} ORDER BY email_key, id LIMIT $2 OFFSET $3"
    )))
    .bind(&pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let mut views = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get("id")?;
        let id = UserId::parse(&id)
            .ok_or_else(|| sqlx::Error::Decode(format!("user id {id} is not a UUID").into()))?;
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
            roles: crate::roles::of_user(db, id).await?,
        };
        views.push(AdminUserView::new(&user, r.try_get("last_login_at")?));
    }
    Ok((views, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_lowercased_and_its_wildcards_are_escaped() {
        let p = Prefix::parse("  Ad_a%\\ ").unwrap().unwrap();
        assert_eq!(p.pattern(), "ad\\_a\\%\\\\%");
        assert_eq!(Prefix::parse("   ").unwrap(), None);
        assert!(Prefix::parse(&"a".repeat(255)).is_err());
    }
}
