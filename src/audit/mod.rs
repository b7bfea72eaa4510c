//! The audit log: an append-only, hash-chained record of security events, written in the
//! same transaction as the change it records, so that neither exists without the other.
//!
//! Appending serialises on the one-row `audit_head` (the chain's last sequence number and
//! hash, HMAC-signed with a key derived from the secret key). `verify` walks the chain from
//! the signed checkpoint that pruning leaves behind to the signed head and names the first
//! entry that was altered or removed. The byte layout that is hashed is in [`chain`].

pub mod chain;
pub mod entry;
pub mod erase;
pub mod prune;
pub mod query;
pub mod store;
pub mod verify;
pub mod view;

use std::sync::Arc;

use serde_json::{Map, Value};
use sqlx::AnyConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::crypto::secret::MasterKey;
use crate::store::now_micros;

pub use chain::Signer;
pub use entry::{Action, Entry, Outcome};
pub use erase::Person;
pub use prune::{PruneReport, prune};
pub use verify::{Broken, Report, VerifyError, verify};
pub use view::EntryView;

/// The announcement kind (see `store::notify`) under which PostgreSQL tells every instance
/// that entries were appended; the payload is the new entry's `seq`.
pub const APPENDED_KIND: &str = "audit";

/// The HKDF label of the key that signs the head and the checkpoint.
const KEY_PURPOSE: &str = "audit-log v1";

/// The schema version whose migration creates the audit tables.
pub const SCHEMA_VERSION: i64 = 2;

/// Appends entries. One per process, shared through `AppState`.
#[derive(Debug)]
pub struct Audit {
    signer: Signer,
    appended: Arc<Notify>,
}

impl Audit {
    pub fn new(master: &MasterKey) -> Audit {
        Audit {
            signer: Signer::new(master.hmac_key(KEY_PURPOSE)),
            appended: Arc::new(Notify::new()),
        }
    }

    /// Woken when entries may have become visible: what tails the log (the live events)
    /// waits on it. See [`Audit::record`] for when it fires.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Signs the empty chain's head, once, right after the migration that creates it, so
    /// that `audit verify` can refuse an unsigned head: wiping the log back to "empty" then
    /// takes a copy of this signature from before the first entry, not just two SQL
    /// statements. Nothing else may call it (it would sign a reset log).
    pub async fn seal_genesis(&self, db: &crate::store::Store) -> Result<(), sqlx::Error> {
        let signature = self.signer.sign_head(0, chain::GENESIS);
        sqlx::query(
            "UPDATE audit_head SET signature = $1 WHERE id = 1 AND seq = 0 AND hash = $2 AND signature = ''",
        )
        .bind(signature)
        .bind(chain::GENESIS)
        .execute(db.pool())
        .await?;
        Ok(())
    }

    /// Appends `entry` inside the caller's open write transaction and returns its id. It
    /// becomes visible, with the change, when the caller commits; a rollback takes both away.
    ///
    /// Call it as the last statement before the commit. On PostgreSQL it locks the chain's
    /// head until the transaction ends, which holds up every other audited write meanwhile;
    /// taking that lock last also means nobody holding it ever waits for another row lock,
    /// so it cannot be part of a deadlock.
    pub async fn record(
        &self,
        conn: &mut AnyConnection,
        entry: Entry,
    ) -> Result<Uuid, sqlx::Error> {
        let (seq, prev_hash) = store::claim_next(conn).await?;
        let id = Uuid::now_v7();
        // Taken under the lock, so that time order follows chain order on each instance.
        let at = now_micros();
        let row = seal(entry, seq, id, at, prev_hash);
        store::insert(conn, &row).await?;
        let signature = self.signer.sign_head(seq, &row.hash);
        store::set_head(conn, &row.hash, &signature).await?;
        metrics::counter!(crate::telemetry::metrics::AUDIT_ENTRIES).increment(1);
        self.wake_readers(conn, seq).await?;
        Ok(id)
    }

    /// Tells readers of the log that entry `seq` exists once it is committed, and never if it
    /// is rolled back. On PostgreSQL a NOTIFY does exactly that: the server delivers it at
    /// commit, to every instance (this one included), and drops it on rollback. SQLite has no
    /// such thing and serves one instance: the wake-up is in-process and comes before the
    /// commit, so the reader waits for the write lock, which this transaction holds until it
    /// commits or rolls back, before it reads (`events::tail`).
    async fn wake_readers(&self, conn: &mut AnyConnection, seq: i64) -> Result<(), sqlx::Error> {
        if conn.backend_name() == "PostgreSQL" {
            crate::store::notify::announce_on_postgres(conn, APPENDED_KIND, &[seq.to_string()])
                .await
        } else {
            self.appended.notify_one();
            Ok(())
        }
    }
}

/// The stored row of `entry` at position `seq` after `prev_hash`.
fn seal(entry: Entry, seq: i64, id: Uuid, at: i64, prev_hash: String) -> store::StoredEntry {
    let details = json_text(entry.details);
    let personal = (!entry.personal.is_empty()).then(|| json_text(entry.personal));
    let p = chain::Personal {
        ip: entry.ip.as_deref(),
        user_agent: entry.user_agent.as_deref(),
        personal: personal.as_deref(),
    };
    let (salt, digest) = if p.is_empty() {
        (None, None)
    } else {
        let salt = chain::new_salt();
        let digest = chain::personal_digest(&salt, &p);
        (Some(salt), Some(digest))
    };
    let id = id.to_string();
    let actor_id = entry.actor.map(|a| a.to_string());
    let (target_type, target_id) = match entry.target {
        Some((kind, id)) => (Some(kind.to_string()), Some(id)),
        None => (None, None),
    };
    let hash = chain::entry_hash(
        &prev_hash,
        &chain::Hashed {
            seq,
            id: &id,
            at,
            actor_id: actor_id.as_deref(),
            action: entry.action.as_str(),
            target_type: target_type.as_deref(),
            target_id: target_id.as_deref(),
            outcome: entry.outcome.as_str(),
            details: &details,
            personal_digest: digest.as_deref(),
        },
    );
    store::StoredEntry {
        seq,
        id,
        at,
        actor_id,
        action: entry.action.as_str().to_string(),
        target_type,
        target_id,
        outcome: entry.outcome.as_str().to_string(),
        details,
        ip: entry.ip,
        user_agent: entry.user_agent,
        personal,
        personal_salt: salt,
        personal_digest: digest,
        prev_hash,
        hash,
    }
}

/// A JSON object as compact text. The text is hashed exactly as stored, so its key order
/// needs no canonical rule; serde_json's map happens to sort keys anyway.
fn json_text(map: Map<String, Value>) -> String {
    Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            b"test",
        ))
    }

    #[test]
    fn a_sealed_entry_hashes_to_what_the_verifier_recomputes() {
        let signer = signer();
        let client = crate::http::ClientInfo {
            ip: "192.0.2.7".into(),
            user_agent: Some("test".into()),
        };
        let entry = Entry::new(Action::LoginFailed)
            .client(&client)
            .failure()
            .detail("reason", "unknown_email")
            .personal("email", "a@example.com");
        let row = seal(entry, 3, Uuid::now_v7(), 42, chain::GENESIS.to_string());
        assert_eq!(row.details, r#"{"reason":"unknown_email"}"#);
        assert_eq!(
            row.personal.as_deref(),
            Some(r#"{"email":"a@example.com"}"#)
        );
        let mut walker = verify::Walker::after(&signer, 2, chain::GENESIS.to_string());
        walker.step(&row).unwrap();

        let mut tampered = row.clone();
        tampered.ip = Some("198.51.100.1".into());
        let mut walker = verify::Walker::after(&signer, 2, chain::GENESIS.to_string());
        assert!(walker.step(&tampered).is_err());
    }

    #[test]
    fn personal_data_erased_with_the_seal_verifies_and_cleared_without_it_does_not() {
        let signer = signer();
        let client = crate::http::ClientInfo {
            ip: "192.0.2.7".into(),
            user_agent: Some("test".into()),
        };
        let row = seal(
            Entry::new(Action::Login).client(&client),
            3,
            Uuid::now_v7(),
            42,
            chain::GENESIS.to_string(),
        );
        let walk = |e: &store::StoredEntry| {
            verify::Walker::after(&signer, 2, chain::GENESIS.to_string()).step(e)
        };
        let mut cleared = row.clone();
        cleared.ip = None;
        cleared.user_agent = None;
        assert!(walk(&cleared).is_err(), "cleared but salt kept");
        let digest = row.personal_digest.clone().unwrap();
        cleared.personal_salt = Some(signer.seal_erasure(3, &digest));
        walk(&cleared).unwrap();

        let mut forged = cleared.clone();
        forged.personal_salt = Some(signer.seal_erasure(4, &digest));
        assert!(walk(&forged).is_err(), "a seal for another entry");
        let mut half = cleared.clone();
        half.ip = row.ip.clone();
        assert!(walk(&half).is_err(), "a seal but data left");
    }

    #[test]
    fn entries_without_personal_data_carry_no_salt() {
        let row = seal(
            Entry::new(Action::Signup),
            1,
            Uuid::now_v7(),
            1,
            chain::GENESIS.to_string(),
        );
        assert_eq!(row.personal_salt, None);
        assert_eq!(row.personal_digest, None);
        assert_eq!(row.details, "{}");
        assert_eq!(row.outcome, "success");
    }
}
