//! Sessions and their refresh tokens, and the per-instance cache of which sessions are alive.
//!
//! A session is created by a login and ends when it is revoked (logout, revocation, password
//! change, refresh token reuse) or when nobody refreshes it for `refresh_token_ttl`. Every
//! refresh token the session was given stays on record by hash, so presenting a used one is
//! recognised as theft and ends the session (OAuth 2.0 Security BCP §4.14).
//!
//! Access tokens are checked against the session cache on every request. A revocation here
//! updates the cache at once; with PostgreSQL it is also broadcast (LISTEN/NOTIFY) so every
//! instance forgets the session at once; the cache TTL bounds staleness if a broadcast is lost.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::accounts::UserId;
use crate::audit::{Action, Audit, Entry as AuditEntry};
use crate::crypto::{new_token, token_hash};
use crate::http::ClientInfo;
use crate::store::{Store, micros_after, now_micros};

/// The invalidation kind under which revoked session ids are announced.
pub const INVALIDATION_KIND: &str = "session";

#[derive(Debug, Clone, Copy)]
struct Entry {
    active: bool,
    checked: Instant,
}

/// Which sessions this instance has recently seen alive or dead.
///
/// A revocation must win over a concurrent read that saw the session alive just before the
/// revocation committed. Revocations bump `epoch` before marking the entry dead; a reader
/// stores what it read, then checks the epoch, and if anything was revoked meanwhile it reads
/// again rather than trust (or keep) its answer.
pub struct SessionCache {
    entries: Cache<Uuid, Entry>,
    ttl: Duration,
    epoch: AtomicU64,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    pub fn new(ttl: Duration, capacity: usize) -> SessionCache {
        SessionCache {
            entries: Cache::new(capacity.max(16)),
            ttl,
            epoch: AtomicU64::new(0),
        }
    }

    /// Whether the session is alive: from the cache while fresh, else from the database.
    /// A dead session stays dead, so negative answers are kept regardless of age.
    pub async fn is_active(&self, store: &Store, session: Uuid) -> Result<bool, sqlx::Error> {
        self.is_active_with(session, || is_active_in_db(store, session))
            .await
    }

    async fn is_active_with<F, Fut>(&self, session: Uuid, read: F) -> Result<bool, sqlx::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<bool, sqlx::Error>>,
    {
        if let Some(e) = self.entries.get(&session)
            && (!e.active || e.checked.elapsed() < self.ttl)
        {
            return Ok(e.active);
        }
        let before = self.epoch.load(Ordering::Acquire);
        let active = read().await?;
        self.entries.insert(
            session,
            Entry {
                active,
                checked: Instant::now(),
            },
        );
        if active && self.epoch.load(Ordering::Acquire) != before {
            // Something was revoked while we read; it may have been this session.
            let active = read().await?;
            if !active {
                self.entries.insert(
                    session,
                    Entry {
                        active,
                        checked: Instant::now(),
                    },
                );
            } else {
                self.entries.remove(&session);
            }
            return Ok(active);
        }
        Ok(active)
    }

    /// Marks sessions as ended (after a revocation committed).
    pub fn forget(&self, sessions: &[Uuid]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for s in sessions {
            self.entries.insert(
                *s,
                Entry {
                    active: false,
                    checked: Instant::now(),
                },
            );
        }
    }

    /// Drops everything: used when revocation broadcasts may have been missed.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Applies sessions announced as revoked by another instance.
    pub fn forget_ids(&self, ids: &[String]) {
        let ids: Vec<Uuid> = ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect();
        self.forget(&ids);
    }
}

/// Whether the session is alive, read from the database now, past every cache: for a check
/// that must see a revocation committed a moment ago, even one whose cache update on this
/// instance has not run yet.
pub async fn is_active_in_db(store: &Store, session: Uuid) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT revoked_at, expires_at FROM sessions WHERE id = $1")
        .bind(session.to_string())
        .fetch_optional(store.pool())
        .await?;
    let Some(row) = row else { return Ok(false) };
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    let expires: i64 = row.try_get("expires_at")?;
    Ok(revoked.is_none() && expires > now_micros())
}

/// A new session and its first refresh token.
pub struct Created {
    pub session_id: Uuid,
    pub refresh_token: String,
}

/// Opens a session for a login whose second factor was `mfa_method` (`None`: the password
/// alone); the session keeps it for life.
pub async fn create(
    conn: &mut AnyConnection,
    user: UserId,
    ip: &str,
    user_agent: Option<&str>,
    mfa_method: Option<&str>,
    ttl: Duration,
) -> Result<Created, sqlx::Error> {
    let created = create_with(
        conn,
        &NewSession {
            user,
            ip,
            user_agent,
            mfa_method,
            ttl,
            ..NewSession::api(user, ip)
        },
    )
    .await?;
    Ok(Created {
        session_id: created.session_id,
        refresh_token: created.refresh_token.unwrap_or_default(),
    })
}

/// Every kind of session: an API login's, a browser's on our OIDC pages (with a cookie, no
/// refresh token), and a client's grant (a child of the browser session that authorized it).
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub user: UserId,
    pub ip: &'a str,
    pub user_agent: Option<&'a str>,
    pub mfa_method: Option<&'a str>,
    pub ttl: Duration,
    /// The OIDC client whose grant this is; `None` for the user's own sessions.
    pub client_id: Option<&'a str>,
    /// The browser session that authorized the grant.
    pub parent_id: Option<Uuid>,
    pub scope: Option<&'a str>,
    /// When the user last authenticated, in microseconds; `None`: now.
    pub auth_time: Option<i64>,
    /// SHA-256 hex of a browser session's cookie.
    pub browser_token_hash: Option<&'a str>,
    /// Whether the session gets a refresh token.
    pub refresh: bool,
}

impl<'a> NewSession<'a> {
    /// An API session with a refresh token; override fields for the other kinds.
    pub fn api(user: UserId, ip: &'a str) -> NewSession<'a> {
        NewSession {
            user,
            ip,
            user_agent: None,
            mfa_method: None,
            ttl: Duration::from_secs(0),
            client_id: None,
            parent_id: None,
            scope: None,
            auth_time: None,
            browser_token_hash: None,
            refresh: true,
        }
    }
}

/// A new session of any kind, and its first refresh token if it gets one.
pub struct CreatedWith {
    pub session_id: Uuid,
    pub refresh_token: Option<String>,
    pub auth_time: i64,
}

pub async fn create_with(
    conn: &mut AnyConnection,
    new: &NewSession<'_>,
) -> Result<CreatedWith, sqlx::Error> {
    let session_id = Uuid::now_v7();
    let now = now_micros();
    let auth_time = new.auth_time.unwrap_or(now);
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, ip, user_agent, mfa_method, client_id, parent_id, scope, auth_time, browser_token_hash) VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(session_id.to_string())
    .bind(new.user.to_string())
    .bind(now)
    .bind(micros_after(now, new.ttl))
    .bind(new.ip)
    .bind(new.user_agent)
    .bind(new.mfa_method)
    .bind(new.client_id)
    .bind(new.parent_id.map(|p| p.to_string()))
    .bind(new.scope)
    .bind(auth_time)
    .bind(new.browser_token_hash)
    .execute(&mut *conn)
    .await?;
    let refresh_token = if new.refresh {
        let token = new_token();
        insert_refresh_token(conn, session_id, &token, now).await?;
        Some(token)
    } else {
        None
    };
    Ok(CreatedWith {
        session_id,
        refresh_token,
        auth_time,
    })
}

/// A live session as the OIDC endpoints need it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub id: Uuid,
    pub user_id: UserId,
    pub mfa_method: Option<String>,
    pub client_id: Option<String>,
    pub parent_id: Option<Uuid>,
    pub scope: Option<String>,
    /// Microseconds; sessions from before OIDC have none and count from their creation.
    pub auth_time: i64,
    pub expires_at: i64,
}

/// The session, if it is alive (not revoked, not expired), read from the database now.
pub async fn find_live(
    conn: &mut AnyConnection,
    session: Uuid,
) -> Result<Option<LiveSession>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_id, mfa_method, client_id, parent_id, scope, COALESCE(auth_time, created_at) AS auth_time, expires_at FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(session.to_string())
    .bind(now_micros())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(live_session).transpose()
}

/// The live grant of the client `holder` whose current (unused) refresh token is
/// `presented`: for introspection and revocation, which must not reveal or touch other
/// clients' grants.
pub async fn find_by_refresh(
    conn: &mut AnyConnection,
    presented: &str,
    holder: &str,
) -> Result<Option<LiveSession>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.id, s.user_id, s.mfa_method, s.client_id, s.parent_id, s.scope, COALESCE(s.auth_time, s.created_at) AS auth_time, s.expires_at FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1 AND r.used_at IS NULL AND s.client_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3",
    )
    .bind(token_hash(presented))
    .bind(holder)
    .bind(now_micros())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(live_session).transpose()
}

/// The live browser session whose cookie hashes to `cookie_hash`.
pub async fn find_browser(
    conn: &mut AnyConnection,
    cookie_hash: &str,
) -> Result<Option<LiveSession>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_id, mfa_method, client_id, parent_id, scope, COALESCE(auth_time, created_at) AS auth_time, expires_at FROM sessions WHERE browser_token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(cookie_hash)
    .bind(now_micros())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(live_session).transpose()
}

fn live_session(r: &sqlx::any::AnyRow) -> Result<LiveSession, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let id: String = r.try_get("id")?;
    let user: String = r.try_get("user_id")?;
    let parent: Option<String> = r.try_get("parent_id")?;
    Ok(LiveSession {
        id: Uuid::parse_str(&id).map_err(|e| decode(e.to_string()))?,
        user_id: UserId::parse(&user).ok_or_else(|| decode("user id".into()))?,
        mfa_method: r.try_get("mfa_method")?,
        client_id: r.try_get("client_id")?,
        parent_id: parent.as_deref().and_then(|p| Uuid::parse_str(p).ok()),
        scope: r.try_get("scope")?,
        auth_time: r.try_get("auth_time")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// Revokes a session and every grant it authorized (its children). Returns the sessions
/// revoked; the caller commits, then passes them to [`SessionCache::forget`].
pub async fn revoke_family(
    store: &Store,
    conn: &mut AnyConnection,
    session: Uuid,
    reason: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE (id = $3 OR parent_id = $3) AND revoked_at IS NULL RETURNING id",
    )
    .bind(now_micros())
    .bind(reason)
    .bind(session.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect();
    announce(store, conn, &ids).await?;
    Ok(ids)
}

/// Moves the grants of browser session `from` to `to`: the same user logged in again in the
/// same browser, and ending the new session must end what the old one authorized.
pub async fn adopt_children(
    conn: &mut AnyConnection,
    from: Uuid,
    to: Uuid,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE sessions SET parent_id = $1 WHERE parent_id = $2")
        .bind(to.to_string())
        .bind(from.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

async fn insert_refresh_token(
    conn: &mut AnyConnection,
    session: Uuid,
    token: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash(token))
    .bind(session.to_string())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: here is its successor.
    Rotated {
        user_id: UserId,
        session_id: Uuid,
        refresh_token: String,
        /// The second factor of the session's login, as [`create`] stored it.
        mfa_method: Option<String>,
        /// For a client's grant: its scope, the browser session that authorized it, and when
        /// the user authenticated there (microseconds).
        scope: Option<String>,
        parent_id: Option<Uuid>,
        auth_time: i64,
    },
    /// Unknown token, or its session has ended.
    Rejected,
    /// The token had been used before: the session is now revoked, and that is on record.
    Reused {
        user_id: UserId,
        session_id: Uuid,
        audit_id: Uuid,
    },
}

/// Exchanges a refresh token for its successor. The token is claimed with a conditional
/// UPDATE, so of several concurrent requests with one token exactly one wins; the others
/// find it used and, as with any reuse, end the session. A reuse that ends a session is
/// recorded in the audit log by the same transaction; its actor is the session's owner, whose
/// credential was presented, and `client` is who presented it.
///
/// `holder` is the OIDC client presenting the token (`None`: the API): a token is only
/// accepted from the holder of its session, and one presented by anyone else is rejected
/// without touching the session.
pub async fn rotate(
    store: &Store,
    audit: &Audit,
    presented: &str,
    ttl: Duration,
    client: &ClientInfo,
    holder: Option<&str>,
) -> Result<Rotation, sqlx::Error> {
    let hash = token_hash(presented);
    let now = now_micros();
    let mut tx = store.begin_write().await?;
    let claimed: Option<String> = sqlx::query_scalar(
        "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND session_id IN (SELECT id FROM sessions WHERE ($3 IS NULL AND client_id IS NULL) OR client_id = $3) RETURNING session_id",
    )
    .bind(now)
    .bind(&hash)
    .bind(holder)
    .fetch_optional(&mut *tx)
    .await?;

    let Some(session_id) = claimed else {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT session_id FROM refresh_tokens WHERE token_hash = $1 AND session_id IN (SELECT id FROM sessions WHERE ($2 IS NULL AND client_id IS NULL) OR client_id = $2)",
        )
        .bind(&hash)
        .bind(holder)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(session_id) = owner.and_then(|s| Uuid::parse_str(&s).ok()) else {
            return Ok(Rotation::Rejected);
        };
        let user_id = user_of(&mut tx, session_id).await?;
        let revoked = revoke_in(store, &mut tx, session_id, None, "refresh_token_reused").await?;
        let (Some(user_id), true) = (user_id, revoked) else {
            tx.commit().await?;
            return Ok(Rotation::Rejected);
        };
        let entry = AuditEntry::new(Action::RefreshReuseDetected)
            .failure()
            .actor(user_id)
            .target("session", session_id)
            .client(client)
            .detail("session_revoked", true);
        let audit_id = audit.record(&mut tx, entry).await?;
        tx.commit().await?;
        return Ok(Rotation::Reused {
            user_id,
            session_id,
            audit_id,
        });
    };

    let session_id = Uuid::parse_str(&session_id).map_err(|e| sqlx::Error::Decode(e.into()))?;
    // Extend the session only if it is still live; the same statement that checks also
    // writes, so a revocation committing concurrently cannot be missed.
    type Live = (String, Option<String>, Option<String>, Option<String>, i64);
    let live: Option<Live> = sqlx::query_as(
        "UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE id = $3 AND revoked_at IS NULL AND expires_at > $1 RETURNING user_id, mfa_method, scope, parent_id, COALESCE(auth_time, created_at)",
    )
    .bind(now)
    .bind(micros_after(now, ttl))
    .bind(session_id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user, mfa_method, scope, parent_id, auth_time)) = live else {
        // Keep the token marked used; the session is over either way.
        tx.commit().await?;
        return Ok(Rotation::Rejected);
    };
    let Some(user_id) = UserId::parse(&user) else {
        tx.commit().await?;
        return Ok(Rotation::Rejected);
    };
    let refresh_token = new_token();
    insert_refresh_token(&mut tx, session_id, &refresh_token, now).await?;
    tx.commit().await?;
    Ok(Rotation::Rotated {
        user_id,
        session_id,
        refresh_token,
        mfa_method,
        scope,
        parent_id: parent_id.as_deref().and_then(|p| Uuid::parse_str(p).ok()),
        auth_time,
    })
}

async fn user_of(conn: &mut AnyConnection, session: Uuid) -> Result<Option<UserId>, sqlx::Error> {
    let user: Option<String> = sqlx::query_scalar("SELECT user_id FROM sessions WHERE id = $1")
        .bind(session.to_string())
        .fetch_optional(conn)
        .await?;
    Ok(user.as_deref().and_then(UserId::parse))
}

/// Revokes one live session, optionally only if it belongs to `owner`. Returns whether a
/// live session was revoked. The caller commits and then calls [`SessionCache::forget`].
pub async fn revoke_in(
    store: &Store,
    conn: &mut AnyConnection,
    session: Uuid,
    owner: Option<UserId>,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let now = now_micros();
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL AND expires_at > $1 AND ($4 IS NULL OR user_id = $4)",
    )
    .bind(now)
    .bind(reason)
    .bind(session.to_string())
    .bind(owner.map(|o| o.to_string()))
    .execute(&mut *conn)
    .await?;
    let revoked = done.rows_affected() == 1;
    if revoked {
        announce(store, conn, &[session]).await?;
    }
    Ok(revoked)
}

/// Revokes every live session of a user except `keep`; returns the ones revoked.
pub async fn revoke_all_of_user(
    store: &Store,
    conn: &mut AnyConnection,
    user: UserId,
    keep: Option<&Uuid>,
    reason: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL AND ($4 IS NULL OR id <> $4) RETURNING id",
    )
    .bind(now_micros())
    .bind(reason)
    .bind(user.to_string())
    .bind(keep.map(Uuid::to_string))
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect();
    announce(store, conn, &ids).await?;
    Ok(ids)
}

/// Tells other instances which sessions ended (see `store::notify`).
async fn announce(
    store: &Store,
    conn: &mut AnyConnection,
    sessions: &[Uuid],
) -> Result<(), sqlx::Error> {
    let ids: Vec<String> = sessions.iter().map(Uuid::to_string).collect();
    store.announce(conn, INVALIDATION_KIND, &ids).await
}

/// A live session as listed to its owner.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: Uuid,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub async fn list_live(store: &Store, user: UserId) -> Result<Vec<SessionRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, created_at, last_seen_at, ip, user_agent FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC",
    )
    .bind(user.to_string())
    .bind(now_micros())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            Ok(SessionRow {
                id: Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(e.into()))?,
                created_at: r.try_get("created_at")?,
                last_seen_at: r.try_get("last_seen_at")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
            })
        })
        .collect()
}

/// A session as stored, whatever its state: what an export of the account shows.
#[derive(Debug, Clone)]
pub struct StoredSession {
    pub id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Every session of the user still on record (live, revoked and expired), newest first.
pub async fn list_all(
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<Vec<StoredSession>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, created_at, last_seen_at, expires_at, revoked_at, revoked_reason, ip, user_agent FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id",
    )
    .bind(user.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredSession {
                id: r.try_get("id")?,
                created_at: r.try_get("created_at")?,
                last_seen_at: r.try_get("last_seen_at")?,
                expires_at: r.try_get("expires_at")?,
                revoked_at: r.try_get("revoked_at")?,
                revoked_reason: r.try_get("revoked_reason")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
            })
        })
        .collect()
}

/// Deletes every session of the user and every refresh token they were given (the account
/// is being erased), and announces them ended. Returns the sessions deleted; after the commit
/// the caller passes them to [`SessionCache::forget`].
pub async fn delete_all_of_user(
    store: &Store,
    conn: &mut AnyConnection,
    user: UserId,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query(
        "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)",
    )
    .bind(user.to_string())
    .execute(&mut *conn)
    .await?;
    let ids: Vec<String> =
        sqlx::query_scalar("DELETE FROM sessions WHERE user_id = $1 RETURNING id")
            .bind(user.to_string())
            .fetch_all(&mut *conn)
            .await?;
    let ids: Vec<Uuid> = ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect();
    announce(store, conn, &ids).await?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[tokio::test]
    async fn a_revocation_during_a_read_wins_over_what_the_read_saw() {
        let cache = Arc::new(SessionCache::new(Duration::from_secs(600), 100));
        let session = Uuid::now_v7();
        let revoked = Arc::new(AtomicBool::new(false));
        let (reading_tx, reading_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let slots = Arc::new(std::sync::Mutex::new(Some((reading_tx, go_rx))));

        let reader = {
            let (cache, revoked, slots) = (cache.clone(), revoked.clone(), slots.clone());
            tokio::spawn(async move {
                cache
                    .is_active_with(session, || {
                        let (revoked, slots) = (revoked.clone(), slots.clone());
                        async move {
                            // The first read sees the session alive, then stalls until the
                            // revocation has committed and been applied to the cache.
                            let first = slots.lock().unwrap().take();
                            let seen = !revoked.load(Ordering::SeqCst);
                            if let Some((reading, go)) = first {
                                let _ = reading.send(());
                                let _ = go.await;
                            }
                            Ok(seen)
                        }
                    })
                    .await
            })
        };
        reading_rx.await.unwrap();
        revoked.store(true, Ordering::SeqCst);
        cache.forget(&[session]);
        go_tx.send(()).unwrap();

        assert!(
            !reader.await.unwrap().unwrap(),
            "the racing reader reports the session dead"
        );
        let again = cache
            .is_active_with(session, || async { Ok(true) })
            .await
            .unwrap();
        assert!(!again, "and the cache remembers it dead");
    }
}
