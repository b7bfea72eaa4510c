//! Authorization codes (RFC 6749 §4.1.2): what the authorize endpoint hands the browser and
//! the token endpoint takes back. Stored by SHA-256, valid for 60 seconds, single use. A used
//! code stays on record with the grant it produced for an hour past its expiry, so that presenting it
//! again revokes that grant ("the authorization server SHOULD revoke all tokens previously
//! issued based on that authorization code").

use std::time::Duration;

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::accounts::UserId;
use crate::crypto::{new_token, token_hash};
use crate::store::{micros_after, now_micros};

use super::clients::ClientId;

/// How long a code may wait for its exchange.
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// How long a code stays on record past its expiry, so that a late second use still revokes
/// the grant the first one produced.
const KEPT_AFTER_EXPIRY: Duration = Duration::from_secs(3600);

/// What an authorization decided, bound to the code that carries it.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub client_id: ClientId,
    pub user_id: UserId,
    /// The browser session that authorized it: the ID token's `sid`, the grant's parent.
    pub browser_session: Uuid,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    /// The S256 `code_challenge` (RFC 7636), when the request had one.
    pub code_challenge: Option<String>,
    /// When the user authenticated, in microseconds.
    pub auth_time: i64,
    /// The second factor of that authentication, as sessions store it.
    pub mfa_method: Option<String>,
}

/// A code as stored.
#[derive(Debug, Clone)]
pub struct CodeRow {
    pub code_hash: String,
    pub code: NewCode,
}

/// What presenting a code found.
#[derive(Debug)]
pub enum Claim {
    /// First use within its lifetime: it is now used.
    Fresh(Box<CodeRow>),
    /// Used before. `grant_session` is the grant that first use produced, if it got that far.
    Reused {
        client_id: String,
        grant_session: Option<Uuid>,
    },
    /// Unknown or expired.
    Unknown,
}

/// Stores a new code and returns it (256 random bits, base64url).
pub async fn issue(conn: &mut AnyConnection, new: &NewCode) -> Result<String, sqlx::Error> {
    let code = new_token();
    let now = now_micros();
    // Sweeping here keeps the table small without a job of its own.
    let keep_until = now.saturating_sub(i64::try_from(KEPT_AFTER_EXPIRY.as_micros()).unwrap_or(0));
    sqlx::query("DELETE FROM oidc_codes WHERE expires_at < $1")
        .bind(keep_until)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO oidc_codes (code_hash, client_id, user_id, browser_session_id, redirect_uri, scope, nonce, code_challenge, auth_time, mfa_method, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(token_hash(&code))
    .bind(new.client_id.to_string())
    .bind(new.user_id.to_string())
    .bind(new.browser_session.to_string())
    .bind(&new.redirect_uri)
    .bind(&new.scope)
    .bind(new.nonce.as_deref())
    .bind(new.code_challenge.as_deref())
    .bind(new.auth_time)
    .bind(new.mfa_method.as_deref())
    .bind(now)
    .bind(micros_after(now, CODE_TTL))
    .execute(&mut *conn)
    .await?;
    Ok(code)
}

/// Marks the code used and returns what it carries. The conditional UPDATE makes exactly one
/// of several concurrent exchanges win; the others see `Reused`.
pub async fn claim(conn: &mut AnyConnection, code: &str) -> Result<Claim, sqlx::Error> {
    let hash = token_hash(code);
    let now = now_micros();
    let row = sqlx::query(
        "UPDATE oidc_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING client_id, user_id, browser_session_id, redirect_uri, scope, nonce, code_challenge, auth_time, mfa_method",
    )
    .bind(now)
    .bind(&hash)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(r) = row {
        let decode = |what: &str| sqlx::Error::Decode(format!("oidc_codes.{what}").into());
        let client: String = r.try_get("client_id")?;
        let user: String = r.try_get("user_id")?;
        let browser: String = r.try_get("browser_session_id")?;
        return Ok(Claim::Fresh(Box::new(CodeRow {
            code_hash: hash,
            code: NewCode {
                client_id: ClientId::parse(&client).ok_or_else(|| decode("client_id"))?,
                user_id: UserId::parse(&user).ok_or_else(|| decode("user_id"))?,
                browser_session: Uuid::parse_str(&browser)
                    .map_err(|_| decode("browser_session_id"))?,
                redirect_uri: r.try_get("redirect_uri")?,
                scope: r.try_get("scope")?,
                nonce: r.try_get("nonce")?,
                code_challenge: r.try_get("code_challenge")?,
                auth_time: r.try_get("auth_time")?,
                mfa_method: r.try_get("mfa_method")?,
            },
        })));
    }
    let used = sqlx::query(
        "SELECT client_id, grant_session_id FROM oidc_codes WHERE code_hash = $1 AND used_at IS NOT NULL",
    )
    .bind(&hash)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match used {
        Some(r) => {
            let grant: Option<String> = r.try_get("grant_session_id")?;
            Claim::Reused {
                client_id: r.try_get("client_id")?,
                grant_session: grant.as_deref().and_then(|g| Uuid::parse_str(g).ok()),
            }
        }
        None => Claim::Unknown,
    })
}

/// Records the grant a code produced, so a second use of the code can revoke it.
pub async fn attach_grant(
    conn: &mut AnyConnection,
    code_hash: &str,
    grant_session: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_codes SET grant_session_id = $1 WHERE code_hash = $2")
        .bind(grant_session.to_string())
        .bind(code_hash)
        .execute(conn)
        .await?;
    Ok(())
}
