//! Permission and role-name types, parsed once at the edge.

/// The permissions of API.md, each guarding some admin routes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, utoipa::ToSchema,
)]
pub enum Permission {
    #[serde(rename = "users:read")]
    UsersRead,
    #[serde(rename = "users:write")]
    UsersWrite,
    #[serde(rename = "roles:read")]
    RolesRead,
    #[serde(rename = "roles:write")]
    RolesWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "clients:read")]
    ClientsRead,
    #[serde(rename = "clients:write")]
    ClientsWrite,
    #[serde(rename = "keys:rotate")]
    KeysRotate,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::RolesRead,
        Permission::RolesWrite,
        Permission::AuditRead,
        Permission::ClientsRead,
        Permission::ClientsWrite,
        Permission::KeysRotate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::RolesRead => "roles:read",
            Permission::RolesWrite => "roles:write",
            Permission::AuditRead => "audit:read",
            Permission::ClientsRead => "clients:read",
            Permission::ClientsWrite => "clients:write",
            Permission::KeysRotate => "keys:rotate",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    /// Parses a list from a request: sorted, without duplicates. The error names the first
    /// unknown permission.
    pub fn parse_set(raw: &[String]) -> Result<Vec<Permission>, String> {
        let mut set = raw
            .iter()
            .map(|s| {
                Permission::parse(s)
                    .ok_or_else(|| format!("has an unknown permission `{}`", truncate(s)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        set.sort();
        set.dedup();
        Ok(set)
    }
}

/// At most 64 characters of something a client sent, for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A role name: `[a-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(raw: &str) -> Result<RoleName, &'static str> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(RoleName(raw.to_string()))
        } else {
            Err("must be 1 to 64 characters of a-z, 0-9, `_` and `-`")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_round_trip_and_unknown_ones_are_named() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(*p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        let set = Permission::parse_set(&[
            "users:write".into(),
            "users:read".into(),
            "users:write".into(),
        ])
        .unwrap();
        assert_eq!(set, vec![Permission::UsersRead, Permission::UsersWrite]);
        let err = Permission::parse_set(&["users:read".into(), "users:delete".into()]).unwrap_err();
        assert!(err.contains("users:delete"), "{err}");
    }

    #[test]
    fn role_names_are_short_lowercase_slugs() {
        for ok in ["auditor", "a", "read_only-2", &"x".repeat(64)] {
            assert!(RoleName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Auditor", "a b", "é", "a:b", &"x".repeat(65)] {
            assert!(RoleName::parse(bad).is_err(), "{bad}");
        }
    }
}
