//! SQL over `oidc_clients`.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::model::{
    AuthMethod, ClientId, ClientSpec, Draft, GrantType, IdTokenAlg, RedirectUri, Scope,
};

/// A registered client as stored.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: ClientId,
    pub spec: ClientSpec,
    /// SHA-256 hex of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "client_id, client_name, secret_hash, token_endpoint_auth_method, redirect_uris, post_logout_redirect_uris, grant_types, scope, id_token_signed_response_alg, created_at, updated_at";

fn json_list(row: &AnyRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(e),
    })
}

fn corrupt(column: &str, what: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: what.into(),
    }
}

/// A stored row back to typed values. Rows were checked on the way in; one that fails now
/// (edited by hand) is an error, not a client with looser rules.
fn client(row: &AnyRow) -> Result<Client, sqlx::Error> {
    let id: String = row.try_get("client_id")?;
    let method: String = row.try_get("token_endpoint_auth_method")?;
    let alg: String = row.try_get("id_token_signed_response_alg")?;
    let scope: String = row.try_get("scope")?;
    let uris = |column: &str| -> Result<Vec<RedirectUri>, sqlx::Error> {
        json_list(row, column)?
            .iter()
            .map(|u| RedirectUri::parse(u).map_err(|m| corrupt(column, m)))
            .collect()
    };
    let grant_types = json_list(row, "grant_types")?
        .iter()
        .map(|g| GrantType::parse(g).ok_or_else(|| corrupt("grant_types", g.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Client {
        client_id: ClientId::parse(&id).ok_or_else(|| corrupt("client_id", id.clone()))?,
        spec: ClientSpec {
            client_name: row.try_get("client_name")?,
            redirect_uris: uris("redirect_uris")?,
            post_logout_redirect_uris: uris("post_logout_redirect_uris")?,
            grant_types,
            token_endpoint_auth_method: AuthMethod::parse(&method)
                .ok_or_else(|| corrupt("token_endpoint_auth_method", method.clone()))?,
            scope: Scope::parse(&scope).map_err(|m| corrupt("scope", m))?,
            id_token_signed_response_alg: IdTokenAlg::parse(&alg)
                .ok_or_else(|| corrupt("id_token_signed_response_alg", alg.clone()))?,
        },
        secret_hash: row.try_get("secret_hash")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn lists(spec: &ClientSpec) -> (String, String, String) {
    let Draft {
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        ..
    } = spec.draft();
    let json = |v: Vec<String>| serde_json::Value::from(v).to_string();
    (
        json(redirect_uris),
        json(post_logout_redirect_uris),
        json(grant_types),
    )
}

pub async fn insert(conn: &mut AnyConnection, c: &Client) -> Result<(), sqlx::Error> {
    let (redirect, post_logout, grants) = lists(&c.spec);
    sqlx::query(
        "INSERT INTO oidc_clients (client_id, client_name, secret_hash, token_endpoint_auth_method, redirect_uris, post_logout_redirect_uris, grant_types, scope, id_token_signed_response_alg, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(c.client_id.to_string())
    .bind(&c.spec.client_name)
    .bind(c.secret_hash.as_deref())
    .bind(c.spec.token_endpoint_auth_method.as_str())
    .bind(redirect)
    .bind(post_logout)
    .bind(grants)
    .bind(c.spec.scope.as_str())
    .bind(c.spec.id_token_signed_response_alg.as_str())
    .bind(c.created_at)
    .bind(c.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes every setting and the secret hash of an existing client.
pub async fn update(conn: &mut AnyConnection, c: &Client) -> Result<bool, sqlx::Error> {
    let (redirect, post_logout, grants) = lists(&c.spec);
    let done = sqlx::query(
        "UPDATE oidc_clients SET client_name = $1, secret_hash = $2, token_endpoint_auth_method = $3, redirect_uris = $4, post_logout_redirect_uris = $5, grant_types = $6, scope = $7, id_token_signed_response_alg = $8, updated_at = $9 WHERE client_id = $10",
    )
    .bind(&c.spec.client_name)
    .bind(c.secret_hash.as_deref())
    .bind(c.spec.token_endpoint_auth_method.as_str())
    .bind(redirect)
    .bind(post_logout)
    .bind(grants)
    .bind(c.spec.scope.as_str())
    .bind(c.spec.id_token_signed_response_alg.as_str())
    .bind(c.updated_at)
    .bind(c.client_id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find<'c, E: Executor<'c, Database = Any>>(
    db: E,
    id: ClientId,
) -> Result<Option<Client>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM oidc_clients WHERE client_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db)
        .await?;
    row.as_ref().map(client).transpose()
}

/// A page of clients, oldest first, and how many there are.
pub async fn list(
    conn: &mut AnyConnection,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Client>, i64), sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM oidc_clients ORDER BY created_at, client_id LIMIT $1 OFFSET $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_clients")
        .fetch_one(&mut *conn)
        .await?;
    Ok((rows.iter().map(client).collect::<Result<_, _>>()?, total))
}

/// Deletes a client; returns whether it existed.
pub async fn delete(conn: &mut AnyConnection, id: ClientId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM oidc_clients WHERE client_id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
