//! Account types. `Email` and `Name` are parsed once at the edge and trusted afterwards.

use serde::Serialize;
use uuid::Uuid;

use crate::store::rfc3339;

/// A user id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn new() -> Self {
        UserId(Uuid::now_v7())
    }

    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(UserId)
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_NAME_CHARS: usize = 200;

/// An email address as given (trimmed), with its case-insensitive identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    address: String,
    key: String,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Email, &'static str> {
        let address = raw.trim();
        if address.is_empty() {
            return Err("must not be empty");
        }
        if address.len() > MAX_EMAIL_LEN {
            return Err("must be at most 254 characters");
        }
        if !email_address::EmailAddress::is_valid(address) || address.chars().any(char::is_control)
        {
            return Err("must be a valid email address");
        }
        Ok(Email {
            address: address.to_string(),
            key: email_key(address),
        })
    }

    /// The address as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The identity key: the lowercase address, unique across accounts.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The part before `@`, used as a hint for the password strength check.
    pub fn local_part(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map(|(l, _)| l)
            .unwrap_or(&self.address)
    }
}

/// A display name: trimmed, at most 200 characters, no control characters; empty means none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Name(Option<String>);

impl Name {
    pub fn parse(raw: Option<&str>) -> Result<Name, &'static str> {
        let Some(text) = raw.map(str::trim) else {
            return Ok(Name(None));
        };
        if text.is_empty() {
            return Ok(Name(None));
        }
        if text.chars().count() > MAX_NAME_CHARS {
            return Err("must be at most 200 characters");
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Name(Some(text.to_string())))
    }

    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// The identity key of an address: its lowercase form, unique across accounts.
pub fn email_key(address: &str) -> String {
    address.to_lowercase()
}

/// A stored account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub email_verified_at: Option<i64>,
    pub disabled_at: Option<i64>,
    pub locked_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub roles: Vec<String>,
    /// TOTP is confirmed: logins need a second factor.
    pub mfa_enabled: bool,
}

impl User {
    /// The key the account's email is known by (uniqueness, login backoff).
    pub fn email_key(&self) -> String {
        email_key(&self.email)
    }
}

/// The user as the API shows it (API.md "User").
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserView {
    #[schema(format = "uuid")]
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub mfa_enabled: bool,
    #[schema(format = "date-time")]
    pub created_at: String,
    #[schema(format = "date-time")]
    pub updated_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            email_verified: u.email_verified_at.is_some(),
            roles: u.roles.clone(),
            mfa_enabled: u.mfa_enabled,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_keyed_case_insensitively() {
        let e = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice.Smith@Example.COM");
        assert_eq!(e.key(), "alice.smith@example.com");
        assert_eq!(e.local_part(), "Alice.Smith");
    }

    #[test]
    fn bad_emails_are_refused() {
        assert!(Email::parse("").is_err());
        assert!(Email::parse("not-an-email").is_err());
        assert!(Email::parse("a@").is_err());
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn names_are_optional_and_bounded() {
        assert_eq!(Name::parse(None).unwrap(), Name(None));
        assert_eq!(Name::parse(Some("   ")).unwrap(), Name(None));
        assert_eq!(Name::parse(Some(" Ada ")).unwrap().as_deref(), Some("Ada"));
        assert!(Name::parse(Some(&"é".repeat(200))).is_ok());
        assert!(Name::parse(Some(&"é".repeat(201))).is_err());
        assert!(Name::parse(Some("a\u{0}b")).is_err());
    }
}
