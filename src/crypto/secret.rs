//! `PORTVAKT_SECRET_KEY`: its strength rules, its generation in development, and the master
//! key derived from it (HKDF-SHA256) that seals secrets at rest with AES-256-GCM.

use std::path::Path;

use anyhow::Context;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};

use super::{b64url, b64url_decode, random_bytes};
use crate::config::{Config, DEV_SECRET_FILE, key_material};

/// A new secret key: 32 random bytes, base64url.
pub fn generate() -> String {
    b64url(&random_bytes::<32>())
}

/// Where the secret key in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    DevFile { created: bool },
}

/// The configured secret, or in development the one kept in (or now written to) the data
/// directory with owner-only permissions. Production without a secret is an error here and,
/// earlier, in the configuration checks.
pub fn resolve(config: &Config) -> anyhow::Result<(SecretString, SecretSource)> {
    if let Some(secret) = &config.secret_key {
        return Ok((secret.clone(), SecretSource::Configured));
    }
    anyhow::ensure!(
        !config.is_production(),
        "PORTVAKT_SECRET_KEY is required in production (generate one with `portvakt secret`)"
    );
    let path = config.data_dir.join(DEV_SECRET_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok((
            SecretString::from(text.trim().to_string()),
            SecretSource::DevFile { created: false },
        ));
    }
    crate::store::create_private_dir(&config.data_dir)?;
    let secret = generate();
    match write_private(&path, &secret) {
        Ok(()) => Ok((
            SecretString::from(secret),
            SecretSource::DevFile { created: true },
        )),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((
                SecretString::from(text.trim().to_string()),
                SecretSource::DevFile { created: false },
            ))
        }
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Keys derived from the secret key, one per purpose, so that no two uses share a key.
pub struct MasterKey {
    prk: aws_lc_rs::hkdf::Prk,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the sealed value cannot be opened with this secret key")]
pub struct OpenError;

const SEAL_VERSION: &str = "v1";

impl MasterKey {
    pub fn new(secret: &SecretString) -> MasterKey {
        let salt = Salt::new(HKDF_SHA256, b"portvakt master key v1");
        MasterKey {
            prk: salt.extract(&key_material(secret.expose_secret())),
        }
    }

    fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        // expand/fill only fail for output lengths above 255 * 32 bytes.
        let filled = self
            .prk
            .expand(&[purpose.as_bytes()], HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out));
        debug_assert!(filled.is_ok());
        out
    }

    /// An HMAC-SHA256 key for `purpose` (e.g. signing the audit log's head and checkpoint).
    pub fn hmac_key(&self, purpose: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.derive(purpose))
    }

    fn aead(&self, purpose: &str) -> LessSafeKey {
        let key = self.derive(purpose);
        // A 32-byte key is always valid for AES-256-GCM.
        #[allow(clippy::expect_used)]
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte AES key"))
    }

    /// Encrypts `plaintext` for `purpose`, bound to `context` (e.g. the key id), as text:
    /// `v1.<base64url(nonce || ciphertext || tag)>`.
    pub fn seal(&self, purpose: &str, context: &[u8], plaintext: &[u8]) -> String {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut in_out = plaintext.to_vec();
        let sealed = self.aead(purpose).seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(context),
            &mut in_out,
        );
        debug_assert!(sealed.is_ok());
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&in_out);
        format!("{SEAL_VERSION}.{}", b64url(&out))
    }

    pub fn open(&self, purpose: &str, context: &[u8], sealed: &str) -> Result<Vec<u8>, OpenError> {
        let body = sealed.strip_prefix("v1.").ok_or(OpenError)?;
        let mut bytes = b64url_decode(body).ok_or(OpenError)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let mut in_out = bytes.split_off(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = bytes.try_into().map_err(|_| OpenError)?;
        let plain = self
            .aead(purpose)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut in_out,
            )
            .map_err(|_| OpenError)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_strong() {
        let s = generate();
        assert_eq!(key_material(&s).len(), 32);
        assert_eq!(crate::config::secret_weakness(&s), None);
    }

    #[test]
    fn sealed_values_open_only_with_the_same_secret_purpose_and_context() {
        let a = MasterKey::new(&SecretString::from(generate()));
        let b = MasterKey::new(&SecretString::from(generate()));
        let sealed = a.seal("signing-key", b"kid-1", b"private bytes");
        assert_eq!(
            a.open("signing-key", b"kid-1", &sealed).unwrap(),
            b"private bytes"
        );
        assert!(a.open("signing-key", b"kid-2", &sealed).is_err());
        assert!(a.open("totp", b"kid-1", &sealed).is_err());
        assert!(b.open("signing-key", b"kid-1", &sealed).is_err());
        assert!(a.open("signing-key", b"kid-1", "v1.AAAA").is_err());
    }
}
