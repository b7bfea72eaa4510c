//! Password hashes made by other software, accepted by `portvakt import` so that a team can
//! move its users without forcing password resets. Each one verifies here, on the hashing
//! pool like argon2, and a match asks for a rehash: login then replaces it with argon2id.
//!
//! Recognised: bcrypt (`$2a$`, `$2b$`, `$2y$`), Werkzeug (`pbkdf2:sha256:ITER$salt$hex`,
//! `scrypt:N:r:p$salt$hex`), Django (`pbkdf2_sha256$`, `argon2$`, `bcrypt_sha256$`,
//! `bcrypt$`), passlib (`$pbkdf2-sha256$`, `$pbkdf2-sha512$`, `$pbkdf2$`) and argon2 PHC
//! strings. Costs are bounded ([`Rejected`]): a hash from a file must not be able to make one
//! login take minutes or gigabytes. `$2x$` (crypt_blowfish's buggy mode) is refused because
//! no maintained crate reproduces its bug.

use std::num::NonZeroU32;

use argon2::password_hash::phc::PasswordHash;
use aws_lc_rs::{constant_time, digest, pbkdf2};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// At most this many PBKDF2 iterations (Django 5.2 and Werkzeug 3.1 use 1,000,000), counted
/// once per digest-sized block of the stored output: an output longer than the digest costs
/// the iterations again for each block, so 128 bytes of SHA-1 would cost seven times as much.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// bcrypt costs from 4 (the minimum of every library) to 16 (~5 s per login on this class of
/// machine); libraries default to 10-12.
pub const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=16;
/// scrypt's N at most 2^20, and its memory (128·N·r bytes) at most 128 MiB: Werkzeug's
/// default (N=32768, r=8) takes 32 MiB. The pool runs one hash per thread, so this bounds
/// the memory of logins.
pub const MAX_SCRYPT_LOG_N: u8 = 20;
pub const MAX_SCRYPT_MEMORY: u64 = 128 << 20;
pub const MAX_SCRYPT_P: u32 = 16;
/// scrypt's work, N·r·p, at most 2^23: 32 times Werkzeug's default, a few seconds (N = 2^20
/// with p = 16, within the other bounds, took 10 s).
pub const MAX_SCRYPT_WORK: u64 = 1 << 23;
/// argon2 memory at most 256 MiB (Django's default is 100 MiB), 64 passes, 16 lanes.
pub const MAX_ARGON2_KIB: u32 = 256 * 1024;
pub const MAX_ARGON2_PASSES: u32 = 64;
pub const MAX_ARGON2_LANES: u32 = 16;
/// argon2's work, memory times passes, at most 4 GiB (256 MiB with 16 passes, ~6 s; Django's
/// default is 200 MiB): 256 MiB with 64 passes took 21 s.
pub const MAX_ARGON2_WORK_KIB: u64 = 4 << 20;
/// A stored output shorter than 16 bytes would be too easy to match by chance.
const MIN_OUTPUT: usize = 16;
const MAX_OUTPUT: usize = 128;

/// A recognised hash, ready to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme<'a> {
    /// A bcrypt string (`$2?$CC$...`, 60 characters); with `sha256_hex`, the password is
    /// first replaced by the hex of its SHA-256 (Django's `bcrypt_sha256`).
    Bcrypt { hash: &'a str, sha256_hex: bool },
    Pbkdf2 {
        digest: Digest,
        iterations: NonZeroU32,
        salt: Vec<u8>,
        expected: Vec<u8>,
    },
    Scrypt {
        log_n: u8,
        r: u32,
        p: u32,
        salt: Vec<u8>,
        expected: Vec<u8>,
    },
    /// An argon2 PHC string (Django's `argon2` prefix removed), verified by `password`.
    Argon2 { phc: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Sha1,
    Sha256,
    Sha512,
}

impl Digest {
    fn parse(name: &str) -> Option<Digest> {
        match name {
            "sha1" => Some(Digest::Sha1),
            "sha256" => Some(Digest::Sha256),
            "sha512" => Some(Digest::Sha512),
            _ => None,
        }
    }

    /// The output size: PBKDF2 runs its iterations once per block of this many bytes.
    fn len(self) -> usize {
        match self {
            Digest::Sha1 => 20,
            Digest::Sha256 => 32,
            Digest::Sha512 => 64,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Digest::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            Digest::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Digest::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
}

/// Why a hash cannot be imported. The message names the problem, never the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("unrecognised password hash format")]
    Unknown,
    #[error("malformed {0} hash")]
    Malformed(&'static str),
    #[error("{0} hash: {1}")]
    OutOfBounds(&'static str, String),
}

/// Recognises `stored` and checks its parameters against the bounds above.
pub fn parse(stored: &str) -> Result<Scheme<'_>, Rejected> {
    // No format writes one, and PostgreSQL cannot store a NUL: such a row would fail its
    // whole batch at the database instead of being reported.
    if stored.chars().any(char::is_control) {
        return Err(Rejected::Malformed("password"));
    }
    if stored.starts_with("$2") {
        return bcrypt(stored, false);
    }
    if let Some(rest) = stored.strip_prefix("bcrypt_sha256$") {
        return bcrypt(rest, true);
    }
    if let Some(rest) = stored.strip_prefix("bcrypt$") {
        return bcrypt(rest, false);
    }
    if stored.starts_with("$argon2") {
        return argon2(stored);
    }
    if let Some(phc) = stored.strip_prefix("argon2") {
        return argon2(phc);
    }
    if let Some(rest) = stored.strip_prefix("pbkdf2:") {
        return werkzeug_pbkdf2(rest);
    }
    if let Some(rest) = stored.strip_prefix("scrypt:") {
        return werkzeug_scrypt(rest);
    }
    if let Some((algorithm, rest)) = stored.split_once('$')
        && let Some(name) = algorithm.strip_prefix("pbkdf2_")
    {
        return django_pbkdf2(name, rest);
    }
    if let Some(rest) = stored.strip_prefix("$pbkdf2") {
        return passlib_pbkdf2(rest);
    }
    Err(Rejected::Unknown)
}

/// Whether `password` matches a non-argon2 scheme, in constant time with respect to the
/// stored value. Argon2 goes through `password::verify_now` (reusable memory, rehash check).
pub fn matches(password: &[u8], scheme: &Scheme<'_>) -> bool {
    match scheme {
        Scheme::Bcrypt { hash, sha256_hex } => {
            let result = if *sha256_hex {
                let digest = digest::digest(&digest::SHA256, password);
                bcrypt::verify(super::hex(digest.as_ref()), hash)
            } else {
                // `verify` keeps the first 72 bytes, as every bcrypt library that made
                // these hashes did.
                bcrypt::verify(password, hash)
            };
            result.unwrap_or(false)
        }
        Scheme::Pbkdf2 {
            digest,
            iterations,
            salt,
            expected,
        } => pbkdf2::verify(digest.pbkdf2(), *iterations, salt, password, expected).is_ok(),
        Scheme::Scrypt {
            log_n,
            r,
            p,
            salt,
            expected,
        } => {
            let Ok(params) = scrypt::Params::new(*log_n, *r, *p) else {
                return false;
            };
            let mut out = vec![0u8; expected.len()];
            scrypt::scrypt(password, salt, &params, &mut out).is_ok()
                && constant_time::verify_slices_are_equal(&out, expected).is_ok()
        }
        Scheme::Argon2 { .. } => false,
    }
}

fn bcrypt(hash: &str, sha256_hex: bool) -> Result<Scheme<'_>, Rejected> {
    const NAME: &str = "bcrypt";
    let bytes = hash.as_bytes();
    let well_formed = bytes.len() == 60
        && bytes[0] == b'$'
        && bytes[3] == b'$'
        && bytes[6] == b'$'
        && bytes[7..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/'));
    if !well_formed {
        return Err(Rejected::Malformed(NAME));
    }
    match &hash[1..3] {
        "2a" | "2b" | "2y" => {}
        "2x" => {
            return Err(Rejected::OutOfBounds(
                NAME,
                "$2x$ (crypt_blowfish's bug-compatible mode) is not supported".into(),
            ));
        }
        _ => return Err(Rejected::Malformed(NAME)),
    }
    let cost: u32 = hash[4..6].parse().map_err(|_| Rejected::Malformed(NAME))?;
    if !BCRYPT_COSTS.contains(&cost) {
        return Err(Rejected::OutOfBounds(
            NAME,
            format!(
                "cost {cost} is outside {}..={}",
                BCRYPT_COSTS.start(),
                BCRYPT_COSTS.end()
            ),
        ));
    }
    Ok(Scheme::Bcrypt { hash, sha256_hex })
}

fn argon2(phc: &str) -> Result<Scheme<'_>, Rejected> {
    const NAME: &str = "argon2";
    let parsed = PasswordHash::new(phc).map_err(|_| Rejected::Malformed(NAME))?;
    if !matches!(
        parsed.algorithm.as_str(),
        "argon2id" | "argon2i" | "argon2d"
    ) {
        return Err(Rejected::Malformed(NAME));
    }
    let params = argon2::Params::try_from(&parsed).map_err(|_| Rejected::Malformed(NAME))?;
    let (Some(_), Some(output)) = (&parsed.salt, &parsed.hash) else {
        return Err(Rejected::Malformed(NAME));
    };
    if output.len() < MIN_OUTPUT {
        return Err(Rejected::OutOfBounds(NAME, "output is too short".into()));
    }
    if params.m_cost() > MAX_ARGON2_KIB
        || params.t_cost() > MAX_ARGON2_PASSES
        || params.p_cost() > MAX_ARGON2_LANES
        || u64::from(params.m_cost()) * u64::from(params.t_cost()) > MAX_ARGON2_WORK_KIB
    {
        return Err(Rejected::OutOfBounds(
            NAME,
            format!(
                "m={},t={},p={} exceeds m={MAX_ARGON2_KIB},t={MAX_ARGON2_PASSES},p={MAX_ARGON2_LANES} or m·t={MAX_ARGON2_WORK_KIB}",
                params.m_cost(),
                params.t_cost(),
                params.p_cost()
            ),
        ));
    }
    Ok(Scheme::Argon2 { phc })
}

/// Werkzeug: `pbkdf2:DIGEST:ITER$salt$hex`; the salt is used as its UTF-8 text.
fn werkzeug_pbkdf2(rest: &str) -> Result<Scheme<'static>, Rejected> {
    const NAME: &str = "Werkzeug pbkdf2";
    let (method, salt, hash) = three(rest).ok_or(Rejected::Malformed(NAME))?;
    let (digest, iterations) = method.split_once(':').ok_or(Rejected::OutOfBounds(
        NAME,
        "the iteration count is missing".into(),
    ))?;
    let digest = Digest::parse(digest).ok_or(Rejected::OutOfBounds(
        NAME,
        format!("digest {digest} is not sha1, sha256 or sha512"),
    ))?;
    pbkdf2_scheme(
        NAME,
        digest,
        iterations,
        salt.as_bytes().to_vec(),
        super::hex_decode(hash),
    )
}

/// Werkzeug: `scrypt:N:r:p$salt$hex`; the salt is used as its UTF-8 text.
fn werkzeug_scrypt(rest: &str) -> Result<Scheme<'static>, Rejected> {
    const NAME: &str = "Werkzeug scrypt";
    let (method, salt, hash) = three(rest).ok_or(Rejected::Malformed(NAME))?;
    let mut numbers = method.split(':').map(str::parse::<u64>);
    let (Some(Ok(n)), Some(Ok(r)), Some(Ok(p)), None) = (
        numbers.next(),
        numbers.next(),
        numbers.next(),
        numbers.next(),
    ) else {
        return Err(Rejected::Malformed(NAME));
    };
    if n < 2 || !n.is_power_of_two() || n > 1 << MAX_SCRYPT_LOG_N {
        return Err(Rejected::OutOfBounds(
            NAME,
            format!("N={n} is not a power of two from 2 to 2^{MAX_SCRYPT_LOG_N}"),
        ));
    }
    let memory = 128u64.saturating_mul(n).saturating_mul(r);
    let work = n.saturating_mul(r).saturating_mul(p);
    if r == 0
        || p == 0
        || p > u64::from(MAX_SCRYPT_P)
        || memory > MAX_SCRYPT_MEMORY
        || work > MAX_SCRYPT_WORK
    {
        return Err(Rejected::OutOfBounds(
            NAME,
            format!(
                "N={n}, r={r}, p={p} exceeds {} MiB, p={MAX_SCRYPT_P} or N·r·p=2^23",
                MAX_SCRYPT_MEMORY >> 20
            ),
        ));
    }
    let expected = output(NAME, super::hex_decode(hash))?;
    // Bounded above: n <= 2^20 gives log_n <= 20; r <= MAX_SCRYPT_MEMORY / 256; p <= 16.
    let (Ok(log_n), Ok(r), Ok(p)) = (
        u8::try_from(n.trailing_zeros()),
        u32::try_from(r),
        u32::try_from(p),
    ) else {
        return Err(Rejected::Malformed(NAME));
    };
    Ok(Scheme::Scrypt {
        log_n,
        r,
        p,
        salt: salt.as_bytes().to_vec(),
        expected,
    })
}

/// Django: `pbkdf2_DIGEST$ITER$salt$base64`; the salt is used as its UTF-8 text.
fn django_pbkdf2(digest: &str, rest: &str) -> Result<Scheme<'static>, Rejected> {
    const NAME: &str = "Django pbkdf2";
    let (iterations, salt, hash) = three(rest).ok_or(Rejected::Malformed(NAME))?;
    let digest = Digest::parse(digest).ok_or(Rejected::Unknown)?;
    pbkdf2_scheme(
        NAME,
        digest,
        iterations,
        salt.as_bytes().to_vec(),
        BASE64.decode(hash).ok(),
    )
}

/// passlib: `$pbkdf2-DIGEST$ITER$salt$hash` (`$pbkdf2$` is SHA-1), salt and hash in passlib's
/// "adapted base64" (`.` instead of `+`, no padding).
fn passlib_pbkdf2(rest: &str) -> Result<Scheme<'static>, Rejected> {
    const NAME: &str = "passlib pbkdf2";
    let (digest, rest) = if let Some(rest) = rest.strip_prefix('$') {
        (Digest::Sha1, rest)
    } else {
        let (name, rest) = rest
            .strip_prefix('-')
            .and_then(|r| r.split_once('$'))
            .ok_or(Rejected::Unknown)?;
        (Digest::parse(name).ok_or(Rejected::Unknown)?, rest)
    };
    let (iterations, salt, hash) = three(rest).ok_or(Rejected::Malformed(NAME))?;
    let salt = ab64_decode(salt).ok_or(Rejected::Malformed(NAME))?;
    pbkdf2_scheme(NAME, digest, iterations, salt, ab64_decode(hash))
}

fn pbkdf2_scheme(
    name: &'static str,
    digest: Digest,
    iterations: &str,
    salt: Vec<u8>,
    expected: Option<Vec<u8>>,
) -> Result<Scheme<'static>, Rejected> {
    let iterations: u32 = iterations.parse().map_err(|_| Rejected::Malformed(name))?;
    let iterations = NonZeroU32::new(iterations)
        .filter(|i| i.get() <= MAX_ITERATIONS)
        .ok_or_else(|| {
            Rejected::OutOfBounds(
                name,
                format!("{iterations} iterations is outside 1..={MAX_ITERATIONS}"),
            )
        })?;
    let expected = output(name, expected)?;
    let blocks = expected.len().div_ceil(digest.len());
    if u64::from(iterations.get()) * blocks as u64 > u64::from(MAX_ITERATIONS) {
        return Err(Rejected::OutOfBounds(
            name,
            format!(
                "{iterations} iterations for each of {blocks} output blocks exceed {MAX_ITERATIONS}"
            ),
        ));
    }
    Ok(Scheme::Pbkdf2 {
        digest,
        iterations,
        salt,
        expected,
    })
}

fn output(name: &'static str, bytes: Option<Vec<u8>>) -> Result<Vec<u8>, Rejected> {
    let bytes = bytes.ok_or(Rejected::Malformed(name))?;
    if (MIN_OUTPUT..=MAX_OUTPUT).contains(&bytes.len()) {
        Ok(bytes)
    } else {
        Err(Rejected::OutOfBounds(
            name,
            format!(
                "output of {} bytes is outside {MIN_OUTPUT}..={MAX_OUTPUT}",
                bytes.len()
            ),
        ))
    }
}

/// `a$b$c` with three non-empty parts.
fn three(text: &str) -> Option<(&str, &str, &str)> {
    let mut parts = text.split('$');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c), None) if !a.is_empty() && !b.is_empty() && !c.is_empty() => {
            Some((a, b, c))
        }
        _ => None,
    }
}

/// Standard base64, padded or not (Django pads, passlib does not).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn ab64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text.replace('.', "+")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Fixture {
        format: String,
        library: String,
        password: String,
        hash: String,
    }

    fn fixtures() -> Vec<Fixture> {
        let text = include_str!("../../tests/fixtures/legacy-hashes/hashes.json");
        serde_json::from_str(text).unwrap()
    }

    /// Every hash made by the real libraries (see `make.py`) verifies with its password and
    /// not with a wrong one, through the same entry point as login.
    #[test]
    fn every_fixture_hash_verifies_with_its_password_only() {
        let ours = argon2::Params::new(64, 1, 1, None).unwrap();
        let fixtures = fixtures();
        assert!(fixtures.len() >= 50);
        for f in &fixtures {
            let what = format!("{} from {}: {}", f.format, f.library, f.hash);
            assert!(parse(&f.hash).is_ok(), "{what}: {:?}", parse(&f.hash));
            let right = super::super::password::verify_now(&ours, &f.password, &f.hash);
            assert!(right.matches, "{what}");
            assert!(right.needs_rehash, "{what}");
            // Changed at the front: bcrypt ignores what follows the 72nd byte.
            for wrong in [
                format!("!{}", f.password),
                f.password.to_uppercase(),
                String::new(),
            ] {
                if wrong == f.password {
                    continue;
                }
                let v = super::super::password::verify_now(&ours, &wrong, &f.hash);
                assert!(!v.matches && !v.needs_rehash, "{what} with {wrong:?}");
            }
        }
        let formats: std::collections::BTreeSet<&str> =
            fixtures.iter().map(|f| f.format.as_str()).collect();
        for format in [
            "bcrypt",
            "werkzeug-pbkdf2",
            "werkzeug-scrypt",
            "django-pbkdf2",
            "django-argon2",
            "django-bcrypt-sha256",
            "pbkdf2-sha256",
            "argon2",
        ] {
            assert!(formats.contains(format), "no fixture for {format}");
        }
    }

    #[test]
    fn a_changed_salt_or_output_never_matches() {
        for f in fixtures()
            .iter()
            .filter(|f| !f.hash.contains("argon2") && !f.hash.contains("scrypt:32768"))
        {
            let scheme = parse(&f.hash).unwrap();
            assert!(matches(f.password.as_bytes(), &scheme), "{}", f.hash);
            let tampered = match scheme {
                Scheme::Pbkdf2 {
                    digest,
                    iterations,
                    mut salt,
                    expected,
                } => {
                    salt[0] ^= 1;
                    Scheme::Pbkdf2 {
                        digest,
                        iterations,
                        salt,
                        expected,
                    }
                }
                Scheme::Scrypt {
                    log_n,
                    r,
                    p,
                    salt,
                    mut expected,
                } => {
                    expected[0] ^= 1;
                    Scheme::Scrypt {
                        log_n,
                        r,
                        p,
                        salt,
                        expected,
                    }
                }
                _ => continue,
            };
            assert!(!matches(f.password.as_bytes(), &tampered), "{}", f.hash);
        }
    }

    #[test]
    fn unknown_formats_and_absurd_costs_are_refused() {
        for unknown in [
            "",
            "plain text",
            "md5$abc$def",
            "sha1$salt$0123456789abcdef0123456789abcdef01234567",
            "{SSHA}abcdef",
            "$1$saltsalt$abcdefghijklmnopqrstuv",
            "$6$rounds=5000$salt$hash",
            "pbkdf2_md5$1000$salt$AAAAAAAAAAAAAAAAAAAAAA==",
        ] {
            assert_eq!(parse(unknown), Err(Rejected::Unknown), "{unknown}");
        }
        let bounded = [
            "$2b$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE",
            "$2b$03$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE",
            "$2x$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE",
            "pbkdf2:sha256:10000001$salt$00112233445566778899aabbccddeeff",
            "pbkdf2:sha256:0$salt$00112233445566778899aabbccddeeff",
            "pbkdf2:md5:1000$salt$00112233445566778899aabbccddeeff",
            "pbkdf2:sha256$salt$00112233445566778899aabbccddeeff",
            "pbkdf2:sha256:1000$salt$0011",
            "scrypt:2097152:8:1$salt$00112233445566778899aabbccddeeff",
            "scrypt:1000:8:1$salt$00112233445566778899aabbccddeeff",
            "scrypt:262144:8:1$salt$00112233445566778899aabbccddeeff",
            "scrypt:1024:8:17$salt$00112233445566778899aabbccddeeff",
            "pbkdf2_sha256$99999999$salt$AAAAAAAAAAAAAAAAAAAAAA==",
            "$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ];
        for hash in bounded {
            assert!(
                matches!(parse(hash), Err(Rejected::OutOfBounds(..))),
                "{hash}: {:?}",
                parse(hash)
            );
        }
        for malformed in [
            "$2b$10$short",
            "scrypt:1024:8$salt$00112233445566778899aabbccddeeff",
            "pbkdf2:sha256:1000$salt$zz112233445566778899aabbccddeeff",
            "pbkdf2_sha256$1000$salt$not base64!",
            "$pbkdf2-sha256$1000$c2FsdA$",
            "$argon2id$v=19$garbage",
            "pbkdf2:sha256:1000$sa\0lt$00112233445566778899aabbccddeeff",
            "pbkdf2_sha256$1000$sa\nlt$AAAAAAAAAAAAAAAAAAAAAA==",
        ] {
            assert!(
                matches!(parse(malformed), Err(Rejected::Malformed(_))),
                "{malformed}: {:?}",
                parse(malformed)
            );
        }
    }

    #[test]
    fn messages_never_repeat_the_hash() {
        let hash = "scrypt:2097152:8:1$secretsalt$00112233445566778899aabbccddeeff";
        let message = parse(hash).unwrap_err().to_string();
        assert!(
            !message.contains("secretsalt") && !message.contains("0011"),
            "{message}"
        );
    }

    /// Each bound alone is not enough: the work is a product (PBKDF2 iterations times output
    /// blocks, scrypt N·r·p, argon2 memory times passes), and these hashes, each within every
    /// single bound, took 21 to 29 s to verify: one login could hold a hashing thread that long.
    #[test]
    fn the_work_of_a_hash_is_bounded_not_only_each_parameter() {
        let hex = |bytes: usize| "ab".repeat(bytes);
        for hash in [
            format!("pbkdf2:sha1:10000000$salt${}", hex(128)),
            format!("pbkdf2:sha256:10000000$salt${}", hex(128)),
            format!("pbkdf2:sha256:5000001$salt${}", hex(33)),
            format!("scrypt:1048576:1:16$salt${}", hex(32)),
            "$argon2id$v=19$m=262144,t=64,p=16$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                .to_string(),
        ] {
            assert!(
                matches!(parse(&hash), Err(Rejected::OutOfBounds(..))),
                "{hash}: {:?}",
                parse(&hash)
            );
        }
        // The largest of each that is allowed.
        for hash in [
            format!("pbkdf2:sha256:10000000$salt${}", hex(32)),
            format!("pbkdf2:sha256:5000000$salt${}", hex(64)),
            format!("scrypt:1048576:1:8$salt${}", hex(32)),
            "$argon2id$v=19$m=262144,t=16,p=16$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                .to_string(),
        ] {
            assert!(parse(&hash).is_ok(), "{hash}: {:?}", parse(&hash));
        }
    }
}
