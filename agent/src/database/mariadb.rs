//! MariaDB/MySQL: backup with `mariadb-dump --single-transaction`, split into one stream per
//! table; restore of the whole server, one database (optionally renamed) or chosen tables.
//!
//! # Consistency
//! All selected databases are dumped by **one** `mariadb-dump --single-transaction
//! --databases …` run: it starts one `START TRANSACTION WITH CONSISTENT SNAPSHOT` and reads
//! every table of every database in it, so all InnoDB tables are dumped as of one instant
//! (non-transactional tables such as MyISAM are not; DDL during the dump is not allowed).
//! Separate client processes do not share a snapshot, so dumping per table would not be
//! consistent; instead the agent splits the single dump's output while it streams, at the
//! section comments `mariadb-dump` writes (`-- Table structure for table`, …), outside
//! `DELIMITER` blocks. Row counts are counted from the dump itself (the `INSERT` tuples of each
//! table), so they describe exactly the dumped snapshot.
//!
//! # Streams
//! - `mariadb/users.sql`: users, roles and grants (`mariadb-dump --system=users --insert-ignore`).
//! - `mariadb/header.sql`, `mariadb/footer.sql`: the dump's session settings.
//! - `mariadb/db/<db>/table/<table>.sql`: structure, rows and triggers of one table.
//! - `mariadb/db/<db>/view-stub/<view>.sql`, `…/view/<view>.sql`, `…/events.sql`,
//!   `…/routines.sql`: the other objects.
//! - `mariadb/manifest.json` ([`MariaDbManifest`]), written last: versions, `CREATE DATABASE`
//!   statements, row counts and the order of the parts. Concatenating header, parts in order
//!   (with `USE`) and footer gives back the original dump.
//!
//! # Restore
//! Through the `mariadb` client. Without `clean`, a target database must be empty (or absent)
//! and restored tables must not exist; otherwise the existing objects are an error naming them,
//! checked before anything changes. With `clean`, a restored database is dropped and re-created
//! and restored tables are dropped first. A failed restore is not rolled back (DDL is not
//! transactional in MariaDB). Under a new name, objects whose bodies name their database
//! explicitly (`CREATE TRIGGER db.t … ON db.x`, `db.table` inside routines) still point at the
//! old one, as with any `mariadb-dump` restore; views are dumped without the database name.
//! A whole-server restore leaves out the accounts every server has (`root`, `mariadb.sys`,
//! `mysql` at `localhost`), `PROXY` grants and the restoring user itself.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::process::{self, Feed};
use super::tls;
use super::{
    Connection, DatabaseError, RestoreOptions, RestoreReport, RestoreScope, StreamSink, StreamSource, TableRows,
    encode_name, list, major_minor, read_manifest, write_manifest,
};

/// Stream of users, roles and grants.
pub const USERS_STREAM: &str = "mariadb/users.sql";
/// Stream of the dump's leading session settings.
pub const HEADER_STREAM: &str = "mariadb/header.sql";
/// Stream of the dump's trailing session settings.
pub const FOOTER_STREAM: &str = "mariadb/footer.sql";
/// Stream of the manifest, written last.
pub const MANIFEST_STREAM: &str = "mariadb/manifest.json";

const SYSTEM_DATABASES: [&str; 4] = ["information_schema", "performance_schema", "mysql", "sys"];

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct MariaDbBackupOptions {
    /// Databases to dump; all but the system databases when empty.
    pub databases: Vec<String>,
    /// Leave out users and grants.
    pub skip_users: bool,
}

/// Describes a MariaDB backup; stored as [`MANIFEST_STREAM`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MariaDbManifest {
    /// Manifest format version (1).
    pub version: u32,
    /// `VERSION()` of the server.
    pub server_version: String,
    /// `mariadb-dump --version`.
    pub client_version: String,
    /// Whether [`USERS_STREAM`] was written.
    pub users: bool,
    /// The dumped databases.
    pub databases: Vec<MariaDbDatabase>,
    /// The dump's parts, in dump order.
    pub parts: Vec<Part>,
}

/// One dumped database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MariaDbDatabase {
    /// Name.
    pub name: String,
    /// Its `CREATE DATABASE` statement from the dump.
    pub create: String,
    /// Tables with the number of rows dumped.
    pub tables: Vec<MariaDbTable>,
}

/// One dumped table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MariaDbTable {
    /// Name.
    pub name: String,
    /// Rows in the dump.
    pub rows: u64,
}

/// What a part of the dump holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    /// A table's structure, rows and triggers.
    Table,
    /// A placeholder table for a view (lets views refer to each other in any order).
    ViewStub,
    /// A view.
    View,
    /// The database's events.
    Events,
    /// The database's stored procedures and functions.
    Routines,
}

/// One stream of the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Stream name.
    pub stream: String,
    /// Database.
    pub database: String,
    /// Content.
    pub kind: PartKind,
    /// Table or view name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `text` as a string literal that means the same whatever the server's `sql_mode`: a hex
/// literal converted to utf8mb4 (backslash escapes are plain characters under
/// `NO_BACKSLASH_ESCAPES`, so `\'` quoting could end the literal early there).
pub(super) fn quote_literal(text: &str) -> String {
    format!("CONVERT(X'{}' USING utf8mb4)", hex::encode(text.as_bytes()))
}

/// A client tool with the connection; the password goes through `MYSQL_PWD`, never argv.
fn tool(conn: &Connection, name: &str) -> Command {
    let mut cmd = Command::new(conn.tool(name));
    cmd.arg("--no-defaults");
    if conn.host.starts_with('/') {
        cmd.arg(format!("--socket={}", conn.host));
    } else {
        cmd.arg("--protocol=TCP")
            .arg(format!("--host={}", conn.host))
            .arg(format!("--port={}", conn.port));
    }
    cmd.arg(format!("--user={}", conn.user));
    cmd.args(tls::mariadb_args(&conn.tls));
    match &conn.password {
        Some(p) => cmd.env("MYSQL_PWD", p.expose()),
        None => cmd.env_remove("MYSQL_PWD"),
    };
    cmd
}

/// Maps a client error message (`ERROR 1045 (28000): …`, `Got error: 1049: …`) to an error.
fn classify(conn: &Connection, message: String, database: Option<&str>) -> DatabaseError {
    let code = message
        .match_indices(|c: char| c.is_ascii_digit())
        .map(|(i, _)| &message[i..])
        .find_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (digits.len() == 4).then(|| digits.parse::<u32>().ok()).flatten()
        });
    match code {
        Some(1044 | 1045 | 1698) => DatabaseError::Authentication {
            user: conn.user.clone(),
            host: conn.host.clone(),
            port: conn.port,
            reason: message,
        },
        Some(2002 | 2003 | 2005 | 2006 | 2013) => DatabaseError::Unreachable {
            host: conn.host.clone(),
            port: conn.port,
            reason: message,
        },
        Some(1049) => DatabaseError::NoSuchDatabase(database.unwrap_or("?").to_string()),
        _ => DatabaseError::Query(message),
    }
}

/// Runs `sql` (through stdin) and returns the rows.
pub(super) fn query(conn: &Connection, sql: &str) -> Result<Vec<Vec<String>>, DatabaseError> {
    query_in(conn, None, sql)
}

/// Runs `sql` (through stdin) in `database` and returns the rows (`NULL` for a null), with
/// the client's own commands (`\!`, `source`) refused.
pub(super) fn query_in(
    conn: &Connection,
    database: Option<&str>,
    sql: &str,
) -> Result<Vec<Vec<String>>, DatabaseError> {
    let mut cmd = tool(conn, "mariadb");
    cmd.args(["--batch", "--skip-column-names", "--sandbox"]);
    if let Some(database) = database {
        cmd.arg(format!("--database={database}"));
    }
    let sql = sql.to_string();
    let out = process::run(
        cmd,
        "mariadb",
        Some(Box::new(move |w: &mut dyn Write| Ok(w.write_all(sql.as_bytes())?))),
    )
    .map_err(|e| e.into_error(|m| classify(conn, m, database)))?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(|line| line.split('\t').map(unescape_batch).collect())
        .collect())
}

/// Undoes the escaping of `--batch` output.
fn unescape_batch(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Reads the manifest of a MariaDB backup from `source` (e.g. to check names before a restore).
pub fn manifest(source: &dyn StreamSource) -> Result<MariaDbManifest, DatabaseError> {
    read_manifest(source, MANIFEST_STREAM)
}

/// Backs up into `sink`: users, then the split dump, then the manifest.
pub fn backup(
    conn: &Connection,
    options: &MariaDbBackupOptions,
    sink: &mut dyn StreamSink,
) -> Result<MariaDbManifest, DatabaseError> {
    let server_version = query(conn, "SELECT VERSION()")?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default();
    let client_version = {
        let mut cmd = Command::new(conn.tool("mariadb-dump"));
        cmd.arg("--version");
        let out = process::run(cmd, "mariadb-dump", None).map_err(|e| {
            e.into_error(|reason| DatabaseError::Tool {
                tool: "mariadb-dump".into(),
                reason,
            })
        })?;
        String::from_utf8_lossy(&out).trim().to_string()
    };
    check_versions(&client_version, &server_version)?;
    let existing: Vec<String> = query(conn, "SHOW DATABASES")?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .filter(|d| !SYSTEM_DATABASES.contains(&d.as_str()))
        .collect();
    let databases = if options.databases.is_empty() {
        existing
    } else {
        for d in &options.databases {
            if !existing.contains(d) {
                return Err(DatabaseError::NoSuchDatabase(d.clone()));
            }
        }
        options.databases.clone()
    };
    // Data and index bytes estimate the dump's size (the progress total).
    if !databases.is_empty() {
        let list: Vec<String> = databases.iter().map(|d| quote_literal(d)).collect();
        let sql = format!(
            "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({})",
            list.join(", ")
        );
        match query(conn, &sql) {
            Ok(rows) => {
                if let Some(total) = rows.first().and_then(|r| r.first()).and_then(|v| v.parse().ok()) {
                    sink.expect_total(total);
                }
            }
            Err(e) => tracing::debug!(error = %e, "no size estimate for progress"),
        }
    }

    if !options.skip_users {
        let mut cmd = tool(conn, "mariadb-dump");
        cmd.args(["--system=users", "--insert-ignore"]);
        process::dump(cmd, "mariadb-dump", USERS_STREAM, |out| {
            sink.put(USERS_STREAM, out).map_err(|source| DatabaseError::Sink {
                stream: USERS_STREAM.into(),
                source,
            })
        })?;
    }

    let mut manifest = MariaDbManifest {
        version: 1,
        server_version,
        client_version,
        users: !options.skip_users,
        databases: Vec::new(),
        parts: Vec::new(),
    };
    if !databases.is_empty() {
        let mut cmd = tool(conn, "mariadb-dump");
        cmd.args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--skip-add-drop-table",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--databases",
        ])
        .arg("--")
        .args(&databases);
        let (dbs, parts) = process::dump(cmd, "mariadb-dump", "mariadb/db", |out| split_dump(out, sink))?;
        manifest.databases = dbs;
        manifest.parts = parts;
    }
    write_manifest(sink, MANIFEST_STREAM, &manifest)?;
    Ok(manifest)
}

fn check_versions(client: &str, server: &str) -> Result<(), DatabaseError> {
    // `mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, …` or `mariadb-dump from 11.4.2-MariaDB, …`
    let client_release = client
        .split_once("Distrib ")
        .or_else(|| client.split_once(" from "))
        .map(|(_, v)| v)
        .unwrap_or(client);
    if !server.contains("MariaDB") {
        // MySQL numbers its releases differently; mariadb-dump reads MySQL 5.7/8.0 servers.
        return Ok(());
    }
    match (major_minor(client_release), major_minor(server)) {
        (Some(c), Some(s)) if c < s => Err(DatabaseError::ClientTooOld {
            tool: "mariadb-dump".into(),
            client: client_release.split(',').next().unwrap_or(client_release).to_string(),
            server: server.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A section comment of `mariadb-dump` output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
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
type MakeMarker = fn(String) -> Marker;

fn quoted_name(rest: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(rest);
    let inner = text.trim_end().strip_suffix('`')?;
    Some(inner.replace("``", "`"))
}

fn marker(line: &[u8]) -> Option<Marker> {
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
struct RowCounter {
    in_insert: bool,
    depth: u32,
    quote: bool,
    escape: bool,
    rows: u64,
}

impl RowCounter {
    fn feed(&mut self, line: &[u8]) {
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
struct Splitter<R> {
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
enum SectionKind {
    Header,
    Table(String),
    Other,
    Footer,
}

/// One section of the dump as a reader: ends before the line that starts the next section.
struct Section<'a, R> {
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

fn put_section<R: BufRead>(
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

fn unexpected(line: &[u8]) -> DatabaseError {
    DatabaseError::DumpFailed {
        stream: "mariadb/db".into(),
        reason: format!(
            "unexpected line in mariadb-dump output: {}",
            String::from_utf8_lossy(&line[..line.len().min(200)]).trim_end()
        ),
    }
}

/// Splits `mariadb-dump --databases` output into streams; returns the databases and parts.
fn split_dump(
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

/// Restores from `source` as `options` say; returns the row counts (all of which matched).
pub fn restore(
    conn: &Connection,
    source: &dyn StreamSource,
    options: &RestoreOptions,
) -> Result<RestoreReport, DatabaseError> {
    let manifest: MariaDbManifest = read_manifest(source, MANIFEST_STREAM)?;
    let find_db = |name: &str| {
        manifest.databases.iter().find(|d| d.name == name).ok_or_else(|| {
            DatabaseError::NotInBackup(format!(
                "database `{name}` (it has: {})",
                list(manifest.databases.iter().map(|d| d.name.as_str()))
            ))
        })
    };
    let mut input: Vec<Segment> = Vec::new();
    let mut counted: Vec<(String, &MariaDbTable)> = Vec::new();
    let mut report = RestoreReport::default();
    match &options.scope {
        RestoreScope::Server | RestoreScope::Database { .. } => {
            let targets: Vec<(&MariaDbDatabase, String)> = match &options.scope {
                RestoreScope::Database { name, rename } => {
                    vec![(find_db(name)?, rename.clone().unwrap_or_else(|| name.clone()))]
                }
                _ => manifest.databases.iter().map(|d| (d, d.name.clone())).collect(),
            };
            if !options.clean {
                for (_, target) in &targets {
                    check_empty(conn, target)?;
                }
            }
            if matches!(options.scope, RestoreScope::Server) && manifest.users {
                input.push(Segment::Users(USERS_STREAM.into()));
            }
            input.push(Segment::Stream(HEADER_STREAM.into()));
            let mut rename = HashMap::new();
            for (db, target) in &targets {
                let mut sql = String::new();
                if options.clean {
                    let _ = writeln!(sql, "DROP DATABASE IF EXISTS {};", quote_ident(target));
                }
                let create = db.create.replacen(&quote_ident(&db.name), &quote_ident(target), 1);
                let _ = writeln!(sql, "{create}");
                input.push(Segment::Text(sql));
                rename.insert(db.name.as_str(), target.as_str());
                counted.extend(db.tables.iter().map(|t| (target.clone(), t)));
                report.databases.push(target.clone());
            }
            let mut current = None;
            for part in manifest
                .parts
                .iter()
                .filter(|p| rename.contains_key(p.database.as_str()))
            {
                if current != Some(&part.database) {
                    input.push(Segment::Text(format!(
                        "USE {};\n",
                        quote_ident(rename[part.database.as_str()])
                    )));
                    current = Some(&part.database);
                }
                input.push(Segment::Stream(part.stream.clone()));
            }
            input.push(Segment::Stream(FOOTER_STREAM.into()));
        }
        RestoreScope::Tables { database, tables, into } => {
            let db = find_db(database)?;
            let target = into.clone().unwrap_or_else(|| database.clone());
            let mut chosen = Vec::new();
            for name in tables {
                let t = db.tables.iter().find(|t| &t.name == name).ok_or_else(|| {
                    DatabaseError::NotInBackup(format!(
                        "table `{name}` in database `{database}` (it has: {})",
                        list(db.tables.iter().map(|t| t.name.as_str()))
                    ))
                })?;
                chosen.push(t);
            }
            let sql = format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {}",
                quote_literal(&target)
            );
            if query(
                conn,
                &format!(
                    "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                    quote_literal(&target)
                ),
            )?
            .is_empty()
            {
                return Err(DatabaseError::NoSuchDatabase(target));
            }
            let present: BTreeSet<String> = query(conn, &sql)?
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
            let existing: Vec<String> = chosen
                .iter()
                .filter(|t| present.contains(&t.name))
                .map(|t| format!("table {}", t.name))
                .collect();
            if !existing.is_empty() && !options.clean {
                return Err(DatabaseError::ExistingObjects {
                    database: target,
                    objects: existing,
                });
            }
            input.push(Segment::Stream(HEADER_STREAM.into()));
            let mut sql = format!("USE {};\n", quote_ident(&target));
            if options.clean {
                for t in &chosen {
                    let _ = writeln!(sql, "DROP TABLE IF EXISTS {};", quote_ident(&t.name));
                }
            }
            input.push(Segment::Text(sql));
            for part in &manifest.parts {
                if part.database == *database
                    && part.kind == PartKind::Table
                    && chosen.iter().any(|t| Some(&t.name) == part.object.as_ref())
                {
                    input.push(Segment::Stream(part.stream.clone()));
                }
            }
            input.push(Segment::Stream(FOOTER_STREAM.into()));
            counted.extend(chosen.into_iter().map(|t| (target.clone(), t)));
            report.databases.push(target);
        }
    }
    run_restore(conn, source, input, &report.databases.join(", "))?;
    count_rows(conn, &counted, &mut report)?;
    report.check()
}

/// A piece of the restore input.
enum Segment {
    Text(String),
    Stream(String),
    /// The users stream, without the accounts every server has and the restoring user.
    Users(String),
}

/// Accounts that exist on every server (and whose grants only root may give).
const SYSTEM_ACCOUNTS: [&str; 3] = ["`root`@`localhost`", "`mariadb.sys`@`localhost`", "`mysql`@`localhost`"];

/// Leaves out of a `--system=users` dump the statements about system accounts, `PROXY` grants
/// and the restoring user (whose password and grants on the target stay as they are).
fn adapt_users(text: &str, user: &str) -> String {
    let own_backquoted = format!("{}@", quote_ident(user));
    let own_quoted = format!("'{}'@", user.replace('\'', "''"));
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let skip = line.starts_with("GRANT PROXY ON")
            || SYSTEM_ACCOUNTS
                .iter()
                .any(|a| line.contains(a) || line.contains(&a.replace('`', "'")))
            || (line.starts_with("CREATE USER") || line.starts_with("GRANT ") || line.contains("DEFAULT ROLE"))
                && (line.contains(&own_backquoted) || line.contains(&own_quoted));
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn run_restore(
    conn: &Connection,
    source: &dyn StreamSource,
    input: Vec<Segment>,
    databases: &str,
) -> Result<(), DatabaseError> {
    let feed: Feed<'_> = Box::new(move |w: &mut dyn Write| {
        for segment in input {
            match segment {
                Segment::Text(text) => w.write_all(text.as_bytes())?,
                Segment::Users(name) => {
                    let mut text = String::new();
                    source
                        .open(&name)
                        .and_then(|mut r| r.read_to_string(&mut text))
                        .map_err(|e| DatabaseError::Source {
                            stream: name.clone(),
                            reason: e.to_string(),
                        })?;
                    w.write_all(adapt_users(&text, &conn.user).as_bytes())?;
                }
                Segment::Stream(name) => {
                    let mut r = source.open(&name).map_err(|e| DatabaseError::Source {
                        stream: name.clone(),
                        reason: e.to_string(),
                    })?;
                    process::copy_stream(&mut r, w, &name)?;
                }
            }
        }
        Ok(())
    });
    let mut cmd = tool(conn, "mariadb");
    // The client runs its own commands (`\!` and `system` run a shell command, `source` reads
    // a file) from what it is fed: stored streams are SQL only, so none is honoured.
    cmd.args(["--binary-mode", "--sandbox"]);
    process::run(cmd, "mariadb", Some(feed)).map_err(|e| {
        e.into_error(|reason| {
            // `ERROR … at line N`: a statement failed, not the connection.
            if reason.contains(" at line ") {
                return DatabaseError::RestoreFailed {
                    database: databases.to_string(),
                    reason,
                };
            }
            match classify(conn, reason, None) {
                DatabaseError::Query(reason) => DatabaseError::RestoreFailed {
                    database: databases.to_string(),
                    reason,
                },
                other => other,
            }
        })
    })?;
    Ok(())
}

/// Fails unless database `target` is absent or holds no tables, views, routines or events.
fn check_empty(conn: &Connection, target: &str) -> Result<(), DatabaseError> {
    let t = quote_literal(target);
    let rows = query(
        conn,
        &format!(
            "SELECT CONCAT(IF(TABLE_TYPE = 'VIEW', 'view ', 'table '), TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {t}
             UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {t}
             UNION ALL SELECT CONCAT('event ', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {t}"
        ),
    )?;
    if rows.is_empty() {
        return Ok(());
    }
    Err(DatabaseError::ExistingObjects {
        database: target.to_string(),
        objects: rows.into_iter().filter_map(|r| r.into_iter().next()).collect(),
    })
}

fn count_rows(
    conn: &Connection,
    tables: &[(String, &MariaDbTable)],
    report: &mut RestoreReport,
) -> Result<(), DatabaseError> {
    for chunk in tables.chunks(200) {
        let sql = chunk
            .iter()
            .map(|(db, t)| format!("SELECT COUNT(*) FROM {}.{}", quote_ident(db), quote_ident(&t.name)))
            .collect::<Vec<_>>()
            .join("\nUNION ALL ");
        let rows = query(conn, &sql)?;
        if rows.len() != chunk.len() {
            return Err(DatabaseError::Query(format!(
                "expected {} row counts, got {}",
                chunk.len(),
                rows.len()
            )));
        }
        for ((db, t), row) in chunk.iter().zip(rows) {
            let restored = row.first().and_then(|c| c.parse().ok()).unwrap_or(u64::MAX);
            report.tables.push(TableRows {
                database: db.clone(),
                table: t.name.clone(),
                expected: t.rows,
                restored,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn string_literals_hold_no_quote_or_backslash_of_the_input() {
        assert_eq!(quote_literal("app"), "CONVERT(X'617070' USING utf8mb4)");
        let hostile = quote_literal(r"a\' OR 1=1 -- ");
        assert!(
            !hostile.contains('\\') && hostile.matches('\'').count() == 2,
            "{hostile}"
        );
    }

    #[derive(Default)]
    struct MemSink(BTreeMap<String, Vec<u8>>);

    impl StreamSink for MemSink {
        fn put(&mut self, name: &str, data: &mut dyn Read) -> io::Result<u64> {
            let mut buf = Vec::new();
            data.read_to_end(&mut buf)?;
            let n = buf.len() as u64;
            assert!(self.0.insert(name.to_string(), buf).is_none(), "duplicate {name}");
            Ok(n)
        }
    }

    const DUMP: &str = include_str!("testdata/mariadb-dump.sql");

    #[test]
    fn rows_are_counted_through_quotes_and_parentheses() {
        let mut c = RowCounter::default();
        c.feed(b"INSERT INTO `a``b` VALUES\n");
        c.feed(b"(1,'x\\'y\\n(z)',NULL),\n");
        c.feed(b"(2,'q),(',0x62);\n");
        c.feed(b"UNLOCK TABLES;\n");
        assert_eq!(c.rows, 2);
        c.feed(b"INSERT INTO `t` VALUES (3,'a''b'),(4,')');\n");
        assert_eq!(c.rows, 4);
    }

    #[test]
    fn a_dump_splits_into_parts_that_concatenate_to_it() {
        let mut sink = MemSink::default();
        let (dbs, parts) = split_dump(&mut DUMP.as_bytes(), &mut sink).unwrap();
        let names: Vec<&str> = parts.iter().map(|p| p.stream.as_str()).collect();
        assert_eq!(
            names,
            [
                "mariadb/db/s1/table/a.sql",
                "mariadb/db/s1/table/b.sql",
                "mariadb/db/s1/view-stub/va.sql",
                "mariadb/db/s1/events.sql",
                "mariadb/db/s1/routines.sql",
                "mariadb/db/s2/table/c.sql",
                "mariadb/db/s2/events.sql",
                "mariadb/db/s2/routines.sql",
                "mariadb/db/s1/view/va.sql",
            ]
        );
        assert_eq!(dbs.len(), 2);
        assert_eq!(
            dbs[0].tables,
            [
                MariaDbTable {
                    name: "a".into(),
                    rows: 2
                },
                MariaDbTable {
                    name: "b".into(),
                    rows: 2
                }
            ]
        );
        assert_eq!(dbs[1].tables[0].rows, 0);
        assert!(
            dbs[0]
                .create
                .starts_with("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `s1`")
        );
        let b = String::from_utf8(sink.0["mariadb/db/s1/table/b.sql"].clone()).unwrap();
        assert!(
            b.contains("TRIGGER tr BEFORE INSERT ON b"),
            "triggers stay with their table"
        );
        let footer = String::from_utf8(sink.0[FOOTER_STREAM].clone()).unwrap();
        assert!(footer.contains("-- Dump completed"));
        // Nothing is lost except the CREATE DATABASE / USE lines the restore writes itself.
        let total: usize = sink.0.values().map(Vec::len).sum();
        let dropped: usize = DUMP
            .lines()
            .filter(|l| {
                l.starts_with("CREATE DATABASE") || l.starts_with("USE ") || l.starts_with("-- Current Database")
            })
            .map(|l| l.len() + 1)
            .sum();
        assert!(DUMP.len() - total >= dropped && DUMP.len() - total < dropped + 200);
    }

    #[test]
    fn a_truncated_dump_is_an_error() {
        let cut = &DUMP[..DUMP.find("-- Dumping routines").unwrap()];
        let mut sink = MemSink::default();
        let err = split_dump(&mut cut.as_bytes(), &mut sink).unwrap_err();
        assert!(err.to_string().contains("Dump completed"), "{err}");
    }

    #[test]
    fn versions_are_compared_for_mariadb_servers_only() {
        let client = "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)";
        assert!(check_versions(client, "10.11.19-MariaDB-0+deb12u1").is_ok());
        assert!(check_versions(client, "10.6.2-MariaDB").is_ok());
        let err = check_versions(client, "11.4.2-MariaDB").unwrap_err();
        assert!(
            err.to_string()
                .contains("10.11.19-MariaDB is older than the server (11.4.2-MariaDB)"),
            "{err}"
        );
        assert!(check_versions(client, "8.0.36").is_ok());
    }

    #[test]
    fn users_restore_spares_system_accounts_and_the_restoring_user() {
        let text = "CREATE USER IF NOT EXISTS `root`@`localhost` IDENTIFIED VIA unix_socket;
CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*AB';
CREATE USER IF NOT EXISTS `hort`@`127.0.0.1` IDENTIFIED BY PASSWORD '*CD';
GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION;
GRANT SELECT ON `shop`.* TO `app`@`%`;
GRANT ALL PRIVILEGES ON *.* TO `hort`@`127.0.0.1`;
/*M!100005 SET DEFAULT ROLE NONE FOR 'mariadb.sys'@'localhost' */;
";
        let out = adapt_users(text, "hort");
        assert_eq!(
            out,
            "CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*AB';\nGRANT SELECT ON `shop`.* TO `app`@`%`;\n"
        );
    }

    #[test]
    fn client_errors_are_classified() {
        let conn = Connection {
            host: "127.0.0.1".into(),
            port: 1,
            user: "u".into(),
            password: None,
            bin_dir: None,
            tls: Default::default(),
        };
        let auth = classify(&conn, "ERROR 1045 (28000): Access denied".into(), None);
        assert!(matches!(auth, DatabaseError::Authentication { .. }));
        let down = classify(&conn, "mariadb-dump: Got error: 2002: \"Can't connect\"".into(), None);
        assert!(matches!(down, DatabaseError::Unreachable { .. }));
    }
}
