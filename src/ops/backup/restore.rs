//! Checking a backup file, and restoring one into an empty database of either backend.
//!
//! Restore refuses before writing anything when the backup's schema is newer than this
//! binary, the file does not verify, the secret key in use is not the one that signed its
//! audit log and sealed its signing keys, or the target holds data. It then builds the schema
//! the backup was taken from with this binary's migrations, loads every row in one
//! transaction, checks the checksum again before committing, and migrates the rest.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use flate2::read::GzDecoder;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};
use tokio::sync::mpsc;

use super::format::{Cell, FormatError, Header, Reader, Row as BackupRow, Trailer};
use super::progress::Progress;
use super::tables::{self, Column, ColumnType, TABLES, quoted};
use crate::audit::Audit;
use crate::config::{Config, DEV_SECRET_FILE};
use crate::crypto::secret::{self, MasterKey};
use crate::store::{Backend, Store, migrate};

/// Rows handed from the reading thread at a time.
const BATCH: usize = 256;

type FileReader = Reader<BufReader<GzDecoder<BufReader<File>>>>;

fn open(path: &Path) -> Result<FileReader, FormatError> {
    let file = File::open(path).map_err(FormatError::Io)?;
    Reader::open(BufReader::with_capacity(
        1 << 16,
        GzDecoder::new(BufReader::new(file)),
    ))
}

/// Reads the whole file: gzip, order, counts and checksum. Returns the manifest.
pub fn verify_file(path: &Path) -> Result<(Header, Trailer), FormatError> {
    let (header, trailer, _) = verify_keeping(path, &[])?;
    Ok((header, trailer))
}

/// [`verify_file`], keeping the rows of `keep` (small tables) for a look before restoring.
fn verify_keeping(
    path: &Path,
    keep: &[&str],
) -> Result<(Header, Trailer, Vec<BackupRow>), FormatError> {
    let mut reader = open(path)?;
    let mut kept = Vec::new();
    while let Some(row) = reader.next_row()? {
        if keep.contains(&reader.header().tables[row.table].name.as_str()) {
            kept.push(row);
        }
    }
    let trailer = reader.trailer().cloned().ok_or(FormatError::Truncated)?;
    Ok((reader.header().clone(), trailer, kept))
}

/// What a restore loaded.
#[derive(Debug, Clone)]
pub struct Restored {
    pub header: Header,
    pub rows: u64,
    pub backend: Backend,
}

/// Restores the backup at `path` into the database `config` names, which must be empty.
pub async fn restore(
    config: &Config,
    path: &Path,
    progress: &Progress,
) -> anyhow::Result<Restored> {
    let backend = if config.is_postgres() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let header = open(path)
        .with_context(|| format!("{} cannot be restored", path.display()))?
        .header()
        .clone();
    let latest = migrate::latest(backend);
    anyhow::ensure!(
        header.schema_version <= latest,
        "the backup's schema (version {}, portvakt {}) is newer than this binary's (version {latest}): restore it with portvakt {} or newer",
        header.schema_version,
        header.portvakt_version,
        header.portvakt_version
    );
    let master = secret_key(config)?;
    let file = path.to_path_buf();
    let (_, _, signed) =
        tokio::task::spawn_blocking(move || verify_keeping(&file, &["audit_head", "signing_keys"]))
            .await
            .map_err(|e| anyhow::anyhow!("verifying the backup failed: {e}"))?
            .with_context(|| format!("{} cannot be restored", path.display()))?;
    check_secret_key(&master, &header, &signed)?;

    let store = Store::connect(config).await?;
    let result = restore_into(&store, path, &header, progress).await;
    store.close().await;
    progress.done();
    let rows = result?;
    Ok(Restored {
        header,
        rows,
        backend,
    })
}

/// The master key restore checks the backup's signatures with. A key made up now cannot be
/// the one the backup's service ran with, so none is made up.
fn secret_key(config: &Config) -> anyhow::Result<MasterKey> {
    anyhow::ensure!(
        config.secret_key.is_some() || config.data_dir.join(DEV_SECRET_FILE).exists(),
        "restore needs the secret key the backed-up service ran with (the backup's signing keys and audit log are sealed with it): set PORTVAKT_SECRET_KEY, or put that service's {DEV_SECRET_FILE} in {}",
        config.data_dir.display()
    );
    let (key, _) = secret::resolve(config)?;
    Ok(MasterKey::new(&key))
}

async fn restore_into(
    store: &Store,
    path: &Path,
    header: &Header,
    progress: &Progress,
) -> anyhow::Result<u64> {
    let backend = store.backend();
    let applied = store.applied_schema_version().await?;
    anyhow::ensure!(
        applied <= migrate::latest(backend),
        "the target database's schema (version {applied}) is newer than this binary knows"
    );
    let plan = header
        .tables
        .iter()
        .map(|t| {
            tables::table(&t.name)
                .with_context(|| format!("the backup holds an unknown table `{}`", t.name))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if applied > 0 {
        let mut conn = store.pool().acquire().await?;
        refuse_data(&mut conn, backend).await?;
    }
    // Rows go in at the backup's schema version and the later migrations run over them; a
    // target already migrated past that version would skip whatever those migrations do to
    // existing data.
    anyhow::ensure!(
        applied <= header.schema_version,
        "the target database is already at schema version {applied}, past the backup's {}: restore into a database without a schema (drop and recreate it, or use a new SQLite data directory)",
        header.schema_version
    );
    store
        .migrate_to(header.schema_version)
        .await
        .context("creating the schema")?;

    let mut tx = store.begin_write().await?;
    // Again under the write lock: nothing may have arrived since the first look.
    refuse_data(&mut tx, backend).await?;
    let mut targets: Vec<Vec<Column>> = Vec::new();
    for (table, t) in plan.iter().zip(&header.tables) {
        let have = tables::columns(&mut tx, backend, table.name).await?;
        let mut mapped = Vec::with_capacity(t.columns.len());
        for name in &t.columns {
            let column = have.iter().find(|c| &c.name == name).with_context(|| {
                format!(
                    "the backup's column {}.{name} does not exist in schema version {}",
                    table.name, header.schema_version
                )
            })?;
            mapped.push(column.clone());
        }
        targets.push(mapped);
    }
    // Only the rows the migrations inserted are there; the backup brings its own.
    for table in plan.iter().rev() {
        let sql = sqlx::AssertSqlSafe(format!("DELETE FROM {}", quoted(table.name)));
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    let statements: Vec<String> = plan
        .iter()
        .zip(&targets)
        .map(|(table, columns)| insert_sql(table.name, columns))
        .collect();

    progress.start(header.total_rows());
    let (send, mut rows) = mpsc::channel::<Result<Vec<BackupRow>, FormatError>>(8);
    let file = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_rows(&file, send));
    let mut loaded = 0u64;
    let mut current = usize::MAX;
    while let Some(batch) = rows.recv().await {
        let batch = batch.with_context(|| format!("{} cannot be restored", path.display()))?;
        for row in batch {
            if row.table != current {
                current = row.table;
                progress.table(plan[current].name);
            }
            let mut q: Query<'_, Any, AnyArguments> =
                sqlx::query(sqlx::AssertSqlSafe(statements[row.table].clone()));
            for (cell, column) in row.cells.iter().zip(&targets[row.table]) {
                q = bind(q, cell, column.ty)
                    .with_context(|| format!("{}.{}", plan[row.table].name, column.name))?;
            }
            q.execute(&mut *tx).await?;
            loaded += 1;
            progress.rows(1);
        }
    }
    // The reader only stops early with an error, which it sent first.
    reader
        .await
        .map_err(|e| anyhow::anyhow!("reading the backup failed: {e}"))?;
    anyhow::ensure!(
        loaded == header.total_rows(),
        "the backup ended early: {loaded} of {} rows read",
        header.total_rows()
    );
    tx.commit().await?;
    store
        .migrate()
        .await
        .context("migrating the restored data")?;
    Ok(loaded)
}

/// Sends the rows in batches, and the error if the file turns out bad (an error ends it).
fn read_rows(path: &Path, out: mpsc::Sender<Result<Vec<BackupRow>, FormatError>>) {
    let mut reader = match open(path) {
        Ok(r) => r,
        Err(e) => {
            let _ = out.blocking_send(Err(e));
            return;
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        match reader.next_row() {
            Ok(Some(row)) => {
                batch.push(row);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if out.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            // The trailer verified: the checksum covers every row sent.
            Ok(None) => {
                let _ = out.blocking_send(Ok(batch));
                return;
            }
            Err(e) => {
                let _ = out.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// Names the first table holding rows other than those the migrations insert.
async fn refuse_data(conn: &mut AnyConnection, backend: Backend) -> anyhow::Result<()> {
    let schema = tables::schema_tables(conn, backend).await?;
    for table in TABLES.iter().filter(|t| schema.iter().any(|s| s == t.name)) {
        let filter = table
            .seeded
            .map(|seed| format!(" WHERE NOT ({seed})"))
            .unwrap_or_default();
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {}{filter}",
            quoted(table.name)
        ));
        let rows: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
        anyhow::ensure!(
            rows == 0,
            "the target database is not empty: table {} has {rows} row(s); restore only into a new, empty database (nothing was changed)",
            table.name
        );
    }
    Ok(())
}

fn insert_sql(table: &str, columns: &[Column]) -> String {
    let names: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quoted(table),
        names.join(", "),
        crate::store::placeholders(columns.len())
    )
}

/// Binds `cell` as the target column's exact type (PostgreSQL checks the width).
fn bind<'q>(
    q: Query<'q, Any, AnyArguments>,
    cell: &Cell,
    ty: ColumnType,
) -> anyhow::Result<Query<'q, Any, AnyArguments>> {
    let int = |cell: &Cell| match cell {
        Cell::Int(i) => Some(*i),
        Cell::Bool(b) => Some(i64::from(*b)),
        _ => None,
    };
    let mismatch = || anyhow::anyhow!("expected {ty:?}, the backup holds {}", cell.kind());
    let null = matches!(cell, Cell::Null);
    Ok(match ty {
        ColumnType::Int16 if null => q.bind(None::<i16>),
        ColumnType::Int32 if null => q.bind(None::<i32>),
        ColumnType::Int64 if null => q.bind(None::<i64>),
        ColumnType::Real32 if null => q.bind(None::<f32>),
        ColumnType::Real64 if null => q.bind(None::<f64>),
        ColumnType::Bool if null => q.bind(None::<bool>),
        ColumnType::Text if null => q.bind(None::<String>),
        ColumnType::Blob if null => q.bind(None::<Vec<u8>>),
        ColumnType::Int16 => q.bind(
            int(cell)
                .and_then(|i| i16::try_from(i).ok())
                .ok_or_else(mismatch)?,
        ),
        ColumnType::Int32 => q.bind(
            int(cell)
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(mismatch)?,
        ),
        ColumnType::Int64 => q.bind(int(cell).ok_or_else(mismatch)?),
        ColumnType::Real32 | ColumnType::Real64 => {
            let f = match cell {
                Cell::Real(f) => *f,
                Cell::Int(i) => *i as f64,
                _ => return Err(mismatch()),
            };
            if ty == ColumnType::Real32 {
                q.bind(f as f32)
            } else {
                q.bind(f)
            }
        }
        ColumnType::Bool => q.bind(match cell {
            Cell::Bool(b) => *b,
            Cell::Int(0) => false,
            Cell::Int(1) => true,
            _ => return Err(mismatch()),
        }),
        ColumnType::Text => match cell {
            Cell::Text(s) => q.bind(s.clone()),
            _ => return Err(mismatch()),
        },
        ColumnType::Blob => match cell {
            Cell::Blob(b) => q.bind(b.clone()),
            _ => return Err(mismatch()),
        },
    })
}

/// The audit head and the signing keys were signed and sealed with the secret key of the
/// backed-up service; with another key, `audit verify` would call the log forged and no
/// token could be signed. Checked on the file's rows before anything is written.
fn check_secret_key(master: &MasterKey, header: &Header, rows: &[BackupRow]) -> anyhow::Result<()> {
    let wrong_key = "the secret key in use is not the one the backed-up service ran with; set PORTVAKT_SECRET_KEY to that key (nothing was changed)";
    let text = |row: &BackupRow, column: &str| -> Option<String> {
        let i = header.tables[row.table]
            .columns
            .iter()
            .position(|c| c == column)?;
        match row.cells.get(i)? {
            Cell::Text(s) => Some(s.clone()),
            _ => None,
        }
    };
    let int = |row: &BackupRow, column: &str| -> Option<i64> {
        let i = header.tables[row.table]
            .columns
            .iter()
            .position(|c| c == column)?;
        match row.cells.get(i)? {
            Cell::Int(v) => Some(*v),
            _ => None,
        }
    };
    let audit = Audit::new(master);
    for row in rows {
        match header.tables[row.table].name.as_str() {
            "audit_head" => {
                let (Some(seq), Some(hash), Some(signature)) =
                    (int(row, "seq"), text(row, "hash"), text(row, "signature"))
                else {
                    anyhow::bail!("the backup's audit head is malformed");
                };
                anyhow::ensure!(
                    signature.is_empty() || audit.signer().head_is_valid(seq, &hash, &signature),
                    "{wrong_key}: the audit log's head does not verify"
                );
            }
            "signing_keys" => {
                let (Some(kid), Some(sealed)) = (text(row, "kid"), text(row, "private_key")) else {
                    anyhow::bail!("a signing key in the backup is malformed");
                };
                anyhow::ensure!(
                    crate::crypto::keys::opens(master, &kid, &sealed),
                    "{wrong_key}: signing key {kid} does not open"
                );
            }
            _ => {}
        }
    }
    Ok(())
}
