//! Cache invalidation across instances. Instances cache hot reads (sessions, profiles) in
//! process; when one of them changes the underlying rows it announces the ids, and every
//! instance drops its copies. On PostgreSQL the announcement is a `pg_notify` inside the
//! writing transaction, so it is delivered at commit and not at all on rollback. SQLite
//! deployments are a single instance, which invalidates its own caches directly.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;

use super::{Backend, Store};

/// The PostgreSQL channel invalidations travel on.
pub const CHANNEL: &str = "portvakt_invalidate";

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// These ids of this kind changed (e.g. kind `session`, ids of revoked sessions).
    Ids { kind: String, ids: Vec<String> },
    /// Announcements may have been missed (the connection dropped): drop every cache.
    Everything,
}

impl Store {
    /// Announces changed ids to other instances. Call inside the transaction that changes them.
    pub async fn announce(
        &self,
        conn: &mut AnyConnection,
        kind: &str,
        ids: &[String],
    ) -> Result<(), sqlx::Error> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        announce_on_postgres(conn, kind, ids).await
    }
}

/// [`Store::announce`] for code that holds only the connection, which must be PostgreSQL's.
pub async fn announce_on_postgres(
    conn: &mut AnyConnection,
    kind: &str,
    ids: &[String],
) -> Result<(), sqlx::Error> {
    // NOTIFY payloads are limited to 8000 bytes; 100 UUIDs are 3.7 kB.
    for chunk in ids.chunks(100) {
        let payload = format!("{kind}:{}", chunk.join(","));
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn parse(payload: &str) -> Option<Invalidation> {
    let (kind, ids) = payload.split_once(':')?;
    Some(Invalidation::Ids {
        kind: kind.to_string(),
        ids: ids
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Listens for announcements (PostgreSQL only) and hands them to `apply`, reconnecting
/// forever. Whenever the connection is (re)established, `apply(Everything)` runs first,
/// because announcements made meanwhile were lost.
pub fn spawn_listener(database_url: String, apply: Arc<dyn Fn(Invalidation) + Send + Sync>) {
    tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect(&database_url).await {
                Ok(mut listener) => match listener.listen(CHANNEL).await {
                    Ok(()) => {
                        apply(Invalidation::Everything);
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(n)) => {
                                    if let Some(inv) = parse(n.payload()) {
                                        apply(inv);
                                    }
                                }
                                Ok(None) => {
                                    tracing::warn!(
                                        "invalidation listener reconnected; dropping cached sessions and profiles"
                                    );
                                    apply(Invalidation::Everything);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "invalidation listener failed");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot listen for cache invalidations"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot connect the invalidation listener"),
            }
            apply(Invalidation::Everything);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_a_kind_and_ids() {
        assert_eq!(
            parse("session:a,b"),
            Some(Invalidation::Ids {
                kind: "session".into(),
                ids: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(parse("garbage"), None);
    }
}
