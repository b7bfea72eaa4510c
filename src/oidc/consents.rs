//! What users allowed clients to see (`oidc_consents`): one row per user and client, the scope
//! granted so far. A request within it skips the consent page.

use sqlx::{AnyConnection, Row};

use crate::accounts::UserId;
use crate::store::now_micros;

/// Whether the stored consent of `user` for `client` covers every scope of `scope`.
pub async fn covers(
    conn: &mut AnyConnection,
    user: UserId,
    client: &str,
    scope: &str,
) -> Result<bool, sqlx::Error> {
    let granted: Option<String> =
        sqlx::query_scalar("SELECT scope FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
            .bind(user.to_string())
            .bind(client)
            .fetch_optional(conn)
            .await?;
    Ok(granted.is_some_and(|g| {
        scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| g.split(' ').any(|have| have == s))
    }))
}

/// Adds `scope` to what `user` granted `client`.
pub async fn grant(
    conn: &mut AnyConnection,
    user: UserId,
    client: &str,
    scope: &str,
) -> Result<(), sqlx::Error> {
    let granted: Option<String> =
        sqlx::query_scalar("SELECT scope FROM oidc_consents WHERE user_id = $1 AND client_id = $2")
            .bind(user.to_string())
            .bind(client)
            .fetch_optional(&mut *conn)
            .await?;
    let mut all: Vec<&str> = granted
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    sqlx::query(
        "INSERT INTO oidc_consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
    )
    .bind(user.to_string())
    .bind(client)
    .bind(all.join(" "))
    .bind(now_micros())
    .execute(conn)
    .await?;
    Ok(())
}

/// A consent as an export shows it.
#[derive(Debug, Clone)]
pub struct StoredConsent {
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
}

/// Every consent of `user`, oldest first.
pub async fn list_of_user(
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<Vec<StoredConsent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT client_id, scope, granted_at FROM oidc_consents WHERE user_id = $1 ORDER BY granted_at, client_id",
    )
    .bind(user.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredConsent {
                client_id: r.try_get("client_id")?,
                scope: r.try_get("scope")?,
                granted_at: r.try_get("granted_at")?,
            })
        })
        .collect()
}

/// Deletes every consent of `user` (the account is being erased).
pub async fn delete_of_user(conn: &mut AnyConnection, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_consents WHERE user_id = $1")
        .bind(user.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
