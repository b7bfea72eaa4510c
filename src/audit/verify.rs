//! Walking the chain: from the signed checkpoint (or the beginning) to the signed head,
//! recomputing every hash, and naming the first entry that was altered or removed.

use std::fmt;

use super::Audit;
use super::chain::{self, ERASED_PREFIX, GENESIS, Personal, Signer};
use super::store::{self, Checkpoint, Head, StoredEntry};
use crate::store::Store;

/// Entries read per query while walking.
const PAGE: i64 = 1000;

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first sequence number at which the chain is not what was written.
    pub seq: i64,
    /// That entry's id, when the entry is there at all.
    pub id: Option<String>,
    pub problem: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "entry {} (id {id}) {}", self.seq, self.problem),
            None => write!(f, "entry {} {}", self.seq, self.problem),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the audit log is broken: {0}")]
    Broken(Broken),
    #[error("reading the audit log: {0}")]
    Database(#[from] sqlx::Error),
}

/// What an intact chain looks like.
#[derive(Debug, Clone)]
pub struct Report {
    /// Entries checked (those kept; pruned ones are vouched for by the checkpoint).
    pub entries: u64,
    /// The last pruned entry (0 when nothing was pruned).
    pub pruned_through: i64,
    pub head_seq: i64,
    pub head_hash: String,
}

/// Checks entries one after the other against the chain so far.
/// `signer` vouches for erasures of personal data.
#[derive(Debug)]
pub(crate) struct Walker<'a> {
    signer: &'a Signer,
    expected: i64,
    prev: String,
    checked: u64,
}

impl<'a> Walker<'a> {
    /// A walk that starts after entry `seq`, whose hash was `hash`.
    pub(crate) fn after(signer: &'a Signer, seq: i64, hash: String) -> Walker<'a> {
        Walker {
            signer,
            expected: seq.saturating_add(1),
            prev: hash,
            checked: 0,
        }
    }

    pub(crate) fn step(&mut self, e: &StoredEntry) -> Result<(), Broken> {
        let broken = |seq: i64, id: Option<&str>, problem: String| Broken {
            seq,
            id: id.map(str::to_string),
            problem,
        };
        if e.seq > self.expected {
            return Err(broken(
                self.expected,
                None,
                format!(
                    "is missing: removed (the chain continues at entry {})",
                    e.seq
                ),
            ));
        }
        if e.seq < self.expected {
            return Err(broken(
                e.seq,
                Some(&e.id),
                format!(
                    "is out of place: expected entry {} here (moved, duplicated, or older than the checkpoint)",
                    self.expected
                ),
            ));
        }
        if e.prev_hash != self.prev {
            return Err(broken(
                e.seq,
                Some(&e.id),
                "does not follow the entry before it: that one was replaced or this one was moved"
                    .into(),
            ));
        }
        let personal = Personal {
            ip: e.ip.as_deref(),
            user_agent: e.user_agent.as_deref(),
            personal: e.personal.as_deref(),
        };
        let personal_ok = match (&e.personal_salt, &e.personal_digest) {
            // Cleared personal data: fine only with the seal that erasure writes (GDPR);
            // without the secret key, clearing fields is tampering like any other change.
            (Some(salt), Some(digest)) if salt.starts_with(ERASED_PREFIX) => {
                personal.is_empty() && self.signer.erasure_is_valid(e.seq, digest, salt)
            }
            (Some(salt), digest) => {
                digest.as_deref() == Some(&chain::personal_digest(salt, &personal))
            }
            // Never had any.
            (None, digest) => personal.is_empty() && digest.is_none(),
        };
        if !personal_ok {
            return Err(broken(
                e.seq,
                Some(&e.id),
                "was altered: its IP, user agent or personal data do not match their digest, or were cleared without a valid erasure seal".into(),
            ));
        }
        let hash = chain::entry_hash(
            &self.prev,
            &chain::Hashed {
                seq: e.seq,
                id: &e.id,
                at: e.at,
                actor_id: e.actor_id.as_deref(),
                action: &e.action,
                target_type: e.target_type.as_deref(),
                target_id: e.target_id.as_deref(),
                outcome: &e.outcome,
                details: &e.details,
                personal_digest: e.personal_digest.as_deref(),
            },
        );
        if hash != e.hash {
            return Err(broken(
                e.seq,
                Some(&e.id),
                "was altered: its content does not match its hash".into(),
            ));
        }
        self.prev = hash;
        self.expected += 1;
        self.checked += 1;
        Ok(())
    }

    /// After the last entry: the chain must end exactly at the head.
    fn finish(&self, head: &Head) -> Result<(), Broken> {
        let last = self.expected - 1;
        if last < head.seq {
            return Err(Broken {
                seq: self.expected,
                id: None,
                problem: format!(
                    "is missing: entries {}..={} were removed from the end (the signed head is entry {})",
                    self.expected, head.seq, head.seq
                ),
            });
        }
        if last > head.seq || self.prev != head.hash {
            return Err(Broken {
                seq: head.seq,
                id: None,
                problem: "does not match the signed head: entries were added or rewritten".into(),
            });
        }
        Ok(())
    }
}

impl Checkpoint {
    pub(crate) fn is_genesis(&self) -> bool {
        self.seq == 0 && self.hash == GENESIS && self.signature.is_empty()
    }
}

/// Checks the checkpoint's signature (the genesis checkpoint has none).
pub(crate) fn check_checkpoint(audit: &Audit, cp: &Checkpoint) -> Result<(), Broken> {
    if cp.is_genesis()
        || audit
            .signer()
            .checkpoint_is_valid(cp.seq, &cp.hash, cp.at, &cp.signature)
    {
        return Ok(());
    }
    Err(Broken {
        seq: cp.seq,
        id: None,
        problem: "is named by a checkpoint whose signature is invalid: the checkpoint was forged, or this is not the secret key that wrote it".into(),
    })
}

/// Walks the whole chain in one consistent snapshot.
#[tracing::instrument(skip_all)]
pub async fn verify(db: &Store, audit: &Audit) -> Result<Report, VerifyError> {
    let mut tx = db.begin_snapshot().await?;
    let head = store::head(&mut tx).await?;
    // Even the empty chain's head is signed (when the service first opens the database), so
    // resetting the log to "empty" is not a way to erase it.
    if !audit
        .signer()
        .head_is_valid(head.seq, &head.hash, &head.signature)
    {
        let problem = if head.signature.is_empty() {
            "is named by an unsigned head: the log was reset, or portvakt never opened this database"
        } else {
            "is named by a head whose signature is invalid: the end of the chain was rewritten, or this is not the secret key that wrote it"
        };
        return Err(VerifyError::Broken(Broken {
            seq: head.seq,
            id: None,
            problem: problem.into(),
        }));
    }
    let cp = store::checkpoint(&mut tx).await?;
    check_checkpoint(audit, &cp).map_err(VerifyError::Broken)?;
    // Pruning deletes everything up to the checkpoint in the same transaction that moves
    // it, so an entry there was put in afterwards, and would otherwise never be checked.
    if let Some(e) = store::page(&mut tx, i64::MIN, 1)
        .await?
        .into_iter()
        .find(|e| e.seq <= cp.seq)
    {
        return Err(VerifyError::Broken(Broken {
            seq: e.seq,
            id: Some(e.id),
            problem: format!(
                "is still present although the signed checkpoint says entries up to {} were pruned: it was inserted afterwards",
                cp.seq
            ),
        }));
    }
    let mut walker = Walker::after(audit.signer(), cp.seq, cp.hash.clone());
    let mut after = cp.seq;
    loop {
        let rows = store::page(&mut tx, after, PAGE).await?;
        let Some(last) = rows.last().map(|e| e.seq) else {
            break;
        };
        for e in &rows {
            walker.step(e).map_err(VerifyError::Broken)?;
        }
        after = last;
    }
    walker.finish(&head).map_err(VerifyError::Broken)?;
    tx.rollback().await?;
    Ok(Report {
        entries: walker.checked,
        pruned_through: cp.seq,
        head_seq: head.seq,
        head_hash: head.hash,
    })
}
