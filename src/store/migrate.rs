//! Embedded migrations, one directory per backend with the same numbers and names.

use sqlx::migrate::Migrator;

use super::{Backend, Store};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// The newest migration version compiled into this binary for `backend`.
pub fn latest(backend: Backend) -> i64 {
    migrator(backend)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

impl Store {
    /// Applies every pending migration. On PostgreSQL sqlx holds an advisory lock meanwhile,
    /// so instances starting together do not race.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migrator(self.backend).run(self.pool()).await?;
        Ok(())
    }

    /// Applies the pending migrations up to and including `version` only (restore loads a
    /// backup into the schema it was taken from, then migrates the rest).
    pub async fn migrate_to(&self, version: i64) -> anyhow::Result<()> {
        migrator(self.backend).run_to(version, self.pool()).await?;
        Ok(())
    }

    /// The newest migration version compiled into this binary.
    pub fn latest_schema_version(&self) -> i64 {
        latest(self.backend)
    }

    /// The newest migration applied to the database (0 for an empty one).
    pub async fn applied_schema_version(&self) -> anyhow::Result<i64> {
        let exists = match self.backend {
            Backend::Sqlite => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                    .fetch_one(self.pool())
                    .await?
            }
            Backend::Postgres => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'")
                    .fetch_one(self.pool())
                    .await?
            }
        };
        if exists == 0 {
            return Ok(0);
        }
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(self.pool())
                .await?;
        Ok(v.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migrations() {
        let names = |m: &Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&SQLITE), names(&POSTGRES));
        assert!(!names(&SQLITE).is_empty());
    }
}
