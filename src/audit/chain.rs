//! The hash chain, as pure functions: the canonical form of an entry, its hash, and the
//! signed head and checkpoint. The byte layout is the contract an outside verifier
//! reimplements, so it is spelled out here and in README.md and never changes within a
//! version (a new layout gets a new version tag).
//!
//! Every field is written as `<byte length in decimal>:<UTF-8 bytes>\n`, and a NULL as `-\n`,
//! so no value can run into the next one or pass for a NULL. An entry's canonical form is
//!
//! ```text
//! portvakt-audit-v1\n
//! seq id at actor_id action target_type target_id outcome details personal_digest
//! ```
//!
//! (each a field as above, in this order; `seq` and `at` in decimal, `details` exactly as
//! stored), and its hash is `hex(SHA-256(prev_hash || canonical))`, where `prev_hash` is the
//! previous entry's hash as its 64 lowercase hex characters ([`GENESIS`] before the first).
//!
//! Personal data (IP, user agent, the `personal` JSON) is not hashed directly but through a
//! salted digest, so that erasing it later (GDPR) leaves the chain verifiable: the digest
//! stays, and without the salt it reveals nothing. Erasure replaces the salt with
//! [`ERASED_PREFIX`] and an HMAC over the entry's sequence number and digest
//! ([`Signer::seal_erasure`]), so that personal data cleared by anyone without the secret key
//! still shows as tampering.

use aws_lc_rs::{digest, hmac};

use crate::crypto::{hex, random_bytes};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const ENTRY_TAG: &str = "portvakt-audit-v1\n";
const PERSONAL_TAG: &str = "portvakt-audit-personal-v1\n";
const HEAD_TAG: &str = "portvakt-audit-head-v1\n";
const CHECKPOINT_TAG: &str = "portvakt-audit-checkpoint-v1\n";
const ERASURE_TAG: &str = "portvakt-audit-erasure-v1\n";

/// What `personal_salt` starts with once the entry's personal data was erased: the salt is
/// gone with the data, and the rest is the erasure's seal. A salt is hex, so never starts so.
pub const ERASED_PREFIX: &str = "erased:";

fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.extend_from_slice(b"-\n"),
        Some(v) => {
            out.extend_from_slice(v.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
    }
}

/// The hashed columns of one entry, as stored.
#[derive(Debug, Clone, Copy)]
pub struct Hashed<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub at: i64,
    pub actor_id: Option<&'a str>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub outcome: &'a str,
    pub details: &'a str,
    pub personal_digest: Option<&'a str>,
}

/// The canonical form of an entry (module docs).
pub fn canonical(e: &Hashed<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + e.details.len());
    out.extend_from_slice(ENTRY_TAG.as_bytes());
    field(&mut out, Some(&e.seq.to_string()));
    field(&mut out, Some(e.id));
    field(&mut out, Some(&e.at.to_string()));
    field(&mut out, e.actor_id);
    field(&mut out, Some(e.action));
    field(&mut out, e.target_type);
    field(&mut out, e.target_id);
    field(&mut out, Some(e.outcome));
    field(&mut out, Some(e.details));
    field(&mut out, e.personal_digest);
    out
}

/// The hash of an entry that follows `prev_hash`.
pub fn entry_hash(prev_hash: &str, e: &Hashed<'_>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash.as_bytes());
    ctx.update(&canonical(e));
    hex(ctx.finish().as_ref())
}

/// Personal data of an entry, kept apart so that it can be erased.
#[derive(Debug, Clone, Copy, Default)]
pub struct Personal<'a> {
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// A JSON object as stored, e.g. `{"email":"..."}`.
    pub personal: Option<&'a str>,
}

impl Personal<'_> {
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.user_agent.is_none() && self.personal.is_none()
    }
}

/// `hex(SHA-256("portvakt-audit-personal-v1\n" salt ip user_agent personal))`, fields as above.
pub fn personal_digest(salt: &str, p: &Personal<'_>) -> String {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(PERSONAL_TAG.as_bytes());
    field(&mut out, Some(salt));
    field(&mut out, p.ip);
    field(&mut out, p.user_agent);
    field(&mut out, p.personal);
    hex(digest::digest(&digest::SHA256, &out).as_ref())
}

/// A fresh salt for [`personal_digest`]: 128 random bits as hex.
pub fn new_salt() -> String {
    hex(&random_bytes::<16>())
}

/// What a signature covers: where the chain ends (the head) or where it now starts after
/// pruning (the checkpoint: the last pruned entry's sequence, hash and time).
fn signed_message(tag: &str, seq: i64, hash: &str, at: Option<i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(tag.as_bytes());
    field(&mut out, Some(&seq.to_string()));
    field(&mut out, Some(hash));
    if let Some(at) = at {
        field(&mut out, Some(&at.to_string()));
    }
    out
}

/// Signs and checks the head and checkpoint with a key derived from the secret key, so that
/// someone who can write to the database but does not hold the secret can neither rewrite
/// the chain to the end nor move its start.
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn new(key: hmac::Key) -> Signer {
        Signer { key }
    }

    pub fn sign_head(&self, seq: i64, hash: &str) -> String {
        let message = signed_message(HEAD_TAG, seq, hash, None);
        hex(hmac::sign(&self.key, &message).as_ref())
    }

    pub fn sign_checkpoint(&self, seq: i64, hash: &str, at: i64) -> String {
        let message = signed_message(CHECKPOINT_TAG, seq, hash, Some(at));
        hex(hmac::sign(&self.key, &message).as_ref())
    }

    pub fn head_is_valid(&self, seq: i64, hash: &str, signature: &str) -> bool {
        self.check(&signed_message(HEAD_TAG, seq, hash, None), signature)
    }

    pub fn checkpoint_is_valid(&self, seq: i64, hash: &str, at: i64, signature: &str) -> bool {
        self.check(
            &signed_message(CHECKPOINT_TAG, seq, hash, Some(at)),
            signature,
        )
    }

    /// The `personal_salt` of entry `seq` after its personal data (digest `digest`) was
    /// erased: [`ERASED_PREFIX`] and an HMAC binding the erasure to that entry and digest.
    pub fn seal_erasure(&self, seq: i64, digest: &str) -> String {
        let message = signed_message(ERASURE_TAG, seq, digest, None);
        format!(
            "{ERASED_PREFIX}{}",
            hex(hmac::sign(&self.key, &message).as_ref())
        )
    }

    /// Whether `salt` is the seal of a legitimate erasure of entry `seq`'s personal data.
    pub fn erasure_is_valid(&self, seq: i64, digest: &str, salt: &str) -> bool {
        salt.strip_prefix(ERASED_PREFIX)
            .is_some_and(|seal| self.check(&signed_message(ERASURE_TAG, seq, digest, None), seal))
    }

    fn check(&self, message: &[u8], signature: &str) -> bool {
        // Constant-time comparison inside aws-lc.
        crate::crypto::hex_decode(signature)
            .is_some_and(|tag| hmac::verify(&self.key, message, &tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Hashed<'static> {
        Hashed {
            seq: 1,
            id: "0190b5c2-0000-7000-8000-000000000001",
            at: 1_700_000_000_000_000,
            actor_id: None,
            action: "login_failed",
            target_type: None,
            target_id: None,
            outcome: "failure",
            details: r#"{"reason":"unknown_email"}"#,
            personal_digest: None,
        }
    }

    #[test]
    fn the_canonical_form_is_length_prefixed_lines_with_nulls_marked() {
        let text = String::from_utf8(canonical(&sample())).unwrap();
        assert_eq!(
            text,
            "portvakt-audit-v1\n1:1\n36:0190b5c2-0000-7000-8000-000000000001\n16:1700000000000000\n-\n12:login_failed\n-\n-\n7:failure\n26:{\"reason\":\"unknown_email\"}\n-\n"
        );
    }

    #[test]
    fn the_hash_is_sha256_over_the_previous_hash_and_the_canonical_form() {
        let mut input = GENESIS.as_bytes().to_vec();
        input.extend(canonical(&sample()));
        let expected = hex(digest::digest(&digest::SHA256, &input).as_ref());
        assert_eq!(entry_hash(GENESIS, &sample()), expected);
        // Pinned (and computed independently from the documented layout), so that an
        // accidental change of the layout fails here and not in the field.
        assert_eq!(
            entry_hash(GENESIS, &sample()),
            "7d5ecb19f8463ebbbd72c92304ef37344c2d364108a26ab3bd23a7be2c69a183"
        );
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let base = entry_hash(GENESIS, &sample());
        let variants = [
            Hashed { seq: 2, ..sample() },
            Hashed {
                at: 1_700_000_000_000_001,
                ..sample()
            },
            Hashed {
                actor_id: Some("someone"),
                ..sample()
            },
            Hashed {
                action: "login",
                ..sample()
            },
            Hashed {
                target_type: Some("user"),
                ..sample()
            },
            Hashed {
                target_id: Some("x"),
                ..sample()
            },
            Hashed {
                outcome: "success",
                ..sample()
            },
            Hashed {
                details: "{}",
                ..sample()
            },
            Hashed {
                personal_digest: Some("ab"),
                ..sample()
            },
        ];
        for v in &variants {
            assert_ne!(entry_hash(GENESIS, v), base, "{v:?}");
        }
        assert_ne!(entry_hash(&"1".repeat(64), &sample()), base);
    }

    #[test]
    fn an_empty_value_is_not_a_null_and_values_cannot_shift_between_fields() {
        let empty = Hashed {
            target_type: Some(""),
            ..sample()
        };
        assert_ne!(entry_hash(GENESIS, &empty), entry_hash(GENESIS, &sample()));
        let a = Hashed {
            target_type: Some("user\n1:x"),
            target_id: None,
            ..sample()
        };
        let b = Hashed {
            target_type: Some("user"),
            target_id: Some("x"),
            ..sample()
        };
        assert_ne!(canonical(&a), canonical(&b));
    }

    #[test]
    fn the_personal_digest_depends_on_the_salt_and_every_personal_field() {
        let p = Personal {
            ip: Some("192.0.2.1"),
            user_agent: Some("curl/8"),
            personal: None,
        };
        let d = personal_digest("00", &p);
        assert_ne!(d, personal_digest("01", &p));
        assert_ne!(
            d,
            personal_digest(
                "00",
                &Personal {
                    ip: Some("192.0.2.2"),
                    ..p
                }
            )
        );
        assert_ne!(
            d,
            personal_digest(
                "00",
                &Personal {
                    personal: Some("{}"),
                    ..p
                }
            )
        );
        assert_eq!(new_salt().len(), 32);
    }

    #[test]
    fn signatures_bind_sequence_hash_and_purpose() {
        let signer = Signer::new(hmac::Key::new(hmac::HMAC_SHA256, b"k"));
        let other = Signer::new(hmac::Key::new(hmac::HMAC_SHA256, b"other"));
        let head = signer.sign_head(5, GENESIS);
        assert!(signer.head_is_valid(5, GENESIS, &head));
        assert!(!signer.head_is_valid(6, GENESIS, &head));
        assert!(!signer.head_is_valid(5, &"1".repeat(64), &head));
        assert!(!other.head_is_valid(5, GENESIS, &head));
        assert!(!signer.head_is_valid(5, GENESIS, "zz"));
        assert!(!signer.head_is_valid(5, GENESIS, ""));
        let cp = signer.sign_checkpoint(5, GENESIS, 7);
        assert!(signer.checkpoint_is_valid(5, GENESIS, 7, &cp));
        assert!(!signer.checkpoint_is_valid(5, GENESIS, 8, &cp));
        // A head signature is not a checkpoint signature.
        assert!(!signer.checkpoint_is_valid(5, GENESIS, 7, &head));
    }

    #[test]
    fn an_erasure_seal_binds_the_entry_and_its_digest_and_is_no_salt() {
        let signer = Signer::new(hmac::Key::new(hmac::HMAC_SHA256, b"k"));
        let other = Signer::new(hmac::Key::new(hmac::HMAC_SHA256, b"other"));
        let seal = signer.seal_erasure(5, "d1");
        assert!(seal.starts_with(ERASED_PREFIX));
        assert!(signer.erasure_is_valid(5, "d1", &seal));
        assert!(!signer.erasure_is_valid(6, "d1", &seal));
        assert!(!signer.erasure_is_valid(5, "d2", &seal));
        assert!(!other.erasure_is_valid(5, "d1", &seal));
        assert!(!signer.erasure_is_valid(5, "d1", ERASED_PREFIX));
        // The seal is not the head signature of the same numbers, nor the other way round.
        let head = signer.sign_head(5, "d1");
        assert!(!signer.erasure_is_valid(5, "d1", &format!("{ERASED_PREFIX}{head}")));
        assert!(!new_salt().starts_with(ERASED_PREFIX));
    }
}
