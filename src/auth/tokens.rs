//! Access tokens: JWTs signed EdDSA by default (`PORTVAKT_ACCESS_TOKEN_ALG`) (RFC 7519, RFC 9068 header type) with `kid`, `iss`,
//! `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`, `sid`, `roles` and `amr` (RFC 8176, see `amr`).
//!
//! Verifying an Ed25519 signature costs about as much as serving a whole small request, so
//! each distinct token is verified once and the result remembered until the token expires.
//! The cache only ever says "this token is authentic"; whether its session is still alive
//! is checked separately on every request (see `sessions`).

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::accounts::UserId;
use crate::crypto::keys::KeyRing;

/// The JOSE `typ` of our access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Tokens longer than this are not ours; refusing them early bounds the work.
const MAX_TOKEN_LEN: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, want: &str) -> bool {
        match self {
            Audience::One(a) => a == want,
            Audience::Many(all) => all.iter().any(|a| a == want),
        }
    }

    /// The first audience: for an ID token, the client it was issued to.
    pub fn first(&self) -> Option<&str> {
        match self {
            Audience::One(a) => Some(a),
            Audience::Many(all) => all.first().map(String::as_str),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub sid: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// How the session was authenticated (RFC 8176). Absent from tokens of older releases,
    /// which therefore count as password-only.
    #[serde(default)]
    pub amr: Vec<String>,
    /// Present on tokens issued to OIDC clients, which `/api/v1` refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl AccessClaims {
    fn aud_contains(&self, want: &str) -> bool {
        self.aud.contains(want)
    }
}

/// The claims of an access token issued to an OIDC client (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    /// The grant session; absent on `client_credentials` tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// When the user authenticated (seconds), on tokens of a user's grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

/// What a client's access token is issued for.
#[derive(Debug, Clone)]
pub struct ClientGrant<'a> {
    pub client_id: &'a str,
    /// The user id, or the client id for `client_credentials`.
    pub sub: &'a str,
    pub session: Option<Uuid>,
    pub scope: &'a str,
    /// RFC 8707 `resource`; `None`: the issuer.
    pub audience: Option<&'a str>,
    /// Seconds.
    pub auth_time: Option<i64>,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
}

/// Any of our verified access tokens.
#[derive(Debug, Clone)]
pub enum AnyAccess {
    User(AccessClaims),
    Client(ClientClaims),
}

/// What a verified access token vouches for.
#[derive(Debug, Clone)]
pub struct Verified {
    pub user_id: UserId,
    pub session_id: Uuid,
    pub roles: Vec<String>,
    /// The token's `amr`: whether the session passed a second factor.
    pub amr: Vec<String>,
    pub expires_at: i64,
    /// The key that signed it: a deleted key (`keys rotate --delete-previous`) takes its
    /// remembered tokens with it.
    kid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is signed by an unknown key")]
    UnknownKey,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token was issued to a client, not a user session")]
    ClientToken,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
}

pub struct TokenService {
    keys: Arc<KeyRing>,
    issuer: String,
    ttl: Duration,
    /// One per algorithm: jsonwebtoken wants every algorithm of a validation to suit the key.
    validations: Vec<Validation>,
    /// The same without the audience check: a client's token names the resource it is for.
    any_audience: Vec<Validation>,
    cache: Option<Cache<[u8; 32], Arc<Verified>>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl TokenService {
    pub fn new(
        keys: Arc<KeyRing>,
        issuer: String,
        ttl: Duration,
        cache_size: usize,
    ) -> TokenService {
        // Any of our algorithms, but only the one of the key the token names (checked in
        // `verify`): tokens signed before a change of `PORTVAKT_ACCESS_TOKEN_ALG` keep working.
        let build = |audience: bool| -> Vec<Validation> {
            [Algorithm::EdDSA, Algorithm::RS256, Algorithm::ES256]
                .into_iter()
                .map(|alg| {
                    let mut validation = Validation::new(alg);
                    // We check our own tokens with our own clock: no leeway, so an expired
                    // token is expired.
                    validation.leeway = 0;
                    validation.validate_nbf = true;
                    validation.set_issuer(&[&issuer]);
                    if audience {
                        validation.set_audience(&[&issuer]);
                    } else {
                        validation.validate_aud = false;
                    }
                    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
                    validation
                })
                .collect()
        };
        let validations = build(true);
        let any_audience = build(false);
        TokenService {
            keys,
            issuer,
            ttl,
            validations,
            any_audience,
            cache: (cache_size > 0).then(|| Cache::new(cache_size)),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs an access token for a session, with the roles it may use and how it was
    /// authenticated (`amr`).
    pub fn issue(
        &self,
        user: UserId,
        session: Uuid,
        roles: &[String],
        amr: Vec<String>,
    ) -> Result<Issued, TokenError> {
        let key = self.keys.signer();
        let now = now_secs();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: user.to_string(),
            aud: Audience::One(self.issuer.clone()),
            exp: now.saturating_add(ttl),
            iat: now,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
            sid: session.to_string(),
            roles: roles.to_vec(),
            amr,
            client_id: None,
        };
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        header.typ = Some(ACCESS_TOKEN_TYPE.to_string());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok(Issued {
            token,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// Signs an access token for an OIDC client (RFC 9068): a user's grant (`sid` is the grant
    /// session) or the client itself (`client_credentials`: `sub` is the client id, no `sid`).
    pub fn issue_for_client(
        &self,
        grant: ClientGrant<'_>,
    ) -> Result<(Issued, ClientClaims), TokenError> {
        let key = self.keys.signer();
        let now = now_secs();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = ClientClaims {
            iss: self.issuer.clone(),
            sub: grant.sub.to_string(),
            aud: Audience::One(
                grant
                    .audience
                    .map_or_else(|| self.issuer.clone(), str::to_string),
            ),
            exp: now.saturating_add(ttl),
            iat: now,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
            client_id: grant.client_id.to_string(),
            scope: grant.scope.to_string(),
            sid: grant.session.map(|s| s.to_string()),
            auth_time: grant.auth_time,
            roles: grant.roles,
            amr: grant.amr,
        };
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        header.typ = Some(ACCESS_TOKEN_TYPE.to_string());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok((
            Issued {
                token,
                expires_in: self.ttl.as_secs(),
            },
            claims,
        ))
    }

    /// Checks any of our access tokens, a user's or a client's, whatever its audience:
    /// signature, algorithm, type, issuer and time. Whether its session is still alive (or a
    /// client token revoked) is for the caller to check. For userinfo and introspection.
    pub async fn verify_any(&self, token: &str) -> Result<AnyAccess, TokenError> {
        let (_, alg, key) = self.check_header(token).await?;
        let validation = self
            .any_audience
            .iter()
            .find(|v| v.algorithms == [alg])
            .ok_or_else(|| TokenError::Invalid("unexpected algorithm".into()))?;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let value = data.claims;
        if value.get("client_id").is_some() {
            serde_json::from_value(value)
                .map(AnyAccess::Client)
                .map_err(|e| TokenError::Invalid(e.to_string()))
        } else {
            let claims: AccessClaims =
                serde_json::from_value(value).map_err(|e| TokenError::Invalid(e.to_string()))?;
            if claims.aud_contains(&self.issuer) {
                Ok(AnyAccess::User(claims))
            } else {
                Err(TokenError::Invalid("wrong audience".into()))
            }
        }
    }

    /// The `typ`, `kid` and algorithm checks every verification starts with.
    async fn check_header(
        &self,
        token: &str,
    ) -> Result<(String, Algorithm, jsonwebtoken::DecodingKey), TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header
            .typ
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some(ACCESS_TOKEN_TYPE)
        {
            return Err(TokenError::Invalid("not an access token".into()));
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let (alg, key) = self
            .keys
            .decoding_key(&kid)
            .await
            .ok_or(TokenError::UnknownKey)?;
        // The key decides the algorithm, never the token (RFC 8725 §3.1).
        if header.alg != alg {
            return Err(TokenError::Invalid("unexpected algorithm".into()));
        }
        Ok((kid, alg, key))
    }

    /// Checks signature, algorithm, type, issuer, audience and time; remembers the result.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut cache_key = [0u8; 32];
        cache_key.copy_from_slice(digest.as_ref());
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&cache_key)) {
            if hit.expires_at > now_secs() && self.keys.knows(&hit.kid) {
                return Ok(hit);
            }
            if let Some(c) = &self.cache {
                c.remove(&cache_key);
            }
            return Err(TokenError::Invalid("expired or its key deleted".into()));
        }

        let (kid, alg, key) = self.check_header(token).await?;
        let validation = self
            .validations
            .iter()
            .find(|v| v.algorithms == [alg])
            .ok_or_else(|| TokenError::Invalid("unexpected algorithm".into()))?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.client_id.is_some() {
            return Err(TokenError::ClientToken);
        }
        let verified = Arc::new(Verified {
            user_id: UserId::parse(&claims.sub)
                .ok_or_else(|| TokenError::Invalid("sub is not a user id".into()))?,
            session_id: Uuid::parse_str(&claims.sid)
                .map_err(|_| TokenError::Invalid("sid is not a session id".into()))?,
            roles: claims.roles,
            amr: claims.amr,
            expires_at: claims.exp,
            kid,
        });
        if let Some(c) = &self.cache {
            c.insert(cache_key, verified.clone());
        }
        Ok(verified)
    }
}
