//! PostgreSQL: backup with `pg_dumpall --globals-only` and one `pg_dump` per database;
//! restore of the whole server, one database (optionally renamed) or chosen tables.
//!
//! # Streams
//! - `postgres/globals.sql`: roles and tablespaces (`pg_dumpall --globals-only`).
//! - `postgres/db/<name>.dump`: `pg_dump --format=custom --compress=0` of one database
//!   (names encoded with [`encode_name`]). The custom format lets `pg_restore` pick single
//!   tables; it is written uncompressed so the engine deduplicates it.
//! - `postgres/manifest.json` ([`PgManifest`]), written last: versions, databases, and per
//!   table its row count, indexes and owned sequences.
//!
//! # Consistency and row counts
//! For each database the agent opens a `REPEATABLE READ READ ONLY` transaction, exports its
//! snapshot (`pg_export_snapshot()`), runs `pg_dump --snapshot=<id>` and, at the same time in
//! a second session that imports the snapshot, counts the rows of every table: the dump and
//! the recorded counts see exactly the same data, so after a restore the counts must match
//! exactly. Each database is consistent in itself
//! (PostgreSQL has no snapshot across databases; neither has `pg_dumpall`).
//!
//! Databases are dumped one after another (the sink takes one stream at a time; `pg_dump -j`
//! needs the directory format, i.e. a spool directory, which is not done).
//!
//! # Restore
//! `pg_restore --single-transaction --exit-on-error`: a failing restore leaves the target as
//! it was, except that a database the restore created stays (empty) and one that `clean`
//! dropped stays dropped. Database-level settings (`ALTER DATABASE … SET`, comment, grants on
//! the database) are not restored: the agent creates the database itself so it can rename it.
//! A table restore needs the table's schema to exist in the target. Without `clean`, objects
//! that exist already are an error naming them, checked before anything is changed; with
//! `clean` a restored database is dropped and re-created, restored tables are dropped first.
//!
//! Files: this one holds the streams' names, the manifest and the connection helpers;
//! `dump.rs` the backup, `restore.rs` the restore, `toc.rs` the table restores.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::process::{self};
use super::tls;
use super::{Connection, DatabaseError, StreamSource, encode_name, read_manifest};

mod dump;
mod restore;
mod toc;

pub use dump::backup;
pub use restore::restore;

/// Stream of the roles and tablespaces.
pub const GLOBALS_STREAM: &str = "postgres/globals.sql";
/// Stream of the manifest, written last.
pub const MANIFEST_STREAM: &str = "postgres/manifest.json";

/// Stream holding the dump of database `name`.
pub fn database_stream(name: &str) -> String {
    format!("postgres/db/{}.dump", encode_name(name))
}

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct PgBackupOptions {
    /// Databases to dump; every database that accepts connections (templates excluded) when empty.
    pub databases: Vec<String>,
    /// Leave out `globals.sql` (e.g. for a non-superuser that may not read roles).
    pub skip_globals: bool,
    /// Database to connect to for listing databases and for `pg_dumpall`; `postgres` when `None`.
    pub maintenance_db: Option<String>,
}

/// Describes a PostgreSQL backup; stored as [`MANIFEST_STREAM`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgManifest {
    /// Manifest format version (1).
    pub version: u32,
    /// `server_version` of the server.
    pub server_version: String,
    /// Version of `pg_dump`.
    pub client_version: String,
    /// Whether [`GLOBALS_STREAM`] was written.
    pub globals: bool,
    /// The dumped databases.
    pub databases: Vec<PgDatabase>,
}

/// One dumped database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgDatabase {
    /// Name.
    pub name: String,
    /// Stream with its dump.
    pub stream: String,
    /// Owner role.
    pub owner: String,
    /// Encoding, e.g. `UTF8`.
    pub encoding: String,
    /// `LC_COLLATE`.
    pub collate: String,
    /// `LC_CTYPE`.
    pub ctype: String,
    /// Tables (ordinary, not extension members), with row counts from the dump's snapshot.
    pub tables: Vec<PgTable>,
}

/// One table of a dumped database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgTable {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Rows in the dump.
    pub rows: u64,
    /// Indexes that are not constraints (restored with the table).
    pub indexes: Vec<String>,
    /// Sequences owned by the table's columns (serial, identity).
    pub sequences: Vec<String>,
}

impl PgTable {
    /// `schema.name`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A libpq connection string that sets only the database, for the tools' `--dbname`: they
/// read an argument containing `=` as a connection string, so a database named
/// `x host=elsewhere` would otherwise send the password to another server.
fn dbname_conninfo(name: &str) -> String {
    format!("dbname='{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub(super) fn connect(conn: &Connection, db: &str) -> Result<postgres::Client, DatabaseError> {
    let mut config = postgres::Config::new();
    config
        .host(&conn.host)
        .port(conn.port)
        .user(&conn.user)
        .dbname(db)
        .application_name("hort-agent")
        .connect_timeout(Duration::from_secs(15));
    if let Some(password) = &conn.password {
        config.password(password.expose());
    }
    let (mode, connector) = tls::postgres_connector(&conn.tls)?;
    config.ssl_mode(mode);
    config.connect(connector).map_err(|e| connect_error(conn, db, &e))
}

pub(super) fn error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

fn connect_error(conn: &Connection, db: &str, e: &postgres::Error) -> DatabaseError {
    use postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            DatabaseError::Authentication {
                user: conn.user.clone(),
                host: conn.host.clone(),
                port: conn.port,
                reason: error_text(e),
            }
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => DatabaseError::NoSuchDatabase(db.to_string()),
        Some(_) => DatabaseError::Query(error_text(e)),
        None => DatabaseError::Unreachable {
            host: conn.host.clone(),
            port: conn.port,
            reason: error_text(e),
        },
    }
}

fn query_error(e: postgres::Error) -> DatabaseError {
    DatabaseError::Query(error_text(&e))
}

/// A client tool with the connection in its environment (password included), never in argv.
fn tool(conn: &Connection, name: &str, db: &str) -> Command {
    let mut cmd = Command::new(conn.tool(name));
    cmd.env("PGHOST", &conn.host)
        .env("PGPORT", conn.port.to_string())
        .env("PGUSER", &conn.user)
        .env("PGDATABASE", db)
        .env("PGAPPNAME", "hort-agent")
        .env("PGCONNECT_TIMEOUT", "15")
        .env_remove("PGSERVICE");
    tls::postgres_env(&conn.tls, &mut cmd);
    match &conn.password {
        Some(p) => cmd.env("PGPASSWORD", p.expose()),
        None => cmd.env_remove("PGPASSWORD"),
    };
    cmd
}

/// Version of a client tool (`pg_dump (PostgreSQL) 15.18 (Debian …)` → `15.18 (Debian …)`).
fn client_version(conn: &Connection, name: &str) -> Result<String, DatabaseError> {
    let mut cmd = Command::new(conn.tool(name));
    cmd.arg("--version");
    let out = process::run(cmd, name, None).map_err(|e| {
        e.into_error(|reason| DatabaseError::Tool {
            tool: name.to_string(),
            reason,
        })
    })?;
    let text = String::from_utf8_lossy(&out);
    Ok(text.trim().rsplit(") ").next().unwrap_or(text.trim()).to_string())
}

fn server_major(client: &mut postgres::Client) -> Result<(String, u32), DatabaseError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
            &[],
        )
        .map_err(query_error)?;
    let version: String = row.get(0);
    let num: i32 = row.get(1);
    Ok((version, (num / 10000) as u32))
}

/// The rows of `table` (not of its partitions or children) as `client` sees them.
fn count_rows_of(client: &mut postgres::Client, table: &PgTable) -> Result<u64, DatabaseError> {
    let count: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM ONLY {}.{}",
                quote_ident(&table.schema),
                quote_ident(&table.name)
            ),
            &[],
        )
        .map_err(query_error)?
        .get(0);
    Ok(count as u64)
}

/// Reads the manifest of a PostgreSQL backup from `source` (e.g. to check names before a restore).
pub fn manifest(source: &dyn StreamSource) -> Result<PgManifest, DatabaseError> {
    read_manifest(source, MANIFEST_STREAM)
}

#[cfg(test)]
mod tests;
