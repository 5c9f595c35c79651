//! Backup: users, the one consistent dump split into streams as it is read, and the manifest.

use std::process::Command;

use crate::database::process;
use crate::database::{Connection, DatabaseError, StreamSink, major_minor, write_manifest};

use super::split::split_dump;
use super::{
    MANIFEST_STREAM, MariaDbBackupOptions, MariaDbManifest, SYSTEM_DATABASES, USERS_STREAM, query, quote_literal, tool,
};

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

pub(super) fn check_versions(client: &str, server: &str) -> Result<(), DatabaseError> {
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
