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
}

/// Groups `(role, permission)` rows; a stored permission this binary does not know is
/// skipped rather than failing the read.
fn group(rows: Vec<(String, Option<String>)>) -> BTreeMap<String, Vec<Permission>> {
    let mut map: BTreeMap<String, Vec<Permission>> = BTreeMap::new();
    for (role, permission) in rows {
        let perms = map.entry(role).or_default();
        if let Some(p) = permission.as_deref().and_then(Permission::parse) {
            perms.push(p);
        }
    }
    for perms in map.values_mut() {
        perms.sort();
    }
    map
}

fn role(name: String, permissions: Vec<Permission>) -> Role {
    let permissions = if name == ADMIN {
        Permission::ALL.to_vec()
    } else {
        permissions
    };
    Role {
        builtin: is_builtin(&name),
        name,
        permissions,
    }
}

async fn rows<'c, E: Executor<'c, Database = Any>>(
    db: E,
    sql: &'static str,
    bind: Option<String>,
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let rows = sqlx::query(sql).bind(bind).fetch_all(db).await?;
    rows.iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("permission")?)))
        .collect()
}

/// The roles `user` holds, with their stored permissions.
pub async fn grants_of_user<'c, E: Executor<'c, Database = Any>>(
    db: E,
    user: UserId,
) -> Result<Vec<(String, Vec<Permission>)>, sqlx::Error> {
    let rows = rows(
        db,
        "SELECT ur.role AS name, rp.permission AS permission FROM user_roles ur LEFT JOIN role_permissions rp ON rp.role = ur.role WHERE ur.user_id = $1",
        Some(user.to_string()),
    )
    .await?;
    Ok(group(rows).into_iter().collect())
}

/// Every role, by name.
pub async fn list<'c, E: Executor<'c, Database = Any>>(db: E) -> Result<Vec<Role>, sqlx::Error> {
    let rows = rows(
        db,
        "SELECT r.name AS name, rp.permission AS permission FROM roles r LEFT JOIN role_permissions rp ON rp.role = r.name WHERE $1 IS NULL OR r.name = $1",
        None,
    )
    .await?;
    Ok(group(rows).into_iter().map(|(n, p)| role(n, p)).collect())
}

pub async fn find(conn: &mut AnyConnection, name: &str) -> Result<Option<Role>, sqlx::Error> {
    let rows = rows(
        conn,
        "SELECT r.name AS name, rp.permission AS permission FROM roles r LEFT JOIN role_permissions rp ON rp.role = r.name WHERE $1 IS NULL OR r.name = $1",
        Some(name.to_string()),
    )
    .await?;
    Ok(group(rows).into_iter().next().map(|(n, p)| role(n, p)))
}

/// Inserts a custom role. A taken name surfaces as a unique violation.
pub async fn insert(
    conn: &mut AnyConnection,
    name: &str,
    permissions: &[Permission],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO roles (name, builtin, created_at) VALUES ($1, 0, $2)")
        .bind(name)
        .bind(now)
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
