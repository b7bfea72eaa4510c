//! Token signing keys: Ed25519 key pairs generated on first start, stored in the database
//! with the private half sealed by the master key, and published as a JWKS (RFC 7517).
//!
//! Keys live in the database rather than the data directory so that every instance of a
//! PostgreSQL deployment signs and verifies with the same set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};
use sqlx::Row;

use super::secret::MasterKey;
use crate::store::{Store, micros_after, now_micros};

pub mod material;
pub mod rotation;

const SEAL_PURPOSE: &str = "signing-key";
/// How often an unknown `kid` may trigger a reload from the database.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How often every instance re-reads the keys whatever it heard: a rotation by another
/// process (the CLI on SQLite, or an instance whose announcement was lost) takes effect
/// here within this, and retired keys past their retention leave the JWKS.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Tokens signed with a key that are not access tokens (the coming OIDC ID tokens) live up
/// to this long, so a retired key is kept at least this long.
pub const LONGEST_OTHER_TOKEN: Duration = Duration::from_secs(3600);
/// The invalidation kind announced when the set of keys changes.
pub const INVALIDATION_KIND: &str = "signing_key";

/// The JOSE algorithms we sign with. Every rotation makes one key of each: EdDSA signs
/// access tokens by default, RS256 is what OpenID Connect relying parties must support for
/// ID tokens, ES256 is the third choice API.md offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    EdDSA,
    RS256,
    ES256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::EdDSA, SigningAlg::RS256, SigningAlg::ES256];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
        }
    }
}

impl std::str::FromStr for SigningAlg {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<SigningAlg, &'static str> {
        SigningAlg::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or("expected `EdDSA`, `RS256` or `ES256`")
    }
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a key stays published and trusted after it stopped signing: until every token it
/// signed has expired. An access token lives `access_token_ttl`, other tokens up to
/// [`LONGEST_OTHER_TOKEN`]; an instance may go on signing with a retired key until its next
/// refresh, hence the [`REFRESH_INTERVAL`] on top.
pub fn retention(access_token_ttl: Duration) -> Duration {
    access_token_ttl
        .max(LONGEST_OTHER_TOKEN)
        .saturating_add(REFRESH_INTERVAL)
}

/// A key that signs tokens.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
}

/// A key that verifies tokens, with its public JWK.
#[derive(Clone)]
struct VerifyingKey {
    alg: Algorithm,
    decoding: DecodingKey,
    jwk: Value,
}

/// The current signing key of each algorithm and every key whose tokens may still be
/// presented.
pub struct KeyRing {
    store: Store,
    master: Arc<MasterKey>,
    retention: Duration,
    access_alg: SigningAlg,
    signers: RwLock<Arc<Signers>>,
    verifiers: RwLock<HashMap<String, VerifyingKey>>,
    last_reload: Mutex<Instant>,
    changed: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

/// The signing key of each algorithm, and the one that signs access tokens.
struct Signers {
    access: Arc<SigningKey>,
    all: HashMap<SigningAlg, Arc<SigningKey>>,
}

impl Signers {
    /// `None` when the access token algorithm has no key.
    fn new(all: HashMap<SigningAlg, Arc<SigningKey>>, access_alg: SigningAlg) -> Option<Signers> {
        Some(Signers {
            access: all.get(&access_alg)?.clone(),
            all,
        })
    }
}

struct Loaded {
    signers: HashMap<SigningAlg, Arc<SigningKey>>,
    verifiers: HashMap<String, VerifyingKey>,
}

impl KeyRing {
    /// Loads the keys, generating a first key of each algorithm the database lacks one of
    /// (a new database, or one from a release that had only Ed25519). Retired keys are kept
    /// for `retention` (see [`retention`]); access tokens are signed with `access_alg`.
    pub async fn load_or_create(
        store: Store,
        master: Arc<MasterKey>,
        retention: Duration,
        access_alg: SigningAlg,
    ) -> anyhow::Result<KeyRing> {
        let mut loaded = load(&store, &master, retention).await?;
        let missing: Vec<SigningAlg> = SigningAlg::ALL
            .into_iter()
            .filter(|a| !loaded.signers.contains_key(a))
            .collect();
        if !missing.is_empty() {
            let mut tx = store.begin_write().await?;
            for alg in missing {
                insert(&mut tx, &master, &material::generate(alg)?).await?;
            }
            tx.commit().await.context("storing new signing keys")?;
            loaded = load(&store, &master, retention).await?;
        }
        let signers = Signers::new(loaded.signers, access_alg)
            .with_context(|| format!("no {access_alg} signing key after creating one"))?;
        Ok(KeyRing {
            store,
            master,
            retention,
            access_alg,
            signers: RwLock::new(Arc::new(signers)),
            verifiers: RwLock::new(loaded.verifiers),
            last_reload: Mutex::new(Instant::now()),
            changed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The key that signs access tokens (`PORTVAKT_ACCESS_TOKEN_ALG`).
    pub fn signer(&self) -> Arc<SigningKey> {
        self.signers().access.clone()
    }

    /// The current signing key of `alg`.
    pub fn signer_for(&self, alg: SigningAlg) -> Option<Arc<SigningKey>> {
        self.signers().all.get(&alg).cloned()
    }

    fn signers(&self) -> Arc<Signers> {
        match self.signers.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How long a retired key is kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The verifying key for `kid`, with the algorithm it verifies. An unknown kid may be a
    /// key another instance created since we loaded, so the set is re-read, at most once per
    /// second.
    pub async fn decoding_key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
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
            self.reload().await;
        }
        self.lookup(kid)
    }

    /// Re-reads the keys from the database; on failure the ones in memory stay.
    pub async fn reload(&self) {
        match load(&self.store, &self.master, self.retention).await {
            Ok(loaded) => match Signers::new(loaded.signers, self.access_alg) {
                Some(signers) => {
                    if let Ok(mut s) = self.signers.write() {
                        *s = Arc::new(signers);
                    }
                    if let Ok(mut v) = self.verifiers.write() {
                        *v = loaded.verifiers;
                    }
                }
                None => tracing::warn!(
                    alg = self.access_alg.as_str(),
                    "the database has no active signing key for access tokens; keeping the loaded keys"
                ),
            },
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reloading signing keys failed")
            }
        }
    }

    /// Tells the refresh task that the keys changed (another instance announced a rotation).
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Whether `kid` is a key in memory, without going to the database.
    pub fn knows(&self, kid: &str) -> bool {
        self.verifiers
            .read()
            .map(|v| v.contains_key(kid))
            .unwrap_or(false)
    }

    fn lookup(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.verifiers
            .read()
            .ok()?
            .get(kid)
            .map(|k| (k.alg, k.decoding.clone()))
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

/// Re-reads the keys every [`REFRESH_INTERVAL`], and at once when told they changed. Holds
/// only a weak reference: the task ends with the ring.
pub fn spawn_refresh(ring: &Arc<KeyRing>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(ring);
    let changed = ring.changed.clone();
    tokio::spawn(async move {
        loop {
            let _ = tokio::time::timeout(REFRESH_INTERVAL, changed.notified()).await;
            let Some(ring) = weak.upgrade() else { break };
            ring.reload().await;
        }
    })
}

/// Seals and stores a generated key as active.
async fn insert(
    conn: &mut sqlx::AnyConnection,
    master: &MasterKey,
    key: &material::Generated,
) -> anyhow::Result<()> {
    let sealed = master.seal(SEAL_PURPOSE, key.kid.as_bytes(), &key.pkcs8);
    sqlx::query("INSERT INTO signing_keys (kid, alg, public_key, private_key, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(&key.public)
        .bind(&sealed)
        .bind(now_micros())
        .execute(conn)
        .await
        .context("storing a new signing key")?;
    tracing::info!(kid = %key.kid, alg = key.alg.as_str(), "generated a new signing key");
    Ok(())
}

/// Whether `master` opens the sealed private key of `kid`: the secret key that sealed it is
/// the one in use (restore checks this before committing).
pub fn opens(master: &MasterKey, kid: &str, sealed: &str) -> bool {
    master.open(SEAL_PURPOSE, kid.as_bytes(), sealed).is_ok()
}

/// The active keys, and the retired ones still inside their retention.
async fn load(store: &Store, master: &MasterKey, retention: Duration) -> anyhow::Result<Loaded> {
    let cutoff = now_micros().saturating_sub(micros_after(0, retention));
    let rows = sqlx::query("SELECT kid, alg, public_key, private_key, retired_at FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC, kid")
        .bind(cutoff)
        .fetch_all(store.pool())
        .await
        .context("reading signing keys")?;
    let mut signers = HashMap::new();
    let mut verifiers = HashMap::new();
    for row in rows {
        let kid: String = row.try_get("kid")?;
        let alg: String = row.try_get("alg")?;
        let public: String = row.try_get("public_key")?;
        let sealed: String = row.try_get("private_key")?;
        let retired: Option<i64> = row.try_get("retired_at")?;
        let alg: SigningAlg = alg
            .parse()
            .map_err(|_| anyhow::anyhow!("signing key {kid} uses unsupported algorithm {alg}"))?;
        let jwk = material::public_jwk(alg, &public, &kid)
            .with_context(|| format!("signing key {kid} has a malformed public key"))?;
        let decoding = material::decoding_key(&jwk)
            .with_context(|| format!("signing key {kid} has an unusable public key"))?;
        verifiers.insert(
            kid.clone(),
            VerifyingKey {
                alg: alg.jwt(),
                decoding,
                jwk,
            },
        );
        // Rows are newest first: the newest active key of each algorithm signs.
        if retired.is_none() && !signers.contains_key(&alg) {
            let pkcs8 = master.open(SEAL_PURPOSE, kid.as_bytes(), &sealed).map_err(|_| {
                anyhow::anyhow!(
                    "signing key {kid} cannot be decrypted: PORTVAKT_SECRET_KEY is not the one this database was set up with"
                )
            })?;
            signers.insert(
                alg,
                Arc::new(SigningKey {
                    kid: kid.clone(),
                    alg: alg.jwt(),
                    encoding: material::encoding_key(alg, &pkcs8)
                        .with_context(|| format!("signing key {kid} is unusable"))?,
                }),
            );
        }
    }
    Ok(Loaded { signers, verifiers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_key_outlives_every_token_it_signed() {
        let minute = Duration::from_secs(60);
        // Short access tokens: the hour that ID tokens may live decides.
        assert_eq!(
            retention(Duration::from_secs(900)),
            LONGEST_OTHER_TOKEN + REFRESH_INTERVAL
        );
        // Long access tokens decide for themselves.
        let day = Duration::from_secs(86_400);
        assert_eq!(retention(day), day + REFRESH_INTERVAL);
        // An instance that signed with the key up to a refresh later is still covered.
        for ttl in [Duration::from_secs(1), 15 * minute, day] {
            assert!(retention(ttl) >= ttl + REFRESH_INTERVAL);
            assert!(retention(ttl) >= LONGEST_OTHER_TOKEN);
        }
    }

    #[test]
    fn algorithm_names_are_the_jose_ones() {
        for alg in SigningAlg::ALL {
            assert_eq!(alg.as_str().parse::<SigningAlg>(), Ok(alg));
        }
        assert!("eddsa".parse::<SigningAlg>().is_err());
        assert!("HS256".parse::<SigningAlg>().is_err());
    }
}
