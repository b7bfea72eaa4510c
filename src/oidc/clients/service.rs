//! Registering, changing and deleting clients, each audited in the transaction of its change,
//! and checking a client's secret.
//!
//! Secrets are 256 random bits, shown once and stored as their SHA-256. A slow password
//! hash (argon2) protects guessable human passwords; nothing can be guessed about 256 random
//! bits, so a fast hash loses no safety, and the token endpoint does not spend a hashing
//! pool slot on every client authentication.

use secrecy::{ExposeSecret, SecretString};

use super::model::{AuthMethod, Blame, ClientId, ClientSpec, Draft};
use super::store::{self, Client};
use crate::app::AppState;
use crate::audit::Action;
use crate::crypto::{new_token, token_hash};
use crate::error::AppError;
use crate::roles::service::Actor;
use crate::store::now_micros;

/// A client and, when one was just made, its secret (shown to the caller this once).
#[derive(Debug)]
pub struct Issued {
    pub client: Client,
    pub secret: Option<SecretString>,
}

fn new_secret() -> (SecretString, String) {
    let secret = new_token();
    let hash = token_hash(&secret);
    (SecretString::from(secret), hash)
}

fn grant_names(spec: &ClientSpec) -> Vec<&'static str> {
    spec.grant_types.iter().map(|g| g.as_str()).collect()
}

/// The client with this id.
pub async fn find(app: &AppState, id: ClientId) -> Result<Option<Client>, AppError> {
    Ok(store::find(app.store.pool(), id).await?)
}

/// Whether `presented` is the secret of `client`, compared in constant time. Always false for
/// a public client, which has none.
pub fn verify_secret(client: &Client, presented: &str) -> bool {
    let Some(stored) = client.secret_hash.as_deref() else {
        return false;
    };
    // Both sides are hex of a SHA-256, so equal lengths: the comparison time reveals nothing
    // about the stored hash.
    let computed = token_hash(presented);
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), stored.as_bytes())
        .is_ok()
}

/// A page of clients, oldest first, and how many there are.
pub async fn list(app: &AppState, limit: i64, offset: i64) -> Result<(Vec<Client>, i64), AppError> {
    let mut conn = app.store.pool().acquire().await?;
    Ok(store::list(&mut conn, limit, offset).await?)
}

/// Registers a client; a confidential one gets its secret here and only here.
#[tracing::instrument(skip_all)]
pub async fn create(app: &AppState, spec: ClientSpec, actor: Actor) -> Result<Issued, AppError> {
    app.to_completion(move |app| async move {
        let (secret, secret_hash) = if spec.token_endpoint_auth_method.is_confidential() {
            let (secret, hash) = new_secret();
            (Some(secret), Some(hash))
        } else {
            (None, None)
        };
        let now = now_micros();
        let client = Client {
            client_id: ClientId::new(),
            spec,
            secret_hash,
            created_at: now,
            updated_at: now,
        };
        let mut tx = app.store.begin_write().await?;
        store::insert(&mut tx, &client).await?;
        let entry = actor
            .entry(Action::ClientCreated)
            .target("client", client.client_id)
            .detail("client_name", client.spec.client_name.as_str())
            .detail(
                "token_endpoint_auth_method",
                client.spec.token_endpoint_auth_method.as_str(),
            )
            .detail("grant_types", grant_names(&client.spec));
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        tracing::info!(client_id = %client.client_id, "client registered");
        Ok(Issued { client, secret })
    })
    .await
}

/// Locks and reads a client inside a write transaction: on PostgreSQL a no-op update takes
/// the row lock, so two changes of one client apply one after the other.
async fn locked(
    conn: &mut sqlx::AnyConnection,
    id: ClientId,
) -> Result<Option<Client>, sqlx::Error> {
    sqlx::query("UPDATE oidc_clients SET updated_at = updated_at WHERE client_id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    store::find(&mut *conn, id).await
}

/// Applies `change` to the stored settings and checks the result as a whole.
///
/// Changing `token_endpoint_auth_method` between the two confidential methods keeps the
/// secret; to `none` deletes it (a public client has no secret, and one left behind would
/// come back to life by a later switch); from `none` to a confidential method issues a new
/// secret, returned in this answer only.
#[tracing::instrument(skip_all, fields(client_id = %id))]
pub async fn update(
    app: &AppState,
    id: ClientId,
    change: impl FnOnce(Draft) -> (Draft, Blame) + Send + 'static,
    actor: Actor,
) -> Result<Issued, AppError> {
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let before = locked(&mut tx, id).await?.ok_or(AppError::NotFound)?;
        let (draft, blame) = change(before.spec.draft());
        let spec = draft.parse(blame).map_err(AppError::Invalid)?;
        let mut after = Client {
            spec,
            updated_at: now_micros(),
            ..before.clone()
        };
        let was = before.spec.token_endpoint_auth_method;
        let now = after.spec.token_endpoint_auth_method;
        let mut secret = None;
        if now == AuthMethod::None {
            after.secret_hash = None;
        } else if !was.is_confidential() {
            let (s, hash) = new_secret();
            secret = Some(s);
            after.secret_hash = Some(hash);
        }
        let fields = changed(&before.spec, &after.spec);
        if fields.is_empty() {
            return Ok(Issued {
                client: before,
                secret: None,
            });
        }
        store::update(&mut tx, &after).await?;
        let mut entry = actor
            .entry(Action::ClientUpdated)
            .target("client", id)
            .detail("fields", fields);
        if secret.is_some() {
            entry = entry.detail("secret_issued", true);
        } else if before.secret_hash.is_some() && after.secret_hash.is_none() {
            entry = entry.detail("secret_removed", true);
        }
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(Issued {
            client: after,
            secret,
        })
    })
    .await
}

/// The names of the settings that differ.
fn changed(a: &ClientSpec, b: &ClientSpec) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut check = |name, same: bool| {
        if !same {
            fields.push(name);
        }
    };
    check("client_name", a.client_name == b.client_name);
    check("redirect_uris", a.redirect_uris == b.redirect_uris);
    check(
        "post_logout_redirect_uris",
        a.post_logout_redirect_uris == b.post_logout_redirect_uris,
    );
    check("grant_types", a.grant_types == b.grant_types);
    check(
        "token_endpoint_auth_method",
        a.token_endpoint_auth_method == b.token_endpoint_auth_method,
    );
    check("scope", a.scope == b.scope);
    check(
        "id_token_signed_response_alg",
        a.id_token_signed_response_alg == b.id_token_signed_response_alg,
    );
    fields
}

/// Replaces a confidential client's secret; the old one stops working at once. A public
/// client has none to replace (409 `public-client`).
#[tracing::instrument(skip_all, fields(client_id = %id))]
pub async fn rotate_secret(app: &AppState, id: ClientId, actor: Actor) -> Result<Issued, AppError> {
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let mut client = locked(&mut tx, id).await?.ok_or(AppError::NotFound)?;
        if !client.spec.token_endpoint_auth_method.is_confidential() {
            return Err(AppError::Conflict {
                slug: "public-client",
                detail: "A public client (token_endpoint_auth_method none) has no secret; change its token_endpoint_auth_method to get one.".into(),
            });
        }
        let (secret, hash) = new_secret();
        client.secret_hash = Some(hash);
        client.updated_at = now_micros();
        store::update(&mut tx, &client).await?;
        let entry = actor
            .entry(Action::ClientSecretRotated)
            .target("client", id);
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(Issued {
            client,
            secret: Some(secret),
        })
    })
    .await
}

/// Deletes a client: its secret stops working at once.
#[tracing::instrument(skip_all, fields(client_id = %id))]
pub async fn delete(app: &AppState, id: ClientId, actor: Actor) -> Result<Client, AppError> {
    app.to_completion(move |app| async move {
        let mut tx = app.store.begin_write().await?;
        let client = locked(&mut tx, id).await?.ok_or(AppError::NotFound)?;
        store::delete(&mut tx, id).await?;
        let entry = actor
            .entry(Action::ClientDeleted)
            .target("client", id)
            .detail("client_name", client.spec.client_name.as_str());
        app.audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(client)
    })
    .await
}

/// The secret's text, for the one answer that shows it.
pub fn reveal(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::clients::model::DEFAULT_SCOPE;

    fn client(secret_hash: Option<String>) -> Client {
        let spec = Draft {
            client_name: "App".into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            grant_types: vec!["authorization_code".into()],
            token_endpoint_auth_method: "client_secret_basic".into(),
            scope: DEFAULT_SCOPE.into(),
            id_token_signed_response_alg: "RS256".into(),
            ..Draft::default()
        }
        .parse(Blame::GrantTypes)
        .unwrap();
        Client {
            client_id: ClientId::new(),
            spec,
            secret_hash,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn only_the_issued_secret_verifies() {
        let (secret, hash) = new_secret();
        let c = client(Some(hash));
        assert!(verify_secret(&c, reveal(&secret)));
        assert!(!verify_secret(&c, "wrong"));
        assert!(!verify_secret(&c, ""));
        assert!(!verify_secret(&client(None), reveal(&secret)));
        assert_eq!(reveal(&secret).len(), 43, "256 bits, base64url");
    }
}
