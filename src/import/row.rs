//! One user of an import file, parsed and validated before anything is written.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::accounts::{Email, Name};
use crate::crypto::legacy;

/// Longer than any hash format we accept; a bound on what a row may carry.
const MAX_HASH_LEN: usize = 512;
const MAX_ROLES: usize = 64;

/// A row ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub email: Email,
    pub name: Name,
    pub password_hash: String,
    /// Sorted, without duplicates; always holds `user`, which every account has.
    pub roles: Vec<String>,
    /// Microseconds since the epoch; `None`: now.
    pub created_at: Option<i64>,
    pub email_verified: bool,
}

/// The fields as a file spells them, before validation. CSV cells are text; JSON lines
/// carry roles as an array and the flag as a boolean.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJson {
    email: String,
    #[serde(default)]
    name: Option<String>,
    password_hash: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    email: String,
    #[serde(default)]
    name: Option<String>,
    password_hash: String,
    #[serde(default)]
    roles: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    email_verified: Option<String>,
}

impl RawJson {
    pub fn validate(self) -> Result<Row, String> {
        let roles = self.roles.iter().map(String::as_str).collect();
        build(
            &self.email,
            self.name.as_deref(),
            &self.password_hash,
            roles,
            self.created_at.as_deref(),
            self.email_verified,
        )
    }
}

impl RawCsv {
    pub fn validate(self) -> Result<Row, String> {
        let roles = self
            .roles
            .as_deref()
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .collect();
        let verified = match self.email_verified.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(flag) => parse_flag(flag)
                .ok_or_else(|| format!("email_verified: {flag:?} is not true or false"))?,
        };
        build(
            &self.email,
            self.name.as_deref(),
            &self.password_hash,
            roles,
            self.created_at.as_deref(),
            verified,
        )
    }
}

fn parse_flag(flag: &str) -> Option<bool> {
    match flag.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn build(
    email: &str,
    name: Option<&str>,
    password_hash: &str,
    roles: Vec<&str>,
    created_at: Option<&str>,
    email_verified: bool,
) -> Result<Row, String> {
    let email = Email::parse(email).map_err(|m| format!("email {m}"))?;
    let name = Name::parse(name).map_err(|m| format!("name {m}"))?;
    let password_hash = password_hash.trim();
    if password_hash.len() > MAX_HASH_LEN {
        return Err(format!(
            "password_hash is longer than {MAX_HASH_LEN} characters"
        ));
    }
    legacy::parse(password_hash).map_err(|e| format!("password_hash: {e}"))?;
    if roles.len() > MAX_ROLES {
        return Err(format!("more than {MAX_ROLES} roles"));
    }
    let mut roles: Vec<String> = roles.into_iter().map(str::to_string).collect();
    roles.push(crate::roles::USER.to_string());
    roles.sort();
    roles.dedup();
    let created_at = match created_at.map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(parse_time(text)?),
    };
    Ok(Row {
        email,
        name,
        password_hash: password_hash.to_string(),
        roles,
        created_at,
        email_verified,
    })
}

fn parse_time(text: &str) -> Result<i64, String> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("created_at: {text:?} is not an RFC 3339 time"))?;
    let micros = at.unix_timestamp_nanos() / 1000;
    let now = i128::from(crate::store::now_micros());
    if micros > now {
        return Err("created_at is in the future".into());
    }
    i64::try_from(micros).map_err(|_| "created_at is out of range".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$04$v7W.Z2qQbcid7NRSTj0zsOLUPzB.AVyJGgFtlmLhGDcqFQpfNiV0W";

    fn csv(email: &str, roles: &str, created: &str, verified: &str) -> Result<Row, String> {
        RawCsv {
            email: email.into(),
            name: Some("  Ada  ".into()),
            password_hash: HASH.into(),
            roles: Some(roles.into()),
            created_at: Some(created.into()),
            email_verified: Some(verified.into()),
        }
        .validate()
    }

    #[test]
    fn csv_cells_become_a_row() {
        let row = csv(
            "Ada@Example.com",
            "admin; user;admin",
            "2020-01-02T03:04:05.5Z",
            "TRUE",
        )
        .unwrap();
        assert_eq!(row.email.key(), "ada@example.com");
        assert_eq!(row.name.as_deref(), Some("Ada"));
        assert_eq!(row.roles, ["admin", "user"]);
        assert_eq!(row.created_at, Some(1_577_934_245_500_000));
        assert!(row.email_verified);
        let plain = csv("b@example.com", "", "", "").unwrap();
        assert_eq!(plain.roles, ["user"]);
        assert_eq!(plain.created_at, None);
        assert!(!plain.email_verified);
    }

    #[test]
    fn bad_cells_say_which_column() {
        for (row, column) in [
            (csv("not an email", "", "", ""), "email"),
            (csv("a@example.com", "", "yesterday", ""), "created_at"),
            (
                csv("a@example.com", "", "2999-01-01T00:00:00Z", ""),
                "created_at",
            ),
            (csv("a@example.com", "", "", "maybe"), "email_verified"),
        ] {
            let message = row.unwrap_err();
            assert!(message.starts_with(column), "{message}");
        }
        let unknown = RawJson {
            email: "a@example.com".into(),
            name: None,
            password_hash: "md5$x$y".into(),
            roles: vec![],
            created_at: None,
            email_verified: false,
        }
        .validate()
        .unwrap_err();
        assert_eq!(unknown, "password_hash: unrecognised password hash format");
    }
}
