//! Database-native backup and fine-grained restore (PostgreSQL, MariaDB/MySQL).
//!
//! Database files copied while the server writes are garbage, so Hort backs databases up
//! through the database's own dump tools and stores the dumps as *named streams*. This module
//! knows nothing of the repository engine: a backup pushes streams into a [`StreamSink`]
//! (which the engine implements, or [`DirStreams`] for a plain directory), and a restore
//! reads them back from a [`StreamSource`].
//!
//! Contract with the sink: streams arrive one after another; each is complete when
//! [`StreamSink::put`] returns. A backup function returning an error means the set of
//! streams is incomplete or untrustworthy (a dump exited non-zero or was killed half-way)
//! and the engine must not record a snapshot. Every backup writes a *manifest* stream last
//! (`postgres/manifest.json`, `mariadb/manifest.json`); restores refuse a set without one.
//!
//! Dumps reach the sink uncompressed so that the engine's deduplication works; the engine
//! compresses. Passwords go to the child processes through their environment
//! (`PGPASSWORD`, `MYSQL_PWD`), never on a command line, and never into logs or errors; the
//! agent's own secrets (`HORT_*`, `AWS_*` variables) are removed from the tools' environment.
//!
//! - [`postgres`]: `pg_dumpall --globals-only` plus one `pg_dump --format=custom` per
//!   database, taken in an exported snapshot whose row counts are recorded alongside.
//! - [`mariadb`]: one `mariadb-dump --single-transaction` run for all databases, split into
//!   one stream per table (and per view, routine set, event set) so a table restores alone.
//! - [`verification`]: a backup restored into a throwaway server and checked.
//!
//! # Client and server versions
//! Written and tested against Debian 12's client tools: `postgresql-client-15` (`pg_dump`
//! 15, which dumps servers 9.2 to 15; a newer server major is refused as "client too old")
//! and `mariadb-client` 10.11 (`mariadb-dump`, for MariaDB servers up to 10.11 — newer ones
//! are refused — and MySQL 5.7/8.0 servers, whose version is not compared).

pub mod mariadb;
pub mod postgres;
mod process;
mod tls;
pub mod verification;

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use hort_engine::streams::{StreamSink, StreamSource};

/// A password that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password (e.g. read from a Secret's environment variable or file).
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// Reads a password file; one trailing newline is removed.
    pub fn from_file(path: &Path) -> io::Result<Self> {
        let text = fs::read_to_string(path)?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Ok(Password(text.strip_suffix('\r').unwrap_or(text).to_string()))
    }

    /// The password itself; only for handing it to a client library or a child environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Where a database server is and who we are on it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Host name or address; a path starting with `/` means a Unix socket (directory for
    /// PostgreSQL, socket file for MariaDB).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password; `None` for trust or peer authentication.
    pub password: Option<Password>,
    /// Directory holding the client tools (`pg_dump`, `mariadb-dump`, …); `PATH` when `None`.
    pub bin_dir: Option<PathBuf>,
    /// TLS of every connection to the server (see [`tls`]).
    pub tls: hort_protocol::DatabaseTls,
}

impl Connection {
    fn tool(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }
}

/// Streams stored as files in a directory (`a/b.sql` → `<root>/a/b.sql`): a sink and a source
/// for tests and for dumping to local disk.
#[derive(Debug, Clone)]
pub struct DirStreams {
    root: PathBuf,
}

impl DirStreams {
    /// Uses `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirStreams { root: root.into() }
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad stream name `{name}`"),
            ));
        }
        Ok(self.root.join(name))
    }
}

impl StreamSink for DirStreams {
    fn put(&mut self, name: &str, data: &mut dyn Read) -> io::Result<u64> {
        let path = self.path(name)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = fs::File::create(&path)?;
        io::copy(data, &mut file)
    }
}

impl StreamSource for DirStreams {
    fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send + '_>> {
        let path = self.path(name)?;
        let file = fs::File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("stream `{name}` ({}): {e}", path.display())))?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, file)))
    }
}

/// Row count of one table: recorded at backup time and counted after the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    /// Database the table was restored into.
    pub database: String,
    /// Table (`schema.table` for PostgreSQL).
    pub table: String,
    /// Rows in the backup.
    pub expected: u64,
    /// Rows found after the restore.
    pub restored: u64,
}

/// What a restore did: the tables it restored with their row counts, all of which matched
/// (a mismatch is [`DatabaseError::RowCountMismatch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Restored databases (target names).
    pub databases: Vec<String>,
    /// Restored tables.
    pub tables: Vec<TableRows>,
}

impl RestoreReport {
    fn check(self) -> Result<Self, DatabaseError> {
        let bad: Vec<TableRows> = self
            .tables
            .iter()
            .filter(|t| t.expected != t.restored)
            .cloned()
            .collect();
        if bad.is_empty() {
            Ok(self)
        } else {
            Err(DatabaseError::RowCountMismatch(bad))
        }
    }
}

/// Errors of database backups and restores; each names what it is about.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// No connection to the server.
    #[error("cannot reach database server {host}:{port}: {reason}")]
    Unreachable {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// What the client said.
        reason: String,
    },
    /// TLS could not be set up as asked (e.g. the CA file is unreadable).
    #[error("TLS to the database server: CA file `{ca_file}`: {reason}")]
    Tls {
        /// The CA file.
        ca_file: String,
        /// Why.
        reason: String,
    },
    /// The server rejected the user or password.
    #[error("authentication failed for user `{user}` on {host}:{port} (wrong password?): {reason}")]
    Authentication {
        /// User.
        user: String,
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// What the server said.
        reason: String,
    },
    /// A database does not exist on the server.
    #[error("database `{0}` does not exist on the server")]
    NoSuchDatabase(String),
    /// A table does not exist on the server.
    #[error("table `{table}` does not exist in database `{database}`")]
    NoSuchTable {
        /// Database.
        database: String,
        /// Table.
        table: String,
    },
    /// The backup holds no such database or table.
    #[error("the backup contains no {0}")]
    NotInBackup(String),
    /// The client tools are older than the server: their dump could be partial.
    #[error(
        "{tool} {client} is older than the server ({server}); a dump could miss objects: use client tools of version {server} or newer"
    )]
    ClientTooOld {
        /// Tool.
        tool: String,
        /// Client version.
        client: String,
        /// Server version.
        server: String,
    },
    /// A client tool could not be started.
    #[error("cannot run `{tool}`: {reason}")]
    Tool {
        /// Tool.
        tool: String,
        /// Why.
        reason: String,
    },
    /// A dump command failed or was killed; the streams of this backup are incomplete.
    #[error("dump `{stream}` failed: {reason}")]
    DumpFailed {
        /// Stream being written.
        stream: String,
        /// Exit status and the tool's messages.
        reason: String,
    },
    /// The sink refused a stream.
    #[error("storing stream `{stream}` failed: {source}")]
    Sink {
        /// Stream.
        stream: String,
        /// Cause.
        source: io::Error,
    },
    /// A stream could not be read back.
    #[error("reading stream `{stream}` failed: {reason}")]
    Source {
        /// Stream.
        stream: String,
        /// Cause.
        reason: String,
    },
    /// Objects to be restored exist already and `clean` was not asked for.
    #[error("database `{database}` already has {}: restore with clean to replace them", .objects.join(", "))]
    ExistingObjects {
        /// Target database.
        database: String,
        /// The existing objects.
        objects: Vec<String>,
    },
    /// The restore tool failed; with PostgreSQL the restore was rolled back.
    #[error("restore into `{database}` failed: {reason}")]
    RestoreFailed {
        /// Target database.
        database: String,
        /// The tool's messages.
        reason: String,
    },
    /// A pre or post hook failed.
    #[error("{hook} failed: {reason}")]
    Hook {
        /// Which hook (stage, position, program).
        hook: String,
        /// Exit status and its messages.
        reason: String,
    },
    /// Row counts after the restore differ from the backup's.
    #[error("row counts differ after restore: {}", format_mismatches(.0))]
    RowCountMismatch(Vec<TableRows>),
    /// A query failed.
    #[error("query failed: {0}")]
    Query(String),
    /// The backup's manifest is missing or unreadable: the backup is incomplete.
    #[error("backup manifest `{stream}`: {reason}")]
    Manifest {
        /// Manifest stream.
        stream: String,
        /// Why.
        reason: String,
    },
    /// A local I/O error (temporary files).
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

fn format_mismatches(rows: &[TableRows]) -> String {
    rows.iter()
        .map(|t| {
            format!(
                "{}.{}: {} in backup, {} restored",
                t.database, t.table, t.expected, t.restored
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Stream-name form of a database or table name: bytes outside `[A-Za-z0-9_-]` and a
/// leading `.` become `%XX`, so names never contain `/` and map one-to-one.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn write_manifest<T: serde::Serialize>(sink: &mut dyn StreamSink, name: &str, value: &T) -> Result<(), DatabaseError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| DatabaseError::Manifest {
        stream: name.to_string(),
        reason: e.to_string(),
    })?;
    sink.put(name, &mut json.as_slice())
        .map_err(|source| DatabaseError::Sink {
            stream: name.to_string(),
            source,
        })?;
    Ok(())
}

fn read_manifest<T: serde::de::DeserializeOwned>(source: &dyn StreamSource, name: &str) -> Result<T, DatabaseError> {
    let manifest_error = |reason: String| DatabaseError::Manifest {
        stream: name.to_string(),
        reason,
    };
    let mut bytes = Vec::new();
    source
        .open(name)
        .and_then(|mut r| r.read_to_end(&mut bytes))
        .map_err(|e| manifest_error(format!("{e} (an incomplete or non-database backup?)")))?;
    serde_json::from_slice(&bytes).map_err(|e| manifest_error(e.to_string()))
}

/// Names for an error message: `a, b, c`, or `nothing` when there are none.
fn list<T: fmt::Display>(names: impl Iterator<Item = T>) -> String {
    let names: Vec<String> = names.map(|n| n.to_string()).collect();
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

/// `major.minor` of a version string such as `15.18 (Debian …)` or `10.11.19-MariaDB`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let digits: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = digits.split('.').filter(|p| !p.is_empty()).map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().and_then(Result::ok).unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_reversibly_and_without_slashes() {
        assert_eq!(encode_name("app_db-1"), "app_db-1");
        assert_eq!(encode_name("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_name(".."), "%2E.");
        assert_eq!(encode_name("Ä"), "%C3%84");
    }

    #[test]
    fn versions_are_parsed() {
        assert_eq!(major_minor("15.18 (Debian 15.18-0+deb12u1)"), Some((15, 18)));
        assert_eq!(major_minor("10.11.19-MariaDB-0+deb12u1"), Some((10, 11)));
        assert_eq!(major_minor("16"), Some((16, 0)));
        assert_eq!(major_minor("x"), None);
    }

    #[test]
    fn passwords_are_not_printed() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p:?}"), "Password(***)");
        let c = Connection {
            host: "h".into(),
            port: 1,
            user: "u".into(),
            password: Some(p),
            bin_dir: None,
            tls: Default::default(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn dir_streams_round_trip_and_reject_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let mut streams = DirStreams::new(dir.path());
        streams.put("a/b.sql", &mut &b"hello"[..]).unwrap();
        let mut text = String::new();
        streams.open("a/b.sql").unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello");
        assert!(streams.put("../x", &mut &b""[..]).is_err());
    }
}

/// What to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreScope {
    /// Every database of the backup, with roles (PostgreSQL) or users and grants (MariaDB).
    Server,
    /// One database.
    Database {
        /// Name in the backup.
        name: String,
        /// Restore under this name instead.
        rename: Option<String>,
    },
    /// Chosen tables of one database, with what belongs to them (PostgreSQL: indexes,
    /// constraints, triggers, sequences; MariaDB: triggers).
    Tables {
        /// Database in the backup.
        database: String,
        /// Table names (PostgreSQL also takes `schema.table`).
        tables: Vec<String>,
        /// Existing database to restore into; the original name when `None`.
        into: Option<String>,
    },
}

/// How to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    /// What.
    pub scope: RestoreScope,
    /// Drop what the restore replaces; otherwise existing objects are an error.
    pub clean: bool,
}
