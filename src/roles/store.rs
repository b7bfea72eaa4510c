//! SQL over `roles`, `role_permissions` and `user_roles`.

use std::collections::BTreeMap;

use sqlx::{Any, AnyConnection, Executor, Row};

use super::model::Permission;
use super::{ADMIN, is_builtin};
use crate::accounts::UserId;

/// A role with its permissions (all of them for `admin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub builtin: bool,
    /// The role gives nothing to a session without a second factor.
    pub require_mfa: bool,
}

/// A role someone holds: its stored permissions and whether it requires MFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub require_mfa: bool,
}

/// One row of a role joined with its permissions.
struct RoleRow {
    name: String,
    permission: Option<String>,
    require_mfa: bool,
}

/// Groups rows by role; a stored permission this binary does not know is skipped rather
/// than failing the read.
fn group(rows: Vec<RoleRow>) -> Vec<Held> {
    let mut map: BTreeMap<String, Held> = BTreeMap::new();
    for row in rows {
        let held = map.entry(row.name.clone()).or_insert_with(|| Held {
            name: row.name,
            permissions: Vec::new(),
            require_mfa: row.require_mfa,
        });
        if let Some(p) = row.permission.as_deref().and_then(Permission::parse) {
            held.permissions.push(p);
        }
    }
    let mut held: Vec<Held> = map.into_values().collect();
    for h in &mut held {
        h.permissions.sort();
    }
    held
}

fn role(held: Held) -> Role {
    let permissions = if held.name == ADMIN {
        Permission::ALL.to_vec()
    } else {
        held.permissions
    };
    Role {
        builtin: is_builtin(&held.name),
        name: held.name,
        permissions,
        require_mfa: held.require_mfa,
    }
}

async fn rows<'c, E: Executor<'c, Database = Any>>(
    db: E,
    sql: &'static str,
    bind: Option<String>,
) -> Result<Vec<RoleRow>, sqlx::Error> {
    let rows = sqlx::query(sql).bind(bind).fetch_all(db).await?;
    rows.iter()
        .map(|r| {
            let since: Option<i64> = r.try_get("mfa_required_at")?;
            Ok(RoleRow {
                name: r.try_get("name")?,
                permission: r.try_get("permission")?,
                require_mfa: since.is_some(),
            })
        })
        .collect()
}

/// The roles `user` holds, with their stored permissions and whether they require MFA.
pub async fn grants_of_user<'c, E: Executor<'c, Database = Any>>(
    db: E,
    user: UserId,
) -> Result<Vec<Held>, sqlx::Error> {
    let rows = rows(
        db,
        "SELECT ur.role AS name, rp.permission AS permission, r.mfa_required_at AS mfa_required_at FROM user_roles ur JOIN roles r ON r.name = ur.role LEFT JOIN role_permissions rp ON rp.role = ur.role WHERE ur.user_id = $1",
        Some(user.to_string()),
    )
    .await?;
    Ok(group(rows))
}

const ROLES: &str = "SELECT r.name AS name, rp.permission AS permission, r.mfa_required_at AS mfa_required_at FROM roles r LEFT JOIN role_permissions rp ON rp.role = r.name WHERE $1 IS NULL OR r.name = $1";

/// Every role, by name.
pub async fn list<'c, E: Executor<'c, Database = Any>>(db: E) -> Result<Vec<Role>, sqlx::Error> {
    let rows = rows(db, ROLES, None).await?;
    Ok(group(rows).into_iter().map(role).collect())
}

pub async fn find(conn: &mut AnyConnection, name: &str) -> Result<Option<Role>, sqlx::Error> {
    let rows = rows(conn, ROLES, Some(name.to_string())).await?;
    Ok(group(rows).into_iter().next().map(role))
}

/// Makes a role require MFA (since `now`) or not. Returns whether it exists.
pub async fn set_require_mfa(
    conn: &mut AnyConnection,
    name: &str,
    require: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    // Keeps the first time when it was already required: the date says since when.
    let done = sqlx::query(
        "UPDATE roles SET mfa_required_at = CASE WHEN $1 = 1 THEN COALESCE(mfa_required_at, $2) ELSE NULL END WHERE name = $3",
    )
    .bind(i64::from(require))
    .bind(now)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a custom role. A taken name surfaces as a unique violation.
pub async fn insert(
    conn: &mut AnyConnection,
    name: &str,
    permissions: &[Permission],
    require_mfa: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO roles (name, builtin, created_at, mfa_required_at) VALUES ($1, 0, $2, $3)",
    )
    .bind(name)
    .bind(now)
    .bind(require_mfa.then_some(now))
    .execute(&mut *conn)
    .await?;
    insert_permissions(conn, name, permissions).await
}

async fn insert_permissions(
    conn: &mut AnyConnection,
    name: &str,
    permissions: &[Permission],
) -> Result<(), sqlx::Error> {
    for p in permissions {
        sqlx::query("INSERT INTO role_permissions (role, permission) VALUES ($1, $2)")
            .bind(name)
            .bind(p.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Replaces a role's permissions.
pub async fn set_permissions(
    conn: &mut AnyConnection,
    name: &str,
    permissions: &[Permission],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM role_permissions WHERE role = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    insert_permissions(conn, name, permissions).await
}

/// Deletes a role (its assignments go with it). Returns whether it existed.
pub async fn delete(conn: &mut AnyConnection, name: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM roles WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The users holding a role.
pub async fn holders(conn: &mut AnyConnection, name: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM user_roles WHERE role = $1")
        .bind(name)
        .fetch_all(conn)
        .await
}

/// Which of `names` exist as roles, each row-locked until the transaction ends (a no-op
/// update; PostgreSQL): a role deleted at the same time is either gone here, or its deletion
/// waits and then takes the assignment with it. A plain read let the assignment's insert
/// fail on the foreign key.
pub async fn existing(
    conn: &mut AnyConnection,
    names: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    let mut found = Vec::new();
    for name in names {
        let hit = sqlx::query("UPDATE roles SET builtin = builtin WHERE name = $1")
            .bind(name)
            .execute(&mut *conn)
            .await?;
        if hit.rows_affected() == 1 {
            found.push(name.clone());
        }
    }
    Ok(found)
}

pub async fn unassign(
    conn: &mut AnyConnection,
    user: UserId,
    role: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
        .bind(user.to_string())
        .bind(role)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the lock that serialises every change which could leave no enabled admin (a
/// demotion, a disabling, an erasure), until the transaction ends. On PostgreSQL a no-op
/// update row-locks `admin` in `roles`, so a second such change waits and then counts what
/// the first committed; on SQLite the write transaction already holds the database lock.
/// Take it before reading anything the decision depends on.
pub async fn lock_admins(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE roles SET builtin = builtin WHERE name = $1")
        .bind(ADMIN)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many enabled accounts hold `admin`, as this transaction sees it.
pub async fn enabled_admins(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM users u JOIN user_roles r ON r.user_id = u.id WHERE r.role = $1 AND u.disabled_at IS NULL",
    )
    .bind(ADMIN)
    .fetch_one(conn)
    .await
}
