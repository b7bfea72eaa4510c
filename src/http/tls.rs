//! Native TLS: a certificate chain and private key read from PEM files, served through a
//! resolver whose current pair a SIGHUP replaces without touching open connections.
//!
//! rustls with the aws-lc-rs provider named explicitly (never the process default, which is
//! ambiguous when more than one provider is compiled in). ALPN offers `http/1.1` only: the
//! server speaks HTTP/1.1 and nothing else, so advertising h2 would break clients.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio_rustls::TlsAcceptor;

use crate::config::{Finding, Level, TlsFiles};

/// Certificates closer than this to their expiry are worth a warning.
const EXPIRY_WARNING: time::Duration = time::Duration::days(14);

/// Why a certificate or key could not be used. Messages name the file and never quote its
/// content: a key file's bytes must not reach a log.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot use the TLS certificate file {}: {reason}", .path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("cannot use the TLS key file {}: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },
    #[error("the TLS key file {} does not belong to the certificate in {}", .key.display(), .cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// What an operator wants to know about a loaded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject's attributes in certificate order, e.g. `O=Example, CN=id.example.com`.
    pub subject: String,
    /// DNS names from the subject alternative name extension.
    pub dns_names: Vec<String>,
    pub not_after: OffsetDateTime,
}

impl CertSummary {
    pub fn expired(&self) -> bool {
        self.not_after <= OffsetDateTime::now_utc()
    }

    pub fn expires_soon(&self) -> bool {
        self.not_after - OffsetDateTime::now_utc() < EXPIRY_WARNING
    }

    pub fn days_left(&self) -> i64 {
        (self.not_after - OffsetDateTime::now_utc()).whole_days()
    }

    fn not_after_text(&self) -> String {
        self.not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| self.not_after.to_string())
    }
}

/// The certificate served to new handshakes. Connections keep the certificate they were
/// opened with, so replacing it never disturbs them.
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // The lock only guards an Arc swap; a panic elsewhere cannot leave it half-written.
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

impl CertStore {
    /// Reads the certificate and key, failing with a message that names the file at fault.
    pub fn open(files: TlsFiles) -> Result<(Arc<CertStore>, CertSummary), TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (key, summary) = load(&files, &provider)?;
        let store = CertStore {
            files,
            provider,
            current: RwLock::new(key),
        };
        Ok((Arc::new(store), summary))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again and, only if they hold a usable pair, serves it to new
    /// connections. On error the previous pair stays in place. Blocking file I/O.
    pub fn reload(&self) -> Result<CertSummary, TlsError> {
        let (key, summary) = load(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
        Ok(summary)
    }

    /// A TLS acceptor that takes its certificate from this store on every handshake.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Reads and checks a certificate chain and its key.
fn load(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, CertSummary), TlsError> {
    let cert_error = |reason: String| TlsError::Cert {
        path: files.cert.clone(),
        reason,
    };
    let key_error = |reason: String| TlsError::Key {
        path: files.key.clone(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_error(pem_reason(&e, "CERTIFICATE")))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_error("no CERTIFICATE section found".into()));
    };
    let summary = summarize(leaf)
        .ok_or_else(|| cert_error("the first certificate is not valid X.509 DER".into()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        key_error(pem_reason(
            &e,
            "PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY",
        ))
    })?;
    let signer = provider.key_provider.load_private_key(key).map_err(|_| {
        key_error(
            "the key is malformed or of an unsupported type (use RSA, ECDSA P-256/P-384 or Ed25519)"
                .into(),
        )
    })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        // A key that cannot report its public half is checked by the first handshake instead.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            });
        }
        Err(_) => {
            return Err(cert_error(
                "the first certificate is not valid X.509 DER".into(),
            ));
        }
    }
    Ok((Arc::new(certified), summary))
}

/// A PEM failure in words that never repeat the file's content (some variants carry lines of it).
fn pem_reason(e: &pem::Error, expected: &str) -> String {
    match e {
        pem::Error::Io(io) => io.to_string(),
        pem::Error::NoItemsFound => format!("no {expected} section found"),
        _ => "not a valid PEM file".into(),
    }
}

/// Logs a freshly loaded certificate, louder when it has expired or is about to.
pub fn log_certificate(summary: &CertSummary, message: &str) {
    let names = summary.dns_names.join(",");
    let not_after = summary.not_after_text();
    let days_left = summary.days_left();
    let subject = &summary.subject;
    if summary.expired() {
        tracing::warn!(
            %subject, dns_names = %names, %not_after,
            "{message}; it has EXPIRED and clients will refuse it"
        );
    } else if summary.expires_soon() {
        tracing::warn!(
            %subject, dns_names = %names, %not_after, days_left,
            "{message}; it expires soon"
        );
    } else {
        tracing::info!(%subject, dns_names = %names, %not_after, days_left, "{message}");
    }
}

/// The readiness report's line about the configured certificate: loads it as `serve` would.
pub fn certificate_finding(files: &TlsFiles) -> Finding {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    match load(files, &provider) {
        Err(e) => Finding::new(
            Level::Fail,
            "tls_certificate",
            e.to_string(),
            "point PORTVAKT_TLS_CERT and PORTVAKT_TLS_KEY at a matching PEM certificate chain and key",
        ),
        Ok((_, s)) => {
            let names = if s.dns_names.is_empty() {
                String::new()
            } else {
                format!(" for {}", s.dns_names.join(", "))
            };
            let text = format!(
                "{}{names}, expires {} ({} days)",
                s.subject,
                s.not_after_text(),
                s.days_left()
            );
            if s.expired() {
                Finding::new(
                    Level::Fail,
                    "tls_certificate",
                    format!("EXPIRED: {text}"),
                    "renew the certificate, then send SIGHUP",
                )
            } else if s.expires_soon() {
                Finding::new(
                    Level::Warn,
                    "tls_certificate",
                    text,
                    "renew the certificate, then send SIGHUP",
                )
            } else {
                Finding::new(Level::Pass, "tls_certificate", text, "")
            }
        }
    }
}

/// Re-reads the certificate on every SIGHUP for as long as the returned task runs. The
/// handler is installed before this returns, so a SIGHUP can no longer end the process.
#[cfg(unix)]
pub fn reload_on_sighup(store: Arc<CertStore>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!(
                cert = %store.files().cert.display(),
                "SIGHUP received: reloading the TLS certificate"
            );
            let reloading = store.clone();
            match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(Ok(summary)) => log_certificate(&summary, "TLS certificate reloaded"),
                Ok(Err(e)) => tracing::error!(
                    error = %e,
                    "TLS certificate not reloaded; still serving the previous one"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "TLS certificate reload failed; still serving the previous one"
                ),
            }
        }
    }))
}

// ---- the few X.509 fields we report (RFC 5280 §4.1) ----

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const DNS_NAME: u8 = 0x82;
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// A cursor over DER TLVs. Every read is bounds-checked: malformed input yields `None`.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, after) = rest.split_at_checked(n)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let (contents, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some((tag, contents))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (t, contents) = self.next()?;
        (t == tag).then_some(contents)
    }
}

/// Subject, DNS names and expiry of a DER certificate; `None` if it is not one.
fn summarize(cert: &CertificateDer<'_>) -> Option<CertSummary> {
    let certificate = Der(cert.as_ref()).expect(SEQUENCE)?;
    let mut tbs = Der(Der(certificate).expect(SEQUENCE)?);
    let (mut tag, _) = tbs.next()?;
    if tag == VERSION {
        (tag, _) = tbs.next()?;
    }
    if tag != INTEGER {
        return None;
    }
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = Der(tbs.expect(SEQUENCE)?);
    validity.next()?; // notBefore
    let not_after = der_time(validity.next()?)?;
    let subject = name(tbs.expect(SEQUENCE)?);
    tbs.expect(SEQUENCE)?; // subject public key
    let mut dns_names = Vec::new();
    while let Some((tag, contents)) = tbs.next() {
        if tag == EXTENSIONS {
            dns_names = san_dns_names(contents).unwrap_or_default();
        }
    }
    Some(CertSummary {
        subject,
        dns_names,
        not_after,
    })
}

/// UTCTime or GeneralizedTime in the `Z` forms RFC 5280 §4.1.2.5 allows.
fn der_time((tag, contents): (u8, &[u8])) -> Option<OffsetDateTime> {
    let text = std::str::from_utf8(contents).ok()?.strip_suffix('Z')?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match tag {
        // Two-digit years: 50..=99 are 19xx, 00..=49 are 20xx (RFC 5280 §4.1.2.5.1).
        UTC_TIME => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        GENERALIZED_TIME => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 {
        return None;
    }
    let two = |i: usize| rest.get(i..i + 2)?.parse::<u8>().ok();
    let month = time::Month::try_from(two(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, two(2)?).ok()?;
    let at = time::Time::from_hms(two(4)?, two(6)?, two(8)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, at).assume_utc())
}

/// A distinguished name as `KEY=value` pairs; attributes we have no short name for are left out.
fn name(rdns: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut rdns = Der(rdns);
    while let Some(set) = rdns.expect(SET) {
        let mut attributes = Der(set);
        while let Some(attribute) = attributes.expect(SEQUENCE) {
            let mut attribute = Der(attribute);
            let (Some(oid), Some((_, value))) = (attribute.expect(OID), attribute.next()) else {
                continue;
            };
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x07] => "L",
                [0x55, 0x04, 0x08] => "ST",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                _ => continue,
            };
            parts.push(format!("{key}={}", String::from_utf8_lossy(value)));
        }
    }
    parts.join(", ")
}

fn san_dns_names(extensions: &[u8]) -> Option<Vec<String>> {
    let mut list = Der(Der(extensions).expect(SEQUENCE)?);
    while let Some(extension) = list.expect(SEQUENCE) {
        let mut extension = Der(extension);
        if extension.expect(OID)? != SUBJECT_ALT_NAME {
            continue;
        }
        // An optional `critical` BOOLEAN comes before the value.
        let value = loop {
            let (tag, contents) = extension.next()?;
            if tag == OCTET_STRING {
                break contents;
            }
        };
        let mut general_names = Der(Der(value).expect(SEQUENCE)?);
        let mut names = Vec::new();
        while let Some((tag, contents)) = general_names.next() {
            if tag == DNS_NAME {
                names.push(String::from_utf8_lossy(contents).into_owned());
            }
        }
        return Some(names);
    }
    Some(Vec::new())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cert(names: &[&str], cn: &str) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Portvakt Test");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_after = rcgen::date_time_ymd(2040, 6, 30);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, (cert, key): &(String, String)) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    #[test]
    fn a_certificate_is_summarised_with_subject_names_and_expiry() {
        let (pem, _) = cert(&["id.example.com", "localhost"], "id.example.com");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let s = summarize(&der).unwrap();
        assert_eq!(s.subject, "O=Portvakt Test, CN=id.example.com");
        assert_eq!(s.dns_names, vec!["id.example.com", "localhost"]);
        assert_eq!(s.not_after.year(), 2040);
        assert_eq!(s.not_after.month(), time::Month::June);
        assert!(!s.expired());
    }

    #[test]
    fn der_times_follow_rfc_5280() {
        let t = der_time((UTC_TIME, b"491231235959Z")).unwrap();
        assert_eq!(t.year(), 2049);
        let t = der_time((UTC_TIME, b"500101000000Z")).unwrap();
        assert_eq!(t.year(), 1950);
        let t = der_time((GENERALIZED_TIME, b"20991231235959Z")).unwrap();
        assert_eq!((t.year(), t.hour(), t.second()), (2099, 23, 59));
        assert!(der_time((UTC_TIME, b"491331235959Z")).is_none(), "month 13");
        assert!(der_time((UTC_TIME, b"4912312359Z")).is_none(), "too short");
        assert!(der_time((UTC_TIME, b"+91231235959Z")).is_none());
        assert!(der_time((OID, b"491231235959Z")).is_none());
    }

    #[test]
    fn truncated_or_garbage_der_is_rejected_without_panicking() {
        let (pem, _) = cert(&["a.example"], "a");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        for cut in 0..der.len() {
            let _ = summarize(&CertificateDer::from(&der[..cut]));
        }
        assert!(
            summarize(&CertificateDer::from(
                &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..]
            ))
            .is_none()
        );
    }

    #[test]
    fn a_bad_replacement_keeps_the_old_pair_and_a_good_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = cert(&["one.example"], "one");
        let files = write(dir.path(), &first);
        let (store, summary) = CertStore::open(files.clone()).unwrap();
        assert_eq!(summary.dns_names, vec!["one.example"]);
        let serving = |s: &CertStore| s.current.read().unwrap().cert[0].clone();
        let before = serving(&store);

        std::fs::write(
            &files.key,
            "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
        assert!(
            !err.contains("not base64"),
            "the key's content is never echoed: {err}"
        );
        assert_eq!(serving(&store), before);

        let second = cert(&["two.example"], "two");
        std::fs::write(&files.cert, &second.0).unwrap();
        std::fs::write(&files.key, &first.1).unwrap();
        let err = store.reload().unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        assert_eq!(serving(&store), before);

        write(dir.path(), &second);
        assert_eq!(store.reload().unwrap().dns_names, vec!["two.example"]);
        assert_ne!(serving(&store), before);
    }

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("key.pem"),
        };
        let err = CertStore::open(files.clone()).unwrap_err().to_string();
        assert!(
            err.contains("nope.pem") && err.contains("certificate"),
            "{err}"
        );
        std::fs::write(&files.cert, "").unwrap();
        let err = CertStore::open(files).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE section"), "{err}");
    }
}
