//! One signing key of each algorithm we publish: generating it, naming it (RFC 7638
//! thumbprint), and turning its stored form back into a signer, a verifier and a JWK.
//!
//! Private keys are kept as PKCS#8 (sealed). Public keys are stored as the JWK members that
//! publish them: Ed25519 as the bare `x` (as releases before RS256 and ES256 did), the
//! others as a JSON object (`{"n","e"}` or `{"x","y"}`).

use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

use super::SigningAlg;
use crate::crypto::{b64url, b64url_decode};

/// A key as generated, before it is sealed and stored.
pub struct Generated {
    pub kid: String,
    pub alg: SigningAlg,
    /// The stored public form (see the module documentation).
    pub public: String,
    pub pkcs8: Vec<u8>,
}

/// Generates a key for `alg`. RSA keys are 2048 bits: the size every relying party accepts,
/// and generated in a fraction of a second at each rotation.
pub fn generate(alg: SigningAlg) -> anyhow::Result<Generated> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let (pkcs8, public) = match alg {
        SigningAlg::EdDSA => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|e| anyhow::anyhow!("generated Ed25519 key rejected: {e}"))?;
            (pkcs8.as_ref().to_vec(), b64url(pair.public_key().as_ref()))
        }
        SigningAlg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
            let der = pair
                .as_der()
                .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?;
            let public = pair.public_key();
            let members = json!({
                "n": b64url(public.modulus().big_endian_without_leading_zero()),
                "e": b64url(public.exponent().big_endian_without_leading_zero()),
            });
            (der.as_ref().to_vec(), members.to_string())
        }
        SigningAlg::ES256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .map_err(|e| anyhow::anyhow!("generated P-256 key rejected: {e}"))?;
            // SEC1 uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            anyhow::ensure!(
                point.len() == 65 && point[0] == 4,
                "unexpected P-256 public key"
            );
            let members = json!({ "x": b64url(&point[1..33]), "y": b64url(&point[33..]) });
            (pkcs8.as_ref().to_vec(), members.to_string())
        }
    };
    let jwk = public_jwk(alg, &public, "")?;
    Ok(Generated {
        kid: thumbprint(&jwk)?,
        alg,
        public,
        pkcs8,
    })
}

/// The public JWK of a stored key, with `kid`, `use` and `alg`.
pub fn public_jwk(alg: SigningAlg, public: &str, kid: &str) -> anyhow::Result<Value> {
    let mut jwk = match alg {
        SigningAlg::EdDSA => json!({ "kty": "OKP", "crv": "Ed25519", "x": public }),
        SigningAlg::RS256 => {
            let m: Value = serde_json::from_str(public).context("malformed RSA public key")?;
            json!({ "kty": "RSA", "n": m["n"], "e": m["e"] })
        }
        SigningAlg::ES256 => {
            let m: Value = serde_json::from_str(public).context("malformed P-256 public key")?;
            json!({ "kty": "EC", "crv": "P-256", "x": m["x"], "y": m["y"] })
        }
    };
    for member in ["n", "e", "x", "y"] {
        if let Some(v) = jwk.get(member) {
            anyhow::ensure!(
                v.as_str().and_then(b64url_decode).is_some(),
                "public key member `{member}` is not base64url"
            );
        }
    }
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk["alg"] = json!(alg.as_str());
    Ok(jwk)
}

/// RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order, without
/// whitespace.
pub fn thumbprint(jwk: &Value) -> anyhow::Result<String> {
    let member = |name: &str| {
        jwk[name]
            .as_str()
            .with_context(|| format!("JWK lacks `{name}`"))
    };
    let canonical = match member("kty")? {
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            member("crv")?,
            member("x")?
        ),
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member("e")?,
            member("n")?
        ),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        other => anyhow::bail!("unsupported key type {other}"),
    };
    Ok(b64url(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
    ))
}

/// The verifier of a public JWK built by [`public_jwk`].
pub fn decoding_key(jwk: &Value) -> anyhow::Result<DecodingKey> {
    DecodingKey::from_jwk(&serde_json::from_value(jwk.clone())?)
        .map_err(|e| anyhow::anyhow!("unusable public key: {e}"))
}

/// The signer of a PKCS#8 private key.
pub fn encoding_key(alg: SigningAlg, pkcs8: &[u8]) -> anyhow::Result<EncodingKey> {
    Ok(match alg {
        SigningAlg::EdDSA => EncodingKey::from_ed_der(pkcs8),
        SigningAlg::ES256 => EncodingKey::from_ec_der(pkcs8),
        // jsonwebtoken reads RSA private keys as PKCS#1 (RFC 8017 `RSAPrivateKey`).
        SigningAlg::RS256 => EncodingKey::from_rsa_der(pkcs1_of(pkcs8)?),
    })
}

impl SigningAlg {
    pub fn jwt(self) -> Algorithm {
        match self {
            SigningAlg::EdDSA => Algorithm::EdDSA,
            SigningAlg::RS256 => Algorithm::RS256,
            SigningAlg::ES256 => Algorithm::ES256,
        }
    }
}

/// The `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (RFC 5208 §5):
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }`.
fn pkcs1_of(pkcs8: &[u8]) -> anyhow::Result<&[u8]> {
    let malformed = || anyhow::anyhow!("malformed PKCS#8 RSA key");
    let (tag, info, _) = der_element(pkcs8).ok_or_else(malformed)?;
    anyhow::ensure!(tag == 0x30, "PKCS#8 key is not a SEQUENCE");
    let (tag, _, rest) = der_element(info).ok_or_else(malformed)?;
    anyhow::ensure!(tag == 0x02, "PKCS#8 key lacks its version");
    let (tag, _, rest) = der_element(rest).ok_or_else(malformed)?;
    anyhow::ensure!(tag == 0x30, "PKCS#8 key lacks its algorithm");
    let (tag, key, _) = der_element(rest).ok_or_else(malformed)?;
    anyhow::ensure!(tag == 0x04, "PKCS#8 key lacks its private key");
    Ok(key)
}

/// Splits one DER element off `input`: (tag, contents, what follows).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
        let jwk = public_jwk(
            SigningAlg::EdDSA,
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "",
        )
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        // RFC 7638 §3.1: the example RSA key.
        let rsa = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
        });
        assert_eq!(
            thumbprint(&rsa).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn every_algorithm_signs_what_its_published_key_verifies() {
        for alg in [SigningAlg::EdDSA, SigningAlg::RS256, SigningAlg::ES256] {
            let key = generate(alg).unwrap();
            let jwk = public_jwk(alg, &key.public, &key.kid).unwrap();
            assert_eq!(thumbprint(&jwk).unwrap(), key.kid);
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], alg.as_str());
            let encoding = encoding_key(alg, &key.pkcs8).unwrap();
            let header = jsonwebtoken::Header::new(alg.jwt());
            let token = jsonwebtoken::encode(&header, &json!({ "sub": "x" }), &encoding).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg.jwt());
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            jsonwebtoken::decode::<Value>(&token, &decoding_key(&jwk).unwrap(), &validation)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
    }

    #[test]
    fn malformed_pkcs8_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x02, 0x02],
        ] {
            assert!(pkcs1_of(bad).is_err());
        }
    }
}
