//! ID tokens (OIDC Core §2, §3.1.3.6): who the user is, for the client that asked, signed
//! with the client's `id_token_signed_response_alg` (RS256 unless it chose otherwise).

use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};

use super::clients::{Client, IdTokenAlg};
use crate::accounts::User;
use crate::app::AppState;
use crate::crypto::keys::SigningAlg;

/// The claims we put in an ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub exp: i64,
    pub iat: i64,
    /// Seconds since the epoch.
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The browser session that authorized the grant (OIDC Front/Back-Channel Logout `sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What an ID token says beyond the user and the client.
pub struct IdTokenInput<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub scope: &'a str,
    /// Microseconds, as sessions store it.
    pub auth_time_micros: i64,
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
    pub browser_session: Option<uuid::Uuid>,
    pub amr: Vec<String>,
}

fn signing_alg(alg: IdTokenAlg) -> SigningAlg {
    match alg {
        IdTokenAlg::RS256 => SigningAlg::RS256,
        IdTokenAlg::EdDSA => SigningAlg::EdDSA,
        IdTokenAlg::ES256 => SigningAlg::ES256,
    }
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the hash of the access token, with the
/// hash of the signing algorithm (SHA-256 for RS256/ES256, SHA-512 for EdDSA with Ed25519).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let digest_alg = match alg {
        Algorithm::EdDSA => &aws_lc_rs::digest::SHA512,
        _ => &aws_lc_rs::digest::SHA256,
    };
    let digest = aws_lc_rs::digest::digest(digest_alg, access_token.as_bytes());
    let bytes = digest.as_ref();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// Signs the ID token.
pub fn sign(app: &AppState, input: IdTokenInput<'_>) -> anyhow::Result<String> {
    let key = app
        .keys
        .signer_for(signing_alg(input.client.spec.id_token_signed_response_alg))
        .ok_or_else(|| anyhow::anyhow!("no signing key for the client's ID token algorithm"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ttl = i64::try_from(app.config.access_token_ttl.as_secs()).unwrap_or(900);
    let client_id = input.client.client_id.to_string();
    let scopes: Vec<&str> = input.scope.split(' ').collect();
    let email = scopes.contains(&"email");
    let profile = scopes.contains(&"profile");
    let claims = IdClaims {
        iss: app.config.issuer.clone(),
        sub: input.user.id.to_string(),
        aud: client_id.clone(),
        azp: client_id,
        exp: now.saturating_add(ttl),
        iat: now,
        auth_time: input.auth_time_micros.div_euclid(1_000_000),
        nonce: input.nonce.map(str::to_string),
        at_hash: Some(at_hash(key.alg, input.access_token)),
        sid: input.browser_session.map(|s| s.to_string()),
        amr: input.amr,
        email: email.then(|| input.user.email.clone()),
        email_verified: email.then_some(input.user.email_verified_at.is_some()),
        name: if profile {
            input.user.name.clone()
        } else {
            None
        },
    };
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".to_string());
    Ok(jsonwebtoken::encode(&header, &claims, &key.encoding)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_oidc_core_example() {
        // OIDC Core §A.3: access_token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" has at_hash
        // "77QmUPtjPfzWtF2AnpK9RQ" with RS256.
        assert_eq!(
            at_hash(
                Algorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
