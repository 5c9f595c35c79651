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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::process::{self, RunError};
use super::tls;
use super::{
    Connection, DatabaseError, RestoreOptions, RestoreReport, RestoreScope, StreamSink, StreamSource, TableRows,
    encode_name, list, major_minor, read_manifest, write_manifest,
};

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

/// Reads the manifest of a PostgreSQL backup from `source` (e.g. to check names before a restore).
pub fn manifest(source: &dyn StreamSource) -> Result<PgManifest, DatabaseError> {
    read_manifest(source, MANIFEST_STREAM)
}

/// Backs up the server into `sink`: globals, one dump per database, then the manifest.
pub fn backup(
    conn: &Connection,
    options: &PgBackupOptions,
    sink: &mut dyn StreamSink,
) -> Result<PgManifest, DatabaseError> {
    let maintenance = options.maintenance_db.as_deref().unwrap_or("postgres");
    let mut client = connect(conn, maintenance)?;
    let (server_version, server_major) = server_major(&mut client)?;
    let client_version = client_version(conn, "pg_dump")?;
    let client_major = major_minor(&client_version).map(|v| v.0).unwrap_or(0);
    if client_major < server_major {
        return Err(DatabaseError::ClientTooOld {
            tool: "pg_dump".into(),
            client: client_version,
            server: server_version,
        });
    }
    let rows = client
        .query(
            "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype \
             FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname",
            &[],
        )
        .map_err(query_error)?;
    let mut all: BTreeMap<String, PgDatabase> = rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            (
                name.clone(),
                PgDatabase {
                    stream: database_stream(&name),
                    name,
                    owner: r.get(1),
                    encoding: r.get(2),
                    collate: r.get(3),
                    ctype: r.get(4),
                    tables: Vec::new(),
                },
            )
        })
        .collect();
    drop(client);
    let selected: Vec<PgDatabase> = if options.databases.is_empty() {
        all.into_values().collect()
    } else {
        let mut selected = Vec::new();
        for name in &options.databases {
            selected.push(
                all.remove(name)
                    .ok_or_else(|| DatabaseError::NoSuchDatabase(name.clone()))?,
            );
        }
        selected
    };
    // The size on disk estimates the dump's size (the progress total); without it (no
    // privilege to ask), progress has no total.
    let names: Vec<String> = selected.iter().map(|d| d.name.clone()).collect();
    match connect(conn, maintenance).and_then(|mut c| {
        c.query_one(
            "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint FROM pg_database WHERE datname = ANY($1)",
            &[&names],
        )
        .map_err(query_error)
    }) {
        Ok(row) => sink.expect_total(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
        Err(e) => tracing::debug!(error = %e, "no size estimate for progress"),
    }

    if !options.skip_globals {
        let mut cmd = tool(conn, "pg_dumpall", maintenance);
        cmd.args(["--globals-only", "--no-sync"])
            .arg("--database")
            .arg(dbname_conninfo(maintenance));
        process::dump(cmd, "pg_dumpall", GLOBALS_STREAM, |out| {
            sink.put(GLOBALS_STREAM, out).map_err(|source| DatabaseError::Sink {
                stream: GLOBALS_STREAM.into(),
                source,
            })
        })?;
    }

    let mut databases = Vec::new();
    for mut db in selected {
        let mut client = connect(conn, &db.name)?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(query_error)?;
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .map_err(query_error)?
            .get(0);
        let mut tables = list_tables(&mut client)?;
        let mut cmd = tool(conn, "pg_dump", &db.name);
        cmd.args(["--format=custom", "--compress=0", "--no-sync"])
            .arg(format!("--snapshot={snapshot}"));
        let stream = db.stream.clone();
        // The rows are counted in a second session that imports the same snapshot, while
        // the dump runs: the counts see exactly the dumped data without delaying the dump.
        let (dumped, counted) = std::thread::scope(|scope| {
            let counting = scope.spawn(|| count_rows(conn, &db.name, &snapshot, &mut tables));
            let dumped = process::dump(cmd, "pg_dump", &stream, |out| {
                sink.put(&stream, out).map_err(|source| DatabaseError::Sink {
                    stream: stream.clone(),
                    source,
                })
            });
            (dumped, counting.join().expect("the row-counting thread does not panic"))
        });
        dumped?;
        counted?;
        db.tables = tables;
        client.batch_execute("COMMIT").map_err(query_error)?;
        databases.push(db);
    }

    let manifest = PgManifest {
        version: 1,
        server_version,
        client_version,
        globals: !options.skip_globals,
        databases,
    };
    write_manifest(sink, MANIFEST_STREAM, &manifest)?;
    Ok(manifest)
}

/// Tables of the connected database with their indexes and owned sequences (rows not yet
/// counted), read in the caller's transaction.
fn list_tables(client: &mut postgres::Client) -> Result<Vec<PgTable>, DatabaseError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text,
                ARRAY(SELECT ic.relname::text FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
                      WHERE x.indrelid = c.oid
                        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = c.oid)
                      ORDER BY 1),
                ARRAY(SELECT s.relname::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                        AND d.refobjid = c.oid AND s.relkind = 'S' AND d.deptype IN ('a', 'i')
                      ORDER BY 1)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r'
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                               AND e.objid = c.oid AND e.deptype = 'e')
             ORDER BY 1, 2",
            &[],
        )
        .map_err(query_error)?;
    Ok(rows
        .iter()
        .map(|r| PgTable {
            schema: r.get(0),
            name: r.get(1),
            rows: 0,
            indexes: r.get(2),
            sequences: r.get(3),
        })
        .collect())
}

/// Counts the rows of `tables` of database `db` in a new session that imports the exported
/// `snapshot` (the dump's), so the counts are those of the dumped data.
fn count_rows(conn: &Connection, db: &str, snapshot: &str, tables: &mut [PgTable]) -> Result<(), DatabaseError> {
    let mut client = connect(conn, db)?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(snapshot)
        ))
        .map_err(query_error)?;
    for table in tables.iter_mut() {
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
        table.rows = count as u64;
    }
    client.batch_execute("COMMIT").map_err(query_error)
}

/// Restores from `source` as `options` say; returns the row counts (all of which matched).
pub fn restore(
    conn: &Connection,
    source: &dyn StreamSource,
    options: &RestoreOptions,
) -> Result<RestoreReport, DatabaseError> {
    let manifest: PgManifest = read_manifest(source, MANIFEST_STREAM)?;
    let find_db = |name: &str| {
        manifest.databases.iter().find(|d| d.name == name).ok_or_else(|| {
            DatabaseError::NotInBackup(format!(
                "database `{name}` (it has: {})",
                list(manifest.databases.iter().map(|d| d.name.as_str()))
            ))
        })
    };
    let mut report = RestoreReport::default();
    match &options.scope {
        RestoreScope::Server => {
            // Check every database first, so a refused restore changes nothing.
            for db in &manifest.databases {
                check_database_target(conn, db, &db.name, options.clean)?;
            }
            if manifest.globals {
                restore_globals(conn, source)?;
            }
            for db in &manifest.databases {
                restore_database(conn, source, db, &db.name, options.clean, &mut report)?;
            }
        }
        RestoreScope::Database { name, rename } => {
            let db = find_db(name)?;
            let target = rename.as_deref().unwrap_or(name);
            check_database_target(conn, db, target, options.clean)?;
            restore_database(conn, source, db, target, options.clean, &mut report)?;
        }
        RestoreScope::Tables { database, tables, into } => {
            let db = find_db(database)?;
            let target = into.as_deref().unwrap_or(database);
            let chosen = tables
                .iter()
                .map(|t| resolve_table(db, t))
                .collect::<Result<Vec<&PgTable>, DatabaseError>>()?;
            restore_tables(conn, source, db, &chosen, target, options.clean, &mut report)?;
        }
    }
    report.check()
}

fn resolve_table<'a>(db: &'a PgDatabase, name: &str) -> Result<&'a PgTable, DatabaseError> {
    let matches: Vec<&PgTable> = match name.split_once('.') {
        Some((schema, table)) if db.tables.iter().any(|t| t.schema == schema && t.name == table) => db
            .tables
            .iter()
            .filter(|t| t.schema == schema && t.name == table)
            .collect(),
        _ => db.tables.iter().filter(|t| t.name == name).collect(),
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(DatabaseError::NotInBackup(format!(
            "table `{name}` in database `{}` (it has: {})",
            db.name,
            list(db.tables.iter().map(|t| t.qualified()))
        ))),
        _ => Err(DatabaseError::NotInBackup(format!(
            "single table `{name}` in database `{}` (it is in several schemas: give schema.table)",
            db.name
        ))),
    }
}

/// The database to connect to for creating or dropping `target`.
fn maintenance_for(target: &str) -> &'static str {
    if target == "postgres" { "template1" } else { "postgres" }
}

fn database_exists(conn: &Connection, name: &str) -> Result<bool, DatabaseError> {
    let mut client = connect(conn, maintenance_for(name))?;
    Ok(!client
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(query_error)?
        .is_empty())
}

/// Which of `tables` exist in database `target`.
fn existing_tables<'a>(
    conn: &Connection,
    target: &str,
    tables: impl Iterator<Item = &'a PgTable>,
) -> Result<Vec<String>, DatabaseError> {
    let mut client = connect(conn, target)?;
    let mut existing = Vec::new();
    for t in tables {
        let name = format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name));
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .map_err(query_error)?;
        if row.get::<_, bool>(0) {
            existing.push(format!("table {}", t.qualified()));
        }
    }
    Ok(existing)
}

fn check_database_target(conn: &Connection, db: &PgDatabase, target: &str, clean: bool) -> Result<(), DatabaseError> {
    if clean || !database_exists(conn, target)? {
        return Ok(());
    }
    let existing = existing_tables(conn, target, db.tables.iter())?;
    if existing.is_empty() {
        Ok(())
    } else {
        Err(DatabaseError::ExistingObjects {
            database: target.to_string(),
            objects: existing,
        })
    }
}

fn restore_globals(conn: &Connection, source: &dyn StreamSource) -> Result<(), DatabaseError> {
    let mut text = String::new();
    source
        .open(GLOBALS_STREAM)
        .and_then(|mut r| r.read_to_string(&mut text))
        .map_err(|e| DatabaseError::Source {
            stream: GLOBALS_STREAM.into(),
            reason: e.to_string(),
        })?;
    // psql runs backslash commands (`\!` runs a shell command) wherever they appear outside
    // quotes. A dump of roles needs none, so the replay runs in psql's restricted mode, left
    // only with a random key the content cannot know: any backslash command in the stream
    // fails the restore before it runs.
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| DatabaseError::Tool {
        tool: "psql".into(),
        reason: format!("no random key for restricted mode: {e}"),
    })?;
    let sql = format!("\\restrict {}\n{}", hex::encode(key), adapt_globals(&text, &conn.user));
    let mut cmd = tool(conn, "psql", "postgres");
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
    process::run(
        cmd,
        "psql",
        Some(Box::new(move |w: &mut dyn Write| Ok(w.write_all(sql.as_bytes())?))),
    )
    .map_err(|e| {
        e.into_error(|reason| DatabaseError::RestoreFailed {
            database: "(roles and tablespaces)".into(),
            reason,
        })
    })?;
    Ok(())
}

/// Makes `pg_dumpall --globals-only` output re-runnable on a server that has some of the roles:
/// `CREATE ROLE` of an existing role is skipped, and the restoring user's own role is not
/// altered (its password and attributes on the target stay as they are). The dump's own
/// `\restrict`/`\unrestrict` lines go: the replay brings its own.
fn adapt_globals(text: &str, user: &str) -> String {
    let own = [
        format!("ALTER ROLE {user} "),
        format!("ALTER ROLE {} ", quote_ident(user)),
    ];
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(role) = line.strip_prefix("CREATE ROLE ").and_then(|r| r.strip_suffix(';')) {
            let _ = writeln!(
                out,
                "DO $hort$BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END$hort$;"
            );
        } else if own.iter().any(|p| line.starts_with(p.as_str()))
            || line.starts_with("\\restrict ")
            || line.starts_with("\\unrestrict ")
        {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn restore_database(
    conn: &Connection,
    source: &dyn StreamSource,
    db: &PgDatabase,
    target: &str,
    clean: bool,
    report: &mut RestoreReport,
) -> Result<(), DatabaseError> {
    let exists = database_exists(conn, target)?;
    {
        let mut client = connect(conn, maintenance_for(target))?;
        if exists && clean {
            client
                .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", quote_ident(target)))
                .map_err(query_error)?;
        }
        if !exists || clean {
            let owner_exists = !client
                .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&db.owner])
                .map_err(query_error)?
                .is_empty();
            let mut sql = format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                quote_ident(target),
                quote_literal(&db.encoding),
                quote_literal(&db.collate),
                quote_literal(&db.ctype)
            );
            if owner_exists {
                let _ = write!(sql, " OWNER {}", quote_ident(&db.owner));
            }
            client.batch_execute(&sql).map_err(query_error)?;
        }
    }
    pg_restore(conn, source, &db.stream, target, &[])?;
    report.databases.push(target.to_string());
    count_restored(conn, target, db.tables.iter(), report)
}

fn restore_tables(
    conn: &Connection,
    source: &dyn StreamSource,
    db: &PgDatabase,
    tables: &[&PgTable],
    target: &str,
    clean: bool,
    report: &mut RestoreReport,
) -> Result<(), DatabaseError> {
    let existing = existing_tables(conn, target, tables.iter().copied())?;
    if !existing.is_empty() && !clean {
        return Err(DatabaseError::ExistingObjects {
            database: target.to_string(),
            objects: existing,
        });
    }
    // `pg_restore -t` leaves out indexes, constraints and triggers: select the table's TOC
    // entries ourselves and restore with a list (`-L`).
    let toc = process::run(
        {
            let mut cmd = Command::new(conn.tool("pg_restore"));
            cmd.arg("--list");
            cmd
        },
        "pg_restore",
        Some(Box::new(|w: &mut dyn Write| {
            let mut r = source.open(&db.stream).map_err(|e| DatabaseError::Source {
                stream: db.stream.clone(),
                reason: e.to_string(),
            })?;
            // pg_restore stops reading after the table of contents.
            match process::copy_stream(&mut r, w, &db.stream) {
                Err(DatabaseError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        })),
    )
    .map_err(|e| {
        e.into_error(|reason| DatabaseError::Source {
            stream: db.stream.clone(),
            reason,
        })
    })?;
    let list = select_toc(&String::from_utf8_lossy(&toc), tables);
    let mut list_file = tempfile_in_tmp("hort-pg-restore-list")?;
    list_file.1.write_all(list.as_bytes())?;
    drop(list_file.1);
    let mut extra = vec!["--use-list".to_string(), list_file.0.display().to_string()];
    if clean {
        extra.extend(["--clean".to_string(), "--if-exists".to_string()]);
    }
    let result = pg_restore(conn, source, &db.stream, target, &extra);
    let _ = std::fs::remove_file(&list_file.0);
    result?;
    report.databases.push(target.to_string());
    count_restored(conn, target, tables.iter().copied(), report)
}

/// A new private file in the temporary directory.
fn tempfile_in_tmp(prefix: &str) -> Result<(std::path::PathBuf, std::fs::File), DatabaseError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| DatabaseError::Io(std::io::Error::other(e.to_string())))?;
    let path = std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(random)));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    Ok((path, file))
}

/// The lines of a `pg_restore --list` that belong to `tables`: the table, its data, its
/// constraints, indexes, triggers, defaults, policies, comments, grants and owned sequences.
fn select_toc(toc: &str, tables: &[&PgTable]) -> String {
    let mut exact: Vec<String> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    for t in tables {
        let (s, n) = (&t.schema, &t.name);
        exact.extend([format!("TABLE {s} {n}"), format!("TABLE DATA {s} {n}")]);
        exact.extend([format!("COMMENT {s} TABLE {n}"), format!("ACL {s} TABLE {n}")]);
        exact.push(format!("ROW SECURITY {s} {n}"));
        for desc in ["CONSTRAINT", "FK CONSTRAINT", "TRIGGER", "DEFAULT", "POLICY", "RULE"] {
            prefixes.push(format!("{desc} {s} {n} "));
        }
        prefixes.push(format!("COMMENT {s} COLUMN {n}."));
        for i in &t.indexes {
            exact.push(format!("INDEX {s} {i}"));
        }
        for q in &t.sequences {
            for desc in ["SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "ACL"] {
                exact.push(format!("{desc} {s} {q}"));
            }
            exact.push(format!("ACL {s} SEQUENCE {q}"));
        }
    }
    let mut out = String::new();
    for line in toc.lines() {
        // `<dump id>; <catalog oid> <object oid> <desc> <schema> <name> <owner>`
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        let mut fields = rest.splitn(3, ' ');
        let (Some(_), Some(_), Some(entry)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        // The entry ends with the owner (one word, or none).
        let without_owner = entry.rsplit_once(' ').map(|(e, _)| e).unwrap_or(entry);
        let selected = exact.iter().any(|e| e == entry || e == without_owner)
            || prefixes.iter().any(|p| entry.starts_with(p.as_str()));
        if selected {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn pg_restore(
    conn: &Connection,
    source: &dyn StreamSource,
    stream: &str,
    target: &str,
    extra: &[String],
) -> Result<(), DatabaseError> {
    let mut cmd = tool(conn, "pg_restore", target);
    cmd.args(["--single-transaction", "--exit-on-error", "--no-password", "--dbname"])
        .arg(dbname_conninfo(target));
    cmd.args(extra);
    let feed = move |w: &mut dyn Write| {
        let mut r = source.open(stream).map_err(|e| DatabaseError::Source {
            stream: stream.to_string(),
            reason: e.to_string(),
        })?;
        // With `--use-list`, pg_restore stops reading after the last data it needs; whether it
        // then succeeded is its exit status.
        match process::copy_stream(&mut r, w, stream) {
            Err(DatabaseError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    };
    process::run(cmd, "pg_restore", Some(Box::new(feed))).map_err(|e| match e {
        RunError::Exit(reason) => DatabaseError::RestoreFailed {
            database: target.to_string(),
            reason,
        },
        other => other.into_error(|reason| DatabaseError::RestoreFailed {
            database: target.to_string(),
            reason,
        }),
    })?;
    Ok(())
}

fn count_restored<'a>(
    conn: &Connection,
    target: &str,
    tables: impl Iterator<Item = &'a PgTable>,
    report: &mut RestoreReport,
) -> Result<(), DatabaseError> {
    let mut client = connect(conn, target)?;
    for t in tables {
        let count: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM ONLY {}.{}",
                    quote_ident(&t.schema),
                    quote_ident(&t.name)
                ),
                &[],
            )
            .map_err(query_error)?
            .get(0);
        report.tables.push(TableRows {
            database: target.to_string(),
            table: t.qualified(),
            expected: t.rows,
            restored: count as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_become_quoted_connection_strings() {
        assert_eq!(dbname_conninfo("app"), "dbname='app'");
        assert_eq!(
            dbname_conninfo(r"x' host=evil \"),
            r"dbname='x\' host=evil \\'",
            "quote and backslash escaped: the whole name stays the database name"
        );
    }

    fn table(name: &str, indexes: &[&str], sequences: &[&str]) -> PgTable {
        PgTable {
            schema: "public".into(),
            name: name.into(),
            rows: 0,
            indexes: indexes.iter().map(|s| s.to_string()).collect(),
            sequences: sequences.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn toc_selection_takes_the_table_and_its_subsidiaries_only() {
        let toc = "\
;
; Archive created at 2026-11-24 17:00:00 UTC
216; 1259 16390 TABLE public a postgres
217; 1259 16391 SEQUENCE public a_id_seq postgres
3340; 0 0 SEQUENCE OWNED BY public a_id_seq postgres
218; 1259 16392 TABLE public ab postgres
3190; 2604 16393 DEFAULT public a id postgres
3330; 0 16390 TABLE DATA public a postgres
3331; 0 16392 TABLE DATA public ab postgres
3341; 0 0 SEQUENCE SET public a_id_seq postgres
3192; 2606 16395 CONSTRAINT public a a_pkey postgres
3193; 2606 16397 CONSTRAINT public ab ab_pkey postgres
3194; 1259 16398 INDEX public a_v_idx postgres
3195; 2620 16399 TRIGGER public a trg postgres
3196; 2606 16400 FK CONSTRAINT public ab ab_a_fkey postgres
";
        let a = table("a", &["a_v_idx"], &["a_id_seq"]);
        let list = select_toc(toc, &[&a]);
        let ids: Vec<&str> = list.lines().map(|l| l.split(';').next().unwrap()).collect();
        assert_eq!(
            ids,
            ["216", "217", "3340", "3190", "3330", "3341", "3192", "3194", "3195"]
        );
    }

    #[test]
    fn globals_become_rerunnable_and_spare_the_restoring_role() {
        let text = "CREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'x';\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\n";
        let out = adapt_globals(text, "postgres");
        assert!(out.contains("BEGIN CREATE ROLE app; EXCEPTION WHEN duplicate_object"));
        assert!(out.contains("ALTER ROLE app WITH LOGIN"));
        assert!(!out.contains("ALTER ROLE postgres"));
        let restricted = "\\restrict k3y\nCREATE ROLE app;\n\\unrestrict k3y\n";
        assert!(!adapt_globals(restricted, "postgres").contains("restrict"));
    }
}
