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
//!
//! Files: this one holds the streams' names, the manifest and the client helpers; `dump.rs`
//! the backup, `split.rs` the splitting of the dump, `restore.rs` the restore.

use std::io::Write;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::process::{self};
use super::tls;
use super::{Connection, DatabaseError, StreamSource, read_manifest};

mod dump;
mod restore;
mod split;

pub use dump::backup;
pub use restore::restore;

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

#[cfg(test)]
mod tests;
