//! Restore of the whole server, one database (optionally renamed) or chosen tables with
//! `pg_restore`, and the row counts compared after it.

use std::fmt::Write as _;
use std::io::{Read, Write};

use crate::database::process::{self, RunError};
use crate::database::{
    Connection, DatabaseError, RestoreOptions, RestoreReport, RestoreScope, StreamSource, TableRows, list,
    read_manifest,
};

use super::toc::restore_tables;
use super::{
    GLOBALS_STREAM, MANIFEST_STREAM, PgDatabase, PgManifest, PgTable, connect, count_rows_of, dbname_conninfo,
    query_error, quote_ident, quote_literal, tool,
};

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

pub(super) fn resolve_table<'a>(db: &'a PgDatabase, name: &str) -> Result<&'a PgTable, DatabaseError> {
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
pub(super) fn maintenance_for(target: &str) -> &'static str {
    if target == "postgres" { "template1" } else { "postgres" }
}

pub(super) fn database_exists(conn: &Connection, name: &str) -> Result<bool, DatabaseError> {
    let mut client = connect(conn, maintenance_for(name))?;
    Ok(!client
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(query_error)?
        .is_empty())
}

/// Which of `tables` exist in database `target`.
pub(super) fn existing_tables<'a>(
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

pub(super) fn check_database_target(
    conn: &Connection,
    db: &PgDatabase,
    target: &str,
    clean: bool,
) -> Result<(), DatabaseError> {
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

pub(super) fn restore_globals(conn: &Connection, source: &dyn StreamSource) -> Result<(), DatabaseError> {
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
pub(super) fn adapt_globals(text: &str, user: &str) -> String {
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

pub(super) fn restore_database(
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

pub(super) fn pg_restore(
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

pub(super) fn count_restored<'a>(
    conn: &Connection,
    target: &str,
    tables: impl Iterator<Item = &'a PgTable>,
    report: &mut RestoreReport,
) -> Result<(), DatabaseError> {
    let mut client = connect(conn, target)?;
    for t in tables {
        let restored = count_rows_of(&mut client, t)?;
        report.tables.push(TableRows {
            database: target.to_string(),
            table: t.qualified(),
            expected: t.rows,
            restored,
        });
    }
    Ok(())
}
