//! What a backup holds: every table of the schema, in an order that satisfies foreign keys,
//! and how each column's values cross sqlx's `Any` driver on either backend.

use sqlx::{AnyConnection, Row};

use crate::store::Backend;

/// A table that backups carry.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    /// Rows are written in this order (the primary key), so two backups of the same data match.
    pub order_by: &'static str,
    /// The rows the migrations themselves insert: a target holding only these is empty.
    pub seeded: Option<&'static str>,
}

/// Every table backups carry, parents before children.
pub const TABLES: &[Table] = &[
    Table {
        name: "users",
        order_by: "id",
        seeded: None,
    },
    Table {
        name: "roles",
        order_by: "name",
        seeded: Some("builtin = 1 AND created_at = 0 AND name IN ('admin', 'user')"),
    },
    Table {
        name: "role_permissions",
        order_by: "role, permission",
        seeded: None,
    },
    Table {
        name: "user_roles",
        order_by: "user_id, role",
        seeded: None,
    },
    Table {
        name: "oidc_clients",
        order_by: "client_id",
        seeded: None,
    },
    Table {
        name: "oidc_consents",
        order_by: "user_id, client_id",
        seeded: None,
    },
    Table {
        name: "oidc_revoked_tokens",
        order_by: "jti",
        seeded: None,
    },
    Table {
        name: "sessions",
        order_by: "id",
        seeded: None,
    },
    Table {
        name: "refresh_tokens",
        order_by: "token_hash",
        seeded: None,
    },
    Table {
        name: "signing_keys",
        order_by: "kid",
        seeded: None,
    },
    Table {
        name: "mfa_totp",
        order_by: "user_id",
        seeded: None,
    },
    Table {
        name: "mfa_recovery_codes",
        order_by: "user_id, code_hash",
        seeded: None,
    },
    Table {
        name: "passkeys",
        order_by: "id",
        seeded: None,
    },
    Table {
        name: "audit_log",
        order_by: "seq",
        seeded: None,
    },
    Table {
        name: "audit_head",
        order_by: "id",
        seeded: Some("seq = 0"),
    },
    Table {
        name: "audit_checkpoint",
        order_by: "id",
        seeded: Some("seq = 0"),
    },
];

/// Tables of the schema that backups leave out on purpose, and why.
pub const NOT_BACKED_UP: &[(&str, &str)] = &[
    (
        "_sqlx_migrations",
        "restore builds the schema by running this binary's migrations",
    ),
    (
        "backups",
        "the history of one database's backup files, not data to carry to another",
    ),
    (
        "mfa_challenges",
        "logins waiting for their second factor, dead within minutes",
    ),
    (
        "webauthn_ceremonies",
        "passkey ceremonies between their two requests, dead within minutes",
    ),
    (
        "email_tokens",
        "one-time links, dead within a day: a restore must not bring used or replaced ones back",
    ),
    (
        "oidc_requests",
        "authorization requests waiting for a login, dead within minutes",
    ),
    (
        "oidc_codes",
        "authorization codes, dead within a minute: a restore must not make a used one usable again",
    ),
    (
        "mail_outbox",
        "email in flight: a restored database must not send old messages (and their one-time links) again",
    ),
];

pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// How a column's values are read and bound. PostgreSQL wants the exact width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int16,
    Int32,
    Int64,
    Real32,
    Real64,
    Bool,
    Text,
    Blob,
}

impl ColumnType {
    /// Maps a declared type: PostgreSQL's `information_schema` name, or SQLite's declared
    /// type by its affinity rules (<https://www.sqlite.org/datatype3.html#affname>).
    pub fn parse(backend: Backend, declared: &str) -> Option<ColumnType> {
        let d = declared.to_ascii_lowercase();
        match backend {
            Backend::Postgres => Some(match d.as_str() {
                "smallint" => ColumnType::Int16,
                "integer" => ColumnType::Int32,
                "bigint" => ColumnType::Int64,
                "real" => ColumnType::Real32,
                "double precision" => ColumnType::Real64,
                "boolean" => ColumnType::Bool,
                "text" | "character varying" | "character" => ColumnType::Text,
                "bytea" => ColumnType::Blob,
                _ => return None,
            }),
            Backend::Sqlite => Some(if d.contains("int") {
                ColumnType::Int64
            } else if d.contains("char") || d.contains("clob") || d.contains("text") {
                ColumnType::Text
            } else if d.contains("blob") || d.is_empty() {
                ColumnType::Blob
            } else if d.contains("real") || d.contains("floa") || d.contains("doub") {
                ColumnType::Real64
            } else {
                // NUMERIC affinity; our migrations never declare it.
                return None;
            }),
        }
    }
}

/// A column as the connected database declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// The tables of the connected database's schema (sqlx's and SQLite's own included).
pub async fn schema_tables(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
        }
    };
    sqlx::query_scalar(sql).fetch_all(conn).await
}

/// Tables in the schema that are neither backed up nor knowingly left out: a migration
/// added a table without teaching backups about it.
pub fn unknown(schema: &[String]) -> Vec<&str> {
    schema
        .iter()
        .map(String::as_str)
        .filter(|n| table(n).is_none() && !NOT_BACKED_UP.iter().any(|(x, _)| x == n))
        .collect()
}

/// The columns of `table`, in declaration order, or an error naming one whose type backups
/// cannot carry.
pub async fn columns(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
) -> anyhow::Result<Vec<Column>> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
        Backend::Postgres => {
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
        }
    };
    let rows = sqlx::query(sql).bind(table).fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get(0)?;
            let declared: String = r.try_get(1)?;
            let ty = ColumnType::parse(backend, &declared).ok_or_else(|| {
                anyhow::anyhow!("{table}.{name} has type {declared}, which backups cannot carry")
            })?;
            Ok(Column { name, ty })
        })
        .collect()
}

/// An identifier for SQL text. Only ever given names from [`TABLES`] or from the database's
/// own column list, never raw text from a backup file; the quotes are a second fence.
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_per_backend() {
        assert_eq!(
            ColumnType::parse(Backend::Postgres, "integer"),
            Some(ColumnType::Int32)
        );
        assert_eq!(
            ColumnType::parse(Backend::Postgres, "bigint"),
            Some(ColumnType::Int64)
        );
        assert_eq!(
            ColumnType::parse(Backend::Sqlite, "INTEGER"),
            Some(ColumnType::Int64)
        );
        assert_eq!(
            ColumnType::parse(Backend::Sqlite, "TEXT"),
            Some(ColumnType::Text)
        );
        assert_eq!(
            ColumnType::parse(Backend::Postgres, "bytea"),
            Some(ColumnType::Blob)
        );
        assert_eq!(ColumnType::parse(Backend::Postgres, "jsonb"), None);
    }

    #[test]
    fn unknown_tables_are_named_and_known_ones_are_not() {
        let schema: Vec<String> = ["users", "_sqlx_migrations", "backups", "webauthn"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(unknown(&schema), vec!["webauthn"]);
    }

    #[test]
    fn parents_come_before_children() {
        let pos = |n: &str| TABLES.iter().position(|t| t.name == n).unwrap();
        assert!(pos("users") < pos("user_roles"));
        assert!(pos("roles") < pos("user_roles"));
        assert!(pos("users") < pos("sessions"));
        assert!(pos("sessions") < pos("refresh_tokens"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quoted("users"), "\"users\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
