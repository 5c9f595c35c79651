//! Table restores: the entries of `pg_restore --list` that belong to the chosen tables,
//! restored with that list.

use std::io::Write;
use std::process::Command;

use crate::database::process;
use crate::database::{Connection, DatabaseError, RestoreReport, StreamSource};

use super::restore::{count_restored, existing_tables, pg_restore};
use super::{PgDatabase, PgTable};

pub(super) fn restore_tables(
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
pub(super) fn tempfile_in_tmp(prefix: &str) -> Result<(std::path::PathBuf, std::fs::File), DatabaseError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| DatabaseError::Io(std::io::Error::other(e.to_string())))?;
    let path = std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(random)));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    Ok((path, file))
}

/// The lines of a `pg_restore --list` that belong to `tables`: the table, its data, its
/// constraints, indexes, triggers, defaults, policies, comments, grants and owned sequences.
pub(super) fn select_toc(toc: &str, tables: &[&PgTable]) -> String {
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
