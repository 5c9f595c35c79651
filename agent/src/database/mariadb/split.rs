//! Splitting one `mariadb-dump` output into per-object streams at its section comments,
//! counting each table's rows on the way.

use std::io::{self, BufRead, BufReader, Read};

use crate::database::{DatabaseError, StreamSink, encode_name};

use super::{FOOTER_STREAM, HEADER_STREAM, MariaDbDatabase, MariaDbTable, Part, PartKind};

/// A section comment of `mariadb-dump` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Marker {
    Database(String),
    Table(String),
    Data(String),
    ViewStub(String),
    View(String),
    Events,
    Routines,
    Footer,
}

/// Builds a marker from the name in its comment.
pub(super) type MakeMarker = fn(String) -> Marker;

pub(super) fn quoted_name(rest: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(rest);
    let inner = text.trim_end().strip_suffix('`')?;
    Some(inner.replace("``", "`"))
}

pub(super) fn marker(line: &[u8]) -> Option<Marker> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let named: [(&[u8], MakeMarker); 6] = [
        (b"-- Current Database: `", Marker::Database),
        (b"-- Table structure for table `", Marker::Table),
        (b"-- Dumping data for table `", Marker::Data),
        (b"-- Temporary table structure for view `", Marker::ViewStub),
        (b"-- Temporary view structure for view `", Marker::ViewStub),
        (b"-- Final view structure for view `", Marker::View),
    ];
    for (prefix, make) in named {
        if let Some(rest) = line.strip_prefix(prefix) {
            return quoted_name(rest).map(make);
        }
    }
    if line.starts_with(b"-- Dumping events for database ") {
        Some(Marker::Events)
    } else if line.starts_with(b"-- Dumping routines for database ") {
        Some(Marker::Routines)
    } else if line.starts_with(b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;") || line.starts_with(b"-- Dump completed") {
        Some(Marker::Footer)
    } else {
        None
    }
}

/// Counts the rows of `INSERT INTO … VALUES (…),(…);` statements, line by line.
#[derive(Debug, Default)]
pub(super) struct RowCounter {
    in_insert: bool,
    depth: u32,
    quote: bool,
    escape: bool,
    pub(super) rows: u64,
}

impl RowCounter {
    pub(super) fn feed(&mut self, line: &[u8]) {
        let mut bytes = line;
        if !self.in_insert {
            let Some(rest) = line.strip_prefix(b"INSERT INTO ") else {
                return;
            };
            // Skip the quoted table name (backquotes doubled inside).
            let mut i = 1;
            while i < rest.len() {
                if rest[i] == b'`' {
                    if rest.get(i + 1) == Some(&b'`') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            self.in_insert = true;
            self.depth = 0;
            self.quote = false;
            self.escape = false;
            bytes = rest.get(i + 1..).unwrap_or_default();
        }
        for &b in bytes {
            if self.quote {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'\'' {
                    self.quote = false;
                }
                continue;
            }
            match b {
                b'\'' => self.quote = true,
                b'(' => {
                    if self.depth == 0 {
                        self.rows += 1;
                    }
                    self.depth += 1;
                }
                b')' => self.depth = self.depth.saturating_sub(1),
                b';' if self.depth == 0 => {
                    self.in_insert = false;
                    return;
                }
                _ => {}
            }
        }
    }
}

/// Reads a dump line by line, remembering the line that starts the next section.
pub(super) struct Splitter<R> {
    input: R,
    pending: Option<Vec<u8>>,
    delimiter: bool,
    completed: bool,
}

impl<R: BufRead> Splitter<R> {
    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        if let Some(line) = self.pending.take() {
            return Ok(Some(line));
        }
        let mut line = Vec::new();
        if self.input.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line))
    }

    fn marker(&self, line: &[u8]) -> Option<Marker> {
        if self.delimiter { None } else { marker(line) }
    }

    fn track(&mut self, line: &[u8]) {
        let trimmed = line.trim_ascii();
        if trimmed == b"DELIMITER ;;" {
            self.delimiter = true;
        } else if trimmed == b"DELIMITER ;" {
            self.delimiter = false;
        } else if trimmed.starts_with(b"-- Dump completed") {
            self.completed = true;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SectionKind {
    Header,
    Table(String),
    Other,
    Footer,
}

/// One section of the dump as a reader: ends before the line that starts the next section.
pub(super) struct Section<'a, R> {
    split: &'a mut Splitter<R>,
    kind: SectionKind,
    line: Vec<u8>,
    pos: usize,
    started: bool,
    ended: bool,
    data: bool,
    counter: RowCounter,
}

impl<'a, R: BufRead> Section<'a, R> {
    fn new(split: &'a mut Splitter<R>, kind: SectionKind) -> Self {
        Section {
            split,
            kind,
            line: Vec::new(),
            pos: 0,
            started: false,
            ended: false,
            data: false,
            counter: RowCounter::default(),
        }
    }
}

impl<R: BufRead> Read for Section<'_, R> {
    /// Fills `buf` with as many lines as fit (one line per call would mean one write per
    /// line in the sink).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.pos < self.line.len() {
                let n = (buf.len() - filled).min(self.line.len() - self.pos);
                buf[filled..filled + n].copy_from_slice(&self.line[self.pos..self.pos + n]);
                self.pos += n;
                filled += n;
                continue;
            }
            if self.ended {
                break;
            }
            let Some(line) = self.split.next_line()? else {
                self.ended = true;
                break;
            };
            let first = !self.started;
            self.started = true;
            match (self.split.marker(&line), &self.kind) {
                _ if first => {}
                (_, SectionKind::Footer) | (None, _) => {}
                (Some(Marker::Data(t)), SectionKind::Table(name)) if t == *name => self.data = true,
                (Some(_), _) => {
                    self.split.pending = Some(line);
                    self.ended = true;
                    break;
                }
            }
            self.split.track(&line);
            if self.data {
                self.counter.feed(&line);
            }
            self.line = line;
            self.pos = 0;
        }
        Ok(filled)
    }
}

pub(super) fn put_section<R: BufRead>(
    sink: &mut dyn StreamSink,
    split: &mut Splitter<R>,
    name: &str,
    kind: SectionKind,
) -> Result<u64, DatabaseError> {
    let mut section = Section::new(split, kind);
    sink.put(name, &mut section).map_err(|source| DatabaseError::Sink {
        stream: name.to_string(),
        source,
    })?;
    Ok(section.counter.rows)
}

pub(super) fn unexpected(line: &[u8]) -> DatabaseError {
    DatabaseError::DumpFailed {
        stream: "mariadb/db".into(),
        reason: format!(
            "unexpected line in mariadb-dump output: {}",
            String::from_utf8_lossy(&line[..line.len().min(200)]).trim_end()
        ),
    }
}

/// Splits `mariadb-dump --databases` output into streams; returns the databases and parts.
pub(super) fn split_dump(
    input: &mut dyn Read,
    sink: &mut dyn StreamSink,
) -> Result<(Vec<MariaDbDatabase>, Vec<Part>), DatabaseError> {
    let mut split = Splitter {
        input: BufReader::with_capacity(1 << 20, input),
        pending: None,
        delimiter: false,
        completed: false,
    };
    put_section(sink, &mut split, HEADER_STREAM, SectionKind::Header)?;
    let mut databases: Vec<MariaDbDatabase> = Vec::new();
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    while let Some(line) = split.next_line()? {
        let Some(m) = split.marker(&line) else {
            return Err(unexpected(&line));
        };
        if m == Marker::Footer {
            split.pending = Some(line);
            put_section(sink, &mut split, FOOTER_STREAM, SectionKind::Footer)?;
            continue;
        }
        if let Marker::Database(name) = m {
            let index = match databases.iter().position(|d| d.name == name) {
                Some(i) => i,
                None => {
                    databases.push(MariaDbDatabase {
                        name,
                        create: String::new(),
                        tables: Vec::new(),
                    });
                    databases.len() - 1
                }
            };
            current = Some(index);
            // `CREATE DATABASE …;` and `USE …;` follow; the restore writes its own.
            while let Some(line) = split.next_line()? {
                if split.marker(&line).is_some() {
                    split.pending = Some(line);
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.starts_with("CREATE DATABASE ") {
                    databases[index].create = text.to_string();
                } else if !(text.is_empty() || text.starts_with("--") || text.starts_with("USE ")) {
                    return Err(unexpected(&line));
                }
            }
            continue;
        }
        let Some(db) = current else {
            return Err(unexpected(&line));
        };
        let prefix = format!("mariadb/db/{}", encode_name(&databases[db].name));
        let (kind, object, stream, section) = match m {
            Marker::Table(t) | Marker::Data(t) => {
                let stream = format!("{prefix}/table/{}.sql", encode_name(&t));
                (PartKind::Table, Some(t.clone()), stream, SectionKind::Table(t))
            }
            Marker::ViewStub(v) => {
                let stream = format!("{prefix}/view-stub/{}.sql", encode_name(&v));
                (PartKind::ViewStub, Some(v), stream, SectionKind::Other)
            }
            Marker::View(v) => {
                let stream = format!("{prefix}/view/{}.sql", encode_name(&v));
                (PartKind::View, Some(v), stream, SectionKind::Other)
            }
            Marker::Events => (
                PartKind::Events,
                None,
                format!("{prefix}/events.sql"),
                SectionKind::Other,
            ),
            Marker::Routines => (
                PartKind::Routines,
                None,
                format!("{prefix}/routines.sql"),
                SectionKind::Other,
            ),
            Marker::Database(_) | Marker::Footer => unreachable!("handled above"),
        };
        split.pending = Some(line);
        let rows = put_section(sink, &mut split, &stream, section)?;
        if kind == PartKind::Table {
            let name = object.clone().unwrap_or_default();
            databases[db].tables.push(MariaDbTable { name, rows });
        }
        parts.push(Part {
            stream,
            database: databases[db].name.clone(),
            kind,
            object,
        });
    }
    if !split.completed {
        return Err(DatabaseError::DumpFailed {
            stream: "mariadb/db".into(),
            reason: "the dump ended without its `-- Dump completed` line".into(),
        });
    }
    Ok((databases, parts))
}
