//! Taking a backup: one snapshot read of every table while the service keeps writing, streamed
//! to a private temporary file beside the target and renamed into place when complete.
//!
//! The snapshot is one read transaction (`Store::begin_snapshot`): SQLite in WAL mode keeps
//! the state of its first read without blocking writers; PostgreSQL runs it `REPEATABLE READ
//! READ ONLY`. Compression, hashing and file I/O run on a blocking thread fed over a channel.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::mpsc;

use super::format::{Cell, FORMAT, FORMAT_VERSION, Header, TableHeader, Writer};
use super::progress::Progress;
use super::tables::{self, Column, ColumnType, TABLES, quoted};
use crate::store::{Store, now_micros};

/// Rows handed to the writer thread at a time.
const BATCH: usize = 256;

/// A backup file that was written completely.
#[derive(Debug, Clone)]
pub struct Dumped {
    pub created_at: i64,
    pub bytes: u64,
    pub sha256: String,
    pub rows: u64,
}

enum Chunk {
    Rows(Vec<Vec<u8>>),
    Done,
}

/// Writes a backup of `store` to `out`, which must not exist yet.
#[tracing::instrument(skip_all, fields(file = %out.display()))]
pub async fn dump(store: &Store, out: &Path, progress: &Progress) -> anyhow::Result<Dumped> {
    anyhow::ensure!(
        !out.exists(),
        "{} already exists; not overwriting it",
        out.display()
    );
    let tmp = TempFile(Some(temp_path(out)?));
    let result = dump_to(store, tmp.path(), progress).await;
    progress.done();
    let dumped = result?;
    std::fs::rename(tmp.path(), out)
        .with_context(|| format!("cannot move the backup to {}", out.display()))?;
    tmp.keep();
    sync_dir(out);
    let bytes = std::fs::metadata(out)?.len();
    Ok(Dumped { bytes, ..dumped })
}

/// The temporary file, deleted unless kept: on an error, and also when the backup is
/// abandoned half-way (the task is aborted at shutdown and this future dropped).
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A hidden name beside `out`: the rename stays on one file system, and a crash leaves at
/// worst a dot-file, never a partial backup under the final name.
fn temp_path(out: &Path) -> anyhow::Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{} is not a file name", out.display()))?;
    let tmp = format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    );
    Ok(out.with_file_name(tmp))
}

async fn dump_to(store: &Store, tmp: &Path, progress: &Progress) -> anyhow::Result<Dumped> {
    let backend = store.backend();
    let schema_version = store.applied_schema_version().await?;
    let mut tx = store.begin_snapshot().await?;
    let created_at = now_micros();
    let schema = tables::schema_tables(&mut tx, backend).await?;
    let unknown = tables::unknown(&schema);
    anyhow::ensure!(
        unknown.is_empty(),
        "the schema has tables backups do not know about ({}): this binary cannot back up this database completely",
        unknown.join(", ")
    );
    // A database not yet migrated to this binary's schema lacks the newer tables.
    let mut plan: Vec<(&tables::Table, Vec<Column>)> = Vec::new();
    let mut header_tables = Vec::new();
    for t in TABLES.iter().filter(|t| schema.iter().any(|s| s == t.name)) {
        let columns = tables::columns(&mut tx, backend, t.name).await?;
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", quoted(t.name)));
        let rows: i64 = sqlx::query_scalar(sql).fetch_one(&mut *tx).await?;
        header_tables.push(TableHeader {
            name: t.name.to_string(),
            columns: columns.iter().map(|c| c.name.clone()).collect(),
            rows: u64::try_from(rows).unwrap_or(0),
        });
        plan.push((t, columns));
    }
    let header = Header {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        portvakt_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        backend: backend.name().into(),
        created_at,
        tables: header_tables,
    };
    progress.start(header.total_rows());

    let (tx_rows, rx_rows) = mpsc::channel::<Chunk>(8);
    let writer = {
        let (tmp, header) = (tmp.to_path_buf(), header.clone());
        tokio::task::spawn_blocking(move || write_file(&tmp, &header, rx_rows))
    };
    let sent = send_rows(&mut tx, &plan, &header, &tx_rows, progress).await;
    // The read is over either way; the snapshot was only read.
    let _ = tx.rollback().await;
    if let Ok(()) = &sent {
        let _ = tx_rows.send(Chunk::Done).await;
    }
    drop(tx_rows);
    let written = writer
        .await
        .map_err(|e| anyhow::anyhow!("the backup writer failed: {e}"))?;
    // A failed write ends the reading too; its error says more than the closed channel.
    let sha256 = match (sent, written) {
        (Ok(()), Ok(sha)) => sha,
        (_, Err(e)) => return Err(e),
        (Err(e), Ok(_)) => return Err(e),
    };
    Ok(Dumped {
        created_at,
        bytes: 0,
        sha256,
        rows: header.total_rows(),
    })
}

async fn send_rows(
    tx: &mut sqlx::AnyConnection,
    plan: &[(&tables::Table, Vec<Column>)],
    header: &Header,
    out: &mpsc::Sender<Chunk>,
    progress: &Progress,
) -> anyhow::Result<()> {
    for ((table, columns), expected) in plan.iter().zip(&header.tables) {
        progress.table(table.name);
        let list: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} ORDER BY {}",
            list.join(", "),
            quoted(table.name),
            table.order_by
        ));
        let mut rows = sqlx::query(sql).fetch(&mut *tx);
        let mut batch = Vec::with_capacity(BATCH);
        let mut count = 0u64;
        while let Some(row) = rows.try_next().await? {
            let cells = columns
                .iter()
                .enumerate()
                .map(|(i, c)| cell(&row, i, c.ty))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("reading a row of {}", table.name))?;
            batch.push(Writer::<Vec<u8>>::encode_row(table.name, &cells));
            count += 1;
            if batch.len() == BATCH {
                progress.rows(BATCH as u64);
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                out.send(Chunk::Rows(full))
                    .await
                    .map_err(|_| anyhow::anyhow!("the backup writer stopped"))?;
            }
        }
        progress.rows(batch.len() as u64);
        if !batch.is_empty() {
            out.send(Chunk::Rows(batch))
                .await
                .map_err(|_| anyhow::anyhow!("the backup writer stopped"))?;
        }
        anyhow::ensure!(
            count == expected.rows,
            "{} changed during the backup ({} rows counted, {count} read): the snapshot was not consistent",
            table.name,
            expected.rows
        );
    }
    Ok(())
}

/// Reads one column as the type its table declares.
fn cell(row: &AnyRow, i: usize, ty: ColumnType) -> Result<Cell, sqlx::Error> {
    let value = match ty {
        ColumnType::Int16 => row
            .try_get::<Option<i16>, _>(i)?
            .map(|v| Cell::Int(v.into())),
        ColumnType::Int32 => row
            .try_get::<Option<i32>, _>(i)?
            .map(|v| Cell::Int(v.into())),
        ColumnType::Int64 => row.try_get::<Option<i64>, _>(i)?.map(Cell::Int),
        ColumnType::Real32 => row
            .try_get::<Option<f32>, _>(i)?
            .map(|v| Cell::Real(v.into())),
        ColumnType::Real64 => row.try_get::<Option<f64>, _>(i)?.map(Cell::Real),
        ColumnType::Bool => row.try_get::<Option<bool>, _>(i)?.map(Cell::Bool),
        ColumnType::Text => row.try_get::<Option<String>, _>(i)?.map(Cell::Text),
        ColumnType::Blob => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Cell::Blob),
    };
    Ok(value.unwrap_or(Cell::Null))
}

/// The blocking half: gzip, checksum and the file itself. Returns the checksum. Deletes
/// its file when it fails, also when abandoned after the other half's cleanup already ran.
fn write_file(tmp: &Path, header: &Header, rows: mpsc::Receiver<Chunk>) -> anyhow::Result<String> {
    let result = write_rows(tmp, header, rows);
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

fn write_rows(
    tmp: &Path,
    header: &Header,
    mut rows: mpsc::Receiver<Chunk>,
) -> anyhow::Result<String> {
    let file = create_private(tmp)?;
    let gz = GzEncoder::new(
        BufWriter::with_capacity(1 << 16, file),
        Compression::default(),
    );
    let mut w = Writer::new(gz, header)?;
    loop {
        match rows.blocking_recv() {
            Some(Chunk::Rows(lines)) => {
                for line in &lines {
                    w.raw_row(line)
                        .with_context(|| format!("cannot write {}", tmp.display()))?;
                }
            }
            Some(Chunk::Done) => break,
            None => anyhow::bail!("the backup was abandoned before it was complete"),
        }
    }
    let (gz, sha256) = w.finish()?;
    let file = gz
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.sync_all()?;
    Ok(sha256)
}

/// Backups hold password hashes: readable by their owner only, from the first byte.
fn create_private(path: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Makes the rename itself durable. Best effort: not every platform can sync a directory.
fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}
