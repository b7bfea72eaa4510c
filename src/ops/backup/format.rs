//! The backup file: gzip over JSON lines, the same whichever backend wrote it.
//!
//! - line 1, the header: format, schema version, origin, and every table with its columns
//!   and row count. Restore reads it, and refuses a newer schema, before writing anything.
//! - one line per row, `{"t":"users","v":[...]}`, tables in header order (foreign keys
//!   first). Values: JSON integers, numbers, booleans, strings and `null`; blobs as
//!   `{"base64":"..."}`.
//! - the trailer, `{"end":{"rows":N,"sha256":"..."}}`: the SHA-256 of every byte before it.
//!
//! A missing trailer means a truncated file; gzip's own CRC and the checksum catch the rest.

use std::io::{BufRead, Write};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The header's `format`: what makes a file a portvakt backup.
pub const FORMAT: &str = "portvakt-backup";
/// Bumped when a reader of the previous version could misread the file.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    pub portvakt_version: String,
    /// The newest migration applied to the database the backup was taken from.
    pub schema_version: i64,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
    pub tables: Vec<TableHeader>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableHeader {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: u64,
}

impl Header {
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// The end of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trailer {
    pub rows: u64,
    pub sha256: String,
}

/// One value of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => json!(i),
            Cell::Real(f) => json!(f),
            Cell::Bool(b) => json!(b),
            Cell::Text(s) => json!(s),
            Cell::Blob(b) => json!({ "base64": STANDARD.encode(b) }),
        }
    }

    pub fn from_json(v: &Value) -> Option<Cell> {
        Some(match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None => Cell::Real(n.as_f64()?),
            },
            Value::String(s) => Cell::Text(s.clone()),
            Value::Object(o) if o.len() == 1 => {
                Cell::Blob(STANDARD.decode(o.get("base64")?.as_str()?).ok()?)
            }
            _ => return None,
        })
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "null",
            Cell::Int(_) => "an integer",
            Cell::Real(_) => "a number",
            Cell::Bool(_) => "a boolean",
            Cell::Text(_) => "text",
            Cell::Blob(_) => "a blob",
        }
    }
}

/// Why a file is not a backup that can be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a portvakt backup: {0}")]
    Foreign(String),
    #[error("written by a newer portvakt (backup format {0}, this binary reads {FORMAT_VERSION})")]
    NewerFormat(u32),
    #[error("the file is truncated: it ends before the trailer")]
    Truncated,
    #[error("the file is corrupted: {0}")]
    Corrupt(String),
    #[error("reading the file: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for FormatError {
    fn from(e: std::io::Error) -> FormatError {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FormatError::Truncated,
            // What gzip says about damaged compressed data.
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                FormatError::Corrupt(e.to_string())
            }
            _ => FormatError::Io(e),
        }
    }
}

/// Writes lines and keeps the checksum over them.
pub struct Writer<W: Write> {
    out: W,
    digest: digest::Context,
    rows: u64,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, header: &Header) -> std::io::Result<Writer<W>> {
        let mut w = Writer {
            out,
            digest: digest::Context::new(&digest::SHA256),
            rows: 0,
            buf: Vec::with_capacity(4096),
        };
        let line = serde_json::to_vec(header).map_err(std::io::Error::other)?;
        w.write_line(&line)?;
        Ok(w)
    }

    /// The line of one row, ready for [`Writer::raw_row`].
    pub fn encode_row(table: &str, cells: &[Cell]) -> Vec<u8> {
        let v: Vec<Value> = cells.iter().map(Cell::to_json).collect();
        let mut line = Vec::with_capacity(64 + 32 * cells.len());
        // Serialising a map of strings and JSON values cannot fail.
        let mut map = Map::new();
        map.insert("t".into(), Value::String(table.into()));
        map.insert("v".into(), Value::Array(v));
        let _ = serde_json::to_writer(&mut line, &Value::Object(map));
        line
    }

    /// Writes one row line made by [`Writer::encode_row`].
    pub fn raw_row(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.rows += 1;
        self.write_line(line)
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.digest.update(&self.buf);
        self.out.write_all(&self.buf)
    }

    /// Writes the trailer and returns the output and the checksum.
    pub fn finish(mut self) -> std::io::Result<(W, String)> {
        let sha256 = hex(self.digest.clone().finish().as_ref());
        let trailer = json!({ "end": Trailer { rows: self.rows, sha256: sha256.clone() } });
        let mut line = trailer.to_string().into_bytes();
        line.push(b'\n');
        self.out.write_all(&line)?;
        Ok((self.out, sha256))
    }
}

/// One row read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Index into the header's tables.
    pub table: usize,
    pub cells: Vec<Cell>,
}

/// Reads a backup line by line, checking order, counts and, at the end, the checksum.
pub struct Reader<R: BufRead> {
    input: R,
    digest: digest::Context,
    header: Header,
    line: String,
    table: usize,
    counts: Vec<u64>,
    trailer: Option<Trailer>,
}

impl<R: BufRead> Reader<R> {
    /// Reads and checks the header; nothing else is read yet.
    pub fn open(mut input: R) -> Result<Reader<R>, FormatError> {
        let mut line = String::new();
        let n = input.read_line(&mut line).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                FormatError::Foreign(format!("{e}"))
            }
            _ => FormatError::from(e),
        })?;
        if n == 0 {
            return Err(FormatError::Foreign("the file is empty".into()));
        }
        let value: Value = serde_json::from_str(&line)
            .map_err(|_| FormatError::Foreign("the first line is not a backup header".into()))?;
        if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(FormatError::Foreign(
                "the first line is not a backup header".into(),
            ));
        }
        let version = value.get("format_version").and_then(Value::as_u64);
        match version.map(u32::try_from) {
            Some(Ok(v)) if v == FORMAT_VERSION => {}
            Some(Ok(v)) if v > FORMAT_VERSION => return Err(FormatError::NewerFormat(v)),
            _ => return Err(FormatError::Corrupt("unknown format version".into())),
        }
        let header: Header = serde_json::from_value(value)
            .map_err(|e| FormatError::Corrupt(format!("the header is malformed: {e}")))?;
        let mut digest = digest::Context::new(&digest::SHA256);
        digest.update(line.as_bytes());
        let counts = vec![0; header.tables.len()];
        Ok(Reader {
            input,
            digest,
            header,
            line,
            table: 0,
            counts,
            trailer: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The trailer, once [`Reader::next_row`] has returned `None`.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// The next row, or `None` after a trailer whose counts and checksum match.
    pub fn next_row(&mut self) -> Result<Option<Row>, FormatError> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        self.line.clear();
        if self.input.read_line(&mut self.line)? == 0 || !self.line.ends_with('\n') {
            return Err(FormatError::Truncated);
        }
        let corrupt = |what: String| FormatError::Corrupt(what);
        let value: Value = serde_json::from_str(&self.line)
            .map_err(|_| corrupt("a line is not valid JSON".into()))?;
        if let Some(end) = value.get("end") {
            let trailer: Trailer = serde_json::from_value(end.clone())
                .map_err(|_| corrupt("the trailer is malformed".into()))?;
            return self.finish(trailer).map(|()| None);
        }
        let (Some(name), Some(values)) = (
            value.get("t").and_then(Value::as_str),
            value.get("v").and_then(Value::as_array),
        ) else {
            return Err(corrupt("a line is neither a row nor the trailer".into()));
        };
        // Tables come in header order, each in one run: restore depends on that order.
        let table = (self.table..self.header.tables.len())
            .find(|&i| self.header.tables[i].name == name)
            .ok_or_else(|| corrupt(format!("a row of table `{name}` is out of place")))?;
        self.table = table;
        let columns = &self.header.tables[table].columns;
        if values.len() != columns.len() {
            return Err(corrupt(format!(
                "a row of `{name}` has {} values for {} columns",
                values.len(),
                columns.len()
            )));
        }
        let cells = values
            .iter()
            .map(Cell::from_json)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt(format!("a row of `{name}` holds an unknown value")))?;
        self.counts[table] += 1;
        self.digest.update(self.line.as_bytes());
        Ok(Some(Row { table, cells }))
    }

    fn finish(&mut self, trailer: Trailer) -> Result<(), FormatError> {
        let sha256 = hex(self.digest.clone().finish().as_ref());
        if sha256 != trailer.sha256 {
            return Err(FormatError::Corrupt(
                "the checksum does not match the content".into(),
            ));
        }
        for (t, found) in self.header.tables.iter().zip(&self.counts) {
            if t.rows != *found {
                return Err(FormatError::Corrupt(format!(
                    "table `{}` has {found} rows, the header says {}",
                    t.name, t.rows
                )));
            }
        }
        if self.counts.iter().sum::<u64>() != trailer.rows {
            return Err(FormatError::Corrupt(
                "the trailer's row count does not match".into(),
            ));
        }
        // Reading to the end makes gzip check its own CRC, and nothing may follow the trailer.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut self.input, &mut rest)?;
        if !rest.is_empty() {
            return Err(FormatError::Corrupt(
                "there is data after the trailer".into(),
            ));
        }
        self.trailer = Some(trailer);
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    crate::crypto::hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            portvakt_version: "0.0.0".into(),
            schema_version: 4,
            backend: "sqlite".into(),
            created_at: 1,
            tables: vec![
                TableHeader {
                    name: "a".into(),
                    columns: vec!["x".into(), "y".into()],
                    rows: 2,
                },
                TableHeader {
                    name: "b".into(),
                    columns: vec!["z".into()],
                    rows: 1,
                },
            ],
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        w.raw_row(&Writer::<Vec<u8>>::encode_row(
            "a",
            &[Cell::Int(i64::MIN), Cell::Text("é\n\"".into())],
        ))
        .unwrap();
        w.raw_row(&Writer::<Vec<u8>>::encode_row(
            "a",
            &[Cell::Null, Cell::Blob(vec![0, 255, 10])],
        ))
        .unwrap();
        w.raw_row(&Writer::<Vec<u8>>::encode_row("b", &[Cell::Bool(true)]))
            .unwrap();
        w.finish().unwrap().0
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Row>, FormatError> {
        let mut r = Reader::open(bytes)?;
        let mut rows = Vec::new();
        while let Some(row) = r.next_row()? {
            rows.push(row);
        }
        Ok(rows)
    }

    #[test]
    fn every_kind_of_value_survives_the_round_trip() {
        let rows = read_all(&sample()).unwrap();
        assert_eq!(
            rows,
            vec![
                Row {
                    table: 0,
                    cells: vec![Cell::Int(i64::MIN), Cell::Text("é\n\"".into())]
                },
                Row {
                    table: 0,
                    cells: vec![Cell::Null, Cell::Blob(vec![0, 255, 10])]
                },
                Row {
                    table: 1,
                    cells: vec![Cell::Bool(true)]
                },
            ]
        );
        assert_eq!(
            Cell::from_json(&Cell::Real(1.5).to_json()),
            Some(Cell::Real(1.5))
        );
    }

    #[test]
    fn a_file_cut_anywhere_is_truncated_or_corrupt_never_accepted() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(read_all(&bytes[..cut]).is_err(), "accepted a cut at {cut}");
        }
        let header_len = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        assert!(matches!(
            read_all(&bytes[..header_len]),
            Err(FormatError::Truncated)
        ));
    }

    #[test]
    fn a_changed_value_fails_the_checksum() {
        let text = String::from_utf8(sample()).unwrap();
        let tampered = text.replace("true", "false");
        let err = read_all(tampered.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn counts_must_match_the_header() {
        let mut h = header();
        h.tables[1].rows = 2;
        let mut w = Writer::new(Vec::new(), &h).unwrap();
        w.raw_row(&Writer::<Vec<u8>>::encode_row("b", &[Cell::Int(1)]))
            .unwrap();
        let bytes = w.finish().unwrap().0;
        let err = read_all(&bytes).unwrap_err();
        assert!(err.to_string().contains("table `a` has 0 rows"), "{err}");
    }

    #[test]
    fn rows_out_of_table_order_are_refused() {
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        w.raw_row(&Writer::<Vec<u8>>::encode_row("b", &[Cell::Int(1)]))
            .unwrap();
        w.raw_row(&Writer::<Vec<u8>>::encode_row(
            "a",
            &[Cell::Int(1), Cell::Null],
        ))
        .unwrap();
        let bytes = w.finish().unwrap().0;
        assert!(
            read_all(&bytes)
                .unwrap_err()
                .to_string()
                .contains("out of place")
        );
    }

    #[test]
    fn other_files_are_foreign_and_newer_formats_are_named() {
        assert!(matches!(read_all(b""), Err(FormatError::Foreign(_))));
        assert!(matches!(
            read_all(b"{\"hello\":1}\n"),
            Err(FormatError::Foreign(_))
        ));
        assert!(matches!(
            read_all(b"PK\x03\x04..."),
            Err(FormatError::Foreign(_))
        ));
        let newer = format!("{{\"format\":\"{FORMAT}\",\"format_version\":99}}\n");
        assert!(matches!(
            read_all(newer.as_bytes()),
            Err(FormatError::NewerFormat(99))
        ));
    }

    #[test]
    fn nothing_may_follow_the_trailer() {
        let mut bytes = sample();
        bytes.extend_from_slice(b"{\"t\":\"b\",\"v\":[1]}\n");
        assert!(read_all(&bytes).is_err());
    }
}
