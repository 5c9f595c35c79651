//! Restore of the whole server, one database (optionally renamed) or chosen tables through the
//! `mariadb` client.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};

use crate::database::process::{self, Feed};
use crate::database::{
    Connection, DatabaseError, RestoreOptions, RestoreReport, RestoreScope, StreamSource, TableRows, list,
    read_manifest,
};

use super::{
    FOOTER_STREAM, HEADER_STREAM, MANIFEST_STREAM, MariaDbDatabase, MariaDbManifest, MariaDbTable, PartKind,
    USERS_STREAM, classify, query, quote_ident, quote_literal, tool,
};

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
pub(super) enum Segment {
    Text(String),
    Stream(String),
    /// The users stream, without the accounts every server has and the restoring user.
    Users(String),
}

/// Accounts that exist on every server (and whose grants only root may give).
pub(super) const SYSTEM_ACCOUNTS: [&str; 3] =
    ["`root`@`localhost`", "`mariadb.sys`@`localhost`", "`mysql`@`localhost`"];

/// Leaves out of a `--system=users` dump the statements about system accounts, `PROXY` grants
/// and the restoring user (whose password and grants on the target stay as they are).
pub(super) fn adapt_users(text: &str, user: &str) -> String {
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

pub(super) fn run_restore(
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
pub(super) fn check_empty(conn: &Connection, target: &str) -> Result<(), DatabaseError> {
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

pub(super) fn count_rows(
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
