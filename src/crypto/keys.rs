//! Token signing keys: Ed25519 key pairs generated on first start, stored in the database
//! with the private half sealed by the master key, and published as a JWKS (RFC 7517).
//!
//! Keys live in the database rather than the data directory so that every instance of a
//! PostgreSQL deployment signs and verifies with the same set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};
use sqlx::Row;

use super::secret::MasterKey;
use super::{b64url, b64url_decode};
use crate::store::{Store, now_micros};

const SEAL_PURPOSE: &str = "signing-key";
/// How often an unknown `kid` may trigger a reload from the database.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// A key that signs tokens.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
}

/// A key that verifies tokens, with its public JWK.
#[derive(Clone)]
struct VerifyingKey {
    decoding: DecodingKey,
    jwk: Value,
}

/// The current signing key and every key whose tokens may still be presented.
pub struct KeyRing {
    store: Store,
    master: Arc<MasterKey>,
    signer: RwLock<Arc<SigningKey>>,
    verifiers: RwLock<HashMap<String, VerifyingKey>>,
    last_reload: Mutex<Instant>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

struct Loaded {
    signer: Arc<SigningKey>,
    verifiers: HashMap<String, VerifyingKey>,
}

impl KeyRing {
    /// Loads the keys, generating the first one when the database has none.
    pub async fn load_or_create(store: Store, master: Arc<MasterKey>) -> anyhow::Result<KeyRing> {
        let loaded = match load(&store, &master).await? {
            Some(l) => l,
            None => {
                create(&store, &master).await?;
                load(&store, &master)
                    .await?
                    .context("no signing key after creating one")?
            }
        };
        Ok(KeyRing {
            store,
            master,
            signer: RwLock::new(loaded.signer),
            verifiers: RwLock::new(loaded.verifiers),
            last_reload: Mutex::new(Instant::now()),
        })
    }

    pub fn signer(&self) -> Arc<SigningKey> {
        match self.signer.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The verifying key for `kid`. An unknown kid may be a key another instance created
    /// since we loaded, so the set is re-read, at most once per second.
    pub async fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(k) = self.lookup(kid) {
            return Some(k);
        }
        let due = match self.last_reload.lock() {
            Ok(mut last) if last.elapsed() >= RELOAD_INTERVAL => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            match load(&self.store, &self.master).await {
                Ok(Some(loaded)) => {
                    if let Ok(mut s) = self.signer.write() {
                        *s = loaded.signer;
                    }
                    if let Ok(mut v) = self.verifiers.write() {
                        *v = loaded.verifiers;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "reloading signing keys failed")
                }
            }
        }
        self.lookup(kid)
    }

    fn lookup(&self, kid: &str) -> Option<DecodingKey> {
        self.verifiers
            .read()
            .ok()?
            .get(kid)
            .map(|k| k.decoding.clone())
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> Value {
        let mut keys: Vec<Value> = self
            .verifiers
            .read()
            .map(|v| v.values().map(|k| k.jwk.clone()).collect())
            .unwrap_or_default();
        keys.sort_by(|a, b| a["kid"].as_str().cmp(&b["kid"].as_str()));
        json!({ "keys": keys })
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: the key id.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

async fn create(store: &Store, master: &MasterKey) -> anyhow::Result<()> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| anyhow::anyhow!("generated key rejected: {e}"))?;
    let x = b64url(pair.public_key().as_ref());
    let kid = thumbprint(&x);
    let sealed = master.seal(SEAL_PURPOSE, kid.as_bytes(), pkcs8.as_ref());
    sqlx::query("INSERT INTO signing_keys (kid, alg, public_key, private_key, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&kid)
        .bind("EdDSA")
        .bind(&x)
        .bind(&sealed)
        .bind(now_micros())
        .execute(store.pool())
        .await
        .context("storing the new signing key")?;
    tracing::info!(kid = %kid, "generated a new Ed25519 signing key");
    Ok(())
}

/// Whether `master` opens the sealed private key of `kid`: the secret key that sealed it is
/// the one in use (restore checks this before committing).
pub fn opens(master: &MasterKey, kid: &str, sealed: &str) -> bool {
    master.open(SEAL_PURPOSE, kid.as_bytes(), sealed).is_ok()
}

async fn load(store: &Store, master: &MasterKey) -> anyhow::Result<Option<Loaded>> {
    let rows = sqlx::query("SELECT kid, alg, public_key, private_key FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid")
        .fetch_all(store.pool())
        .await
        .context("reading signing keys")?;
    let mut signer = None;
    let mut verifiers = HashMap::new();
    for row in rows {
        let kid: String = row.try_get("kid")?;
        let alg: String = row.try_get("alg")?;
        let x: String = row.try_get("public_key")?;
        let sealed: String = row.try_get("private_key")?;
        anyhow::ensure!(
            alg == "EdDSA",
            "signing key {kid} uses unsupported algorithm {alg}"
        );
        let raw = b64url_decode(&x)
            .with_context(|| format!("signing key {kid} has a malformed public key"))?;
        verifiers.insert(
            kid.clone(),
            VerifyingKey {
                decoding: DecodingKey::from_ed_der(&raw),
                jwk: json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA" }),
            },
        );
        // Rows are newest first: the newest active key signs.
        if signer.is_none() {
            let pkcs8 = master.open(SEAL_PURPOSE, kid.as_bytes(), &sealed).map_err(|_| {
                anyhow::anyhow!(
                    "signing key {kid} cannot be decrypted: PORTVAKT_SECRET_KEY is not the one this database was set up with"
                )
            })?;
            signer = Some(Arc::new(SigningKey {
                kid: kid.clone(),
                alg: Algorithm::EdDSA,
                encoding: EncodingKey::from_ed_der(&pkcs8),
            }));
        }
    }
    Ok(signer.map(|signer| Loaded { signer, verifiers }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
