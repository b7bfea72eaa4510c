//! `portvakt import FILE`: moves users from another application, with the password hashes it
//! made (see `crypto::legacy`), so nobody has to reset a password. Nothing is hashed here:
//! hashes are checked for a known format and sane costs, stored as they are, and replaced by
//! argon2id at each user's next successful login.
//!
//! Rows are identified by email (case-insensitive), so running the same file again updates
//! the accounts instead of duplicating them. A bad row is reported with its line number and
//! skipped; the others go in, in transactions of [`BATCH`] rows. Each batch writes one
//! `users_imported` audit entry (counts and line range) in its own transaction: an entry per
//! user would put 100,000 signed links in the audit chain for one operator action.

pub mod row;
pub mod write;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;

use crate::accounts::UserId;
use crate::audit::{Action, Audit, Entry};
use crate::auth::sessions;
use crate::ops::backup::Progress;
use crate::store::{Store, now_micros};
use row::{RawCsv, RawJson, Row};
use write::Written;

/// Rows per transaction.
pub const BATCH: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header line naming the columns, then one user per line; roles separated by `;`.
    Csv,
    /// One JSON object per line; roles as an array.
    Jsonl,
}

impl Format {
    /// From the file's extension: `.csv`, or `.jsonl` / `.ndjson` / `.json`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: u64,
    pub updated: u64,
    /// `line N: reason` for each row left out, in file order.
    pub rejected: Vec<String>,
}

/// Imports `path` into the database. Rows already committed stay if a later batch fails
/// (running the file again finishes the job).
pub async fn run(
    store: &Store,
    audit: &Audit,
    path: &Path,
    format: Format,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    progress.start(count_lines(path)?);
    progress.table("import");
    let roles: HashSet<String> = {
        let mut conn = store.pool().acquire().await?;
        write::role_names(&mut conn).await?.into_iter().collect()
    };
    let mut summary = Summary::default();
    let mut batch: Vec<(u64, Row)> = Vec::with_capacity(BATCH);
    let mut reader = Reader::new(BufReader::new(file), format)?;
    while let Some((line, parsed)) = reader.next_row() {
        match parsed.and_then(|row| known_roles(row, &roles)) {
            Ok(row) => batch.push((line, row)),
            Err(reason) => summary.rejected.push(format!("line {line}: {reason}")),
        }
        if batch.len() == BATCH {
            write_batch(store, audit, &mut batch, &mut summary).await?;
            progress.rows(BATCH as u64);
        }
    }
    let last = batch.len() as u64;
    write_batch(store, audit, &mut batch, &mut summary).await?;
    progress.rows(last);
    progress.done();
    // Rows refused while writing were listed after the later rows refused while reading.
    summary.rejected.sort_by_key(|r| line_of(r));
    Ok(summary)
}

/// N of a `line N: reason`.
fn line_of(rejection: &str) -> u64 {
    rejection
        .strip_prefix("line ")
        .and_then(|r| r.split_once(':'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

fn known_roles(row: Row, roles: &HashSet<String>) -> Result<Row, String> {
    match row.roles.iter().find(|r| !roles.contains(*r)) {
        Some(unknown) => Err(format!("roles: no role is named {unknown:?}")),
        None => Ok(row),
    }
}

async fn write_batch(
    store: &Store,
    audit: &Audit,
    batch: &mut Vec<(u64, Row)>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let (Some((first, _)), Some((last, _))) = (batch.first(), batch.last()) else {
        return Ok(());
    };
    let (first, last) = (*first, *last);
    let now = now_micros();
    let mut tx = store.begin_write().await?;
    let mut created = 0u64;
    let mut updated = Vec::new();
    let mut ended = 0u64;
    for (line, row) in batch.iter() {
        if write::demotes_last_admin(&mut tx, row).await? {
            summary.rejected.push(format!(
                "line {line}: roles: this is the last enabled admin; it keeps `admin`"
            ));
            continue;
        }
        match write::upsert(&mut tx, row, now).await.with_context(|| {
            format!("line {line}: writing the user failed; lines before {first} were imported")
        })? {
            Written::Created => created += 1,
            Written::Updated {
                id,
                password_replaced,
            } => {
                // A new password from the file ends the sessions opened with the old one, as a
                // password change does.
                if password_replaced && let Some(user) = UserId::parse(&id) {
                    ended += sessions::revoke_all_of_user(
                        store,
                        &mut tx,
                        user,
                        None,
                        "password_imported",
                    )
                    .await?
                    .len() as u64;
                }
                updated.push(id)
            }
        }
    }
    // Instances serving from PostgreSQL drop their cached profiles of these users at commit;
    // a SQLite service (another process) shows the change once its cache entries expire.
    store
        .announce(&mut tx, crate::accounts::cache::INVALIDATION_KIND, &updated)
        .await?;
    let updated = updated.len() as u64;
    let entry = Entry::new(Action::UsersImported)
        .detail("via", "cli")
        .detail("created", created)
        .detail("updated", updated)
        .detail("sessions_ended", ended)
        .detail("first_line", first)
        .detail("last_line", last);
    audit.record(&mut tx, entry).await?;
    tx.commit().await?;
    summary.created += created;
    summary.updated += updated;
    batch.clear();
    Ok(())
}

/// For the progress bar's length: one user per line, less the CSV header.
fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut lines = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(lines);
        }
        lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        let n = buf.len();
        reader.consume(n);
    }
}

/// Rows of either format with their line numbers (1-based, as an editor shows them).
enum Reader<R: Read> {
    Csv {
        reader: csv::Reader<CrlfAsLf<R>>,
        headers: csv::StringRecord,
        record: csv::StringRecord,
    },
    Jsonl {
        lines: std::io::Lines<BufReader<R>>,
        line: u64,
    },
}

/// The columns a CSV header may name; the first two are required.
const COLUMNS: [&str; 6] = [
    "email",
    "password_hash",
    "name",
    "roles",
    "created_at",
    "email_verified",
];

impl<R: Read> Reader<R> {
    fn new(input: BufReader<R>, format: Format) -> anyhow::Result<Reader<R>> {
        match format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .trim(csv::Trim::Headers)
                    .from_reader(CrlfAsLf { input, cr: false });
                let headers = reader
                    .headers()
                    .context("line 1: cannot read the CSV header")?
                    .clone();
                if let Some(unknown) = headers.iter().find(|h| !COLUMNS.contains(h)) {
                    anyhow::bail!(
                        "line 1: unknown column {unknown:?} (columns: {})",
                        COLUMNS.join(", ")
                    );
                }
                for required in &COLUMNS[..2] {
                    anyhow::ensure!(
                        headers.iter().any(|h| h == *required),
                        "line 1: the header has no {required} column (columns: {})",
                        COLUMNS.join(", ")
                    );
                }
                Ok(Reader::Csv {
                    reader,
                    headers,
                    record: csv::StringRecord::new(),
                })
            }
            Format::Jsonl => Ok(Reader::Jsonl {
                lines: input.lines(),
                line: 0,
            }),
        }
    }

    fn next_row(&mut self) -> Option<(u64, Result<Row, String>)> {
        match self {
            Reader::Csv {
                reader,
                headers,
                record,
            } => match reader.read_record(record) {
                Ok(false) => None,
                Ok(true) => {
                    let line = record.position().map_or(0, csv::Position::line);
                    let parsed = record
                        .deserialize::<RawCsv>(Some(headers))
                        .map_err(|e| csv_reason(&e))
                        .and_then(RawCsv::validate);
                    Some((line, parsed))
                }
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    Some((line, Err(csv_reason(&e))))
                }
            },
            Reader::Jsonl { lines, line } => loop {
                *line += 1;
                match lines.next()? {
                    Ok(text) => {
                        // A byte order mark, as Windows tools write (the CSV reader skips its own).
                        let text = match *line {
                            1 => text.strip_prefix('\u{feff}').unwrap_or(&text),
                            _ => &text,
                        };
                        if text.trim().is_empty() {
                            continue;
                        }
                        let parsed = serde_json::from_str::<RawJson>(text)
                            .map_err(|e| format!("not a user record: {}", json_reason(&e)))
                            .and_then(RawJson::validate);
                        return Some((*line, parsed));
                    }
                    Err(e) => return Some((*line, Err(format!("unreadable line: {e}")))),
                }
            },
        }
    }
}

/// The input with each CRLF read as LF. The csv crate numbers the records of CRLF input one
/// line short (rust-csv issue 395), and CRLF is what RFC 4180, spreadsheets and Python's `csv`
/// module write. No value of a valid row holds a CR, so nothing else changes.
struct CrlfAsLf<R> {
    input: BufReader<R>,
    /// The last byte read was a CR, not yet passed on.
    cr: bool,
}

impl<R: Read> Read for CrlfAsLf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                // A CR at the very end stays.
                if std::mem::take(&mut self.cr) {
                    out[0] = b'\r';
                    return Ok(1);
                }
                return Ok(0);
            }
            let (mut i, mut n) = (0, 0);
            while i < buf.len() && n < out.len() {
                let b = buf[i];
                if self.cr {
                    self.cr = false;
                    if b != b'\n' {
                        // A CR not before LF is passed on; `b` is looked at again.
                        out[n] = b'\r';
                        n += 1;
                        continue;
                    }
                } else if b == b'\r' {
                    self.cr = true;
                    i += 1;
                    continue;
                }
                out[n] = b;
                n += 1;
                i += 1;
            }
            self.input.consume(i);
            if n > 0 {
                return Ok(n);
            }
        }
    }
}

/// serde's message without the position (the line is reported already) and without the
/// value (it could be a password hash).
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    match text.split_once(": ") {
        Some((head, _)) if head.starts_with("invalid type") => head.to_string(),
        _ => text.to_string(),
    }
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.kind().to_string(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => "unreadable row".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_is_read_as_lf_and_other_crs_stay() {
        for (input, expected) in [
            ("a\r\nb\r\n", "a\nb\n"),
            ("a\rb\r\r\nc\r", "a\rb\r\nc\r"),
            ("\r\r\r\n", "\r\r\n"),
        ] {
            // Read a byte at a time too, so a CR at the end of one read meets its LF in the next.
            for chunk in [1, 3, 64] {
                let mut reader = CrlfAsLf {
                    input: BufReader::with_capacity(2, input.as_bytes()),
                    cr: false,
                };
                let mut got = Vec::new();
                let mut buf = vec![0u8; chunk];
                loop {
                    let n = reader.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    expected,
                    "{input:?} by {chunk}"
                );
            }
        }
    }
}
