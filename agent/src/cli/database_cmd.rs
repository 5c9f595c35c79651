//! The database commands: `backup-postgres`, `backup-mariadb` (dumps through the database's
//! own tools, stored as streams), `restore-postgres`, `restore-mariadb` (a server, databases
//! under their own or new names, or single tables).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hort_protocol::{DatabaseKind, RestoreReport};
use serde_json::json;

use super::CliError;
use super::args::{DbBackupArgs, DbRestoreArgs};
use super::backup_cmd::report_backup;
use super::context::{Context, write_message};
use crate::database::{self, DatabaseError, mariadb, postgres};
use crate::progress::Reporter;
use hort_engine::archiver::{BackupOptions, StreamBackup};
use hort_engine::progress::Counters;
use hort_engine::snapshot_streams::SnapshotStreams;

/// The stream that lists what a backup of `kind` holds.
fn manifest_stream(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Postgres => postgres::MANIFEST_STREAM,
        DatabaseKind::Mariadb => mariadb::MANIFEST_STREAM,
    }
}

pub(super) fn backup(ctx: &Context, kind: DatabaseKind, args: &DbBackupArgs) -> Result<(), CliError> {
    let conn = args.server.connection(kind)?;
    let (repo, lock) = ctx.open_for_backup()?;
    let mut tags = args.tags.clone();
    tags.push(format!("hort.dev/source={}", kind.source_tag()));
    let options = BackupOptions {
        tags,
        compression_level: args.compression,
        ..BackupOptions::default()
    };
    let counters = Arc::new(Counters::default());
    let reporter = Reporter::start(ctx.mode, "backup", counters.clone(), Duration::from_secs(1));
    let mut backup = StreamBackup::start(&repo, &lock, &options, counters);
    let dumped = match kind {
        DatabaseKind::Postgres => postgres::backup(
            &conn,
            &postgres::PgBackupOptions {
                databases: args.databases.clone(),
                skip_globals: args.skip_globals,
                maintenance_db: None,
            },
            &mut backup,
        )
        .map(|m| m.databases.len()),
        DatabaseKind::Mariadb => mariadb::backup(
            &conn,
            &mariadb::MariaDbBackupOptions {
                databases: args.databases.clone(),
                skip_users: args.skip_globals,
            },
            &mut backup,
        )
        .map(|m| m.databases.len()),
    };
    let result = dumped
        .map_err(|source| CliError::Database {
            context: format!(
                "backup of {} at {}:{} failed (no snapshot was written)",
                kind.display_name(),
                conn.host,
                conn.port
            ),
            source,
        })
        .and_then(|databases| {
            tracing::info!(databases, "dumps stored");
            Ok(backup.finish()?)
        });
    drop(reporter);
    let (id, snapshot) = result?;
    report_backup(ctx, &id, &snapshot, repo.backend().missed_writes())
}

/// Parses `--database FROM[=TO]`.
pub(super) fn database_mapping(spec: &str) -> Result<(String, Option<String>), CliError> {
    let (from, to) = match spec.split_once('=') {
        Some((from, to)) => (from, Some(to)),
        None => (spec, None),
    };
    if from.is_empty() || to.is_some_and(str::is_empty) {
        return Err(CliError::Usage(format!(
            "--database `{spec}`: expected FROM or FROM=TO"
        )));
    }
    Ok((from.to_owned(), to.map(str::to_owned)))
}

/// The restores that `--database` and `--table` ask for.
fn restore_scopes(args: &DbRestoreArgs) -> Result<Vec<database::RestoreScope>, CliError> {
    let mappings = args
        .databases
        .iter()
        .map(|d| database_mapping(d))
        .collect::<Result<Vec<_>, _>>()?;
    if !args.tables.is_empty() {
        let [(from, to)] = mappings.as_slice() else {
            return Err(CliError::Usage(format!(
                "--table needs exactly one --database (the one the tables are in), got {}",
                mappings.len()
            )));
        };
        return Ok(vec![database::RestoreScope::Tables {
            database: from.clone(),
            tables: args.tables.clone(),
            into: to.clone(),
        }]);
    }
    if mappings.is_empty() {
        return Ok(vec![database::RestoreScope::Server]);
    }
    Ok(mappings
        .into_iter()
        .map(|(name, rename)| database::RestoreScope::Database { name, rename })
        .collect())
}

pub(super) fn restore(ctx: &Context, kind: DatabaseKind, args: &DbRestoreArgs) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let conn = args.server.connection(kind)?;
    let scopes = restore_scopes(args)?;
    let repo = Arc::new(ctx.open_indexed()?);
    let (id, snapshot) = repo.find_tagged_snapshot(&args.snapshot, &args.tags)?;
    hort_engine::archive::make_snapshot_readable(&repo, &snapshot, ctx.archive_wait())?;
    let manifest = manifest_stream(kind);
    if !snapshot.streams.iter().any(|s| s.name == manifest) {
        return Err(CliError::Usage(format!(
            "snapshot {} is not a {} backup (it has no stream `{manifest}`)",
            id.short(),
            kind.display_name()
        )));
    }
    let counters = Arc::new(Counters::default());
    // A whole server reads every stream: the progress has a total.
    if scopes == [database::RestoreScope::Server] {
        let _ = counters.bytes_total.set(snapshot.stats.bytes);
    }
    let source = SnapshotStreams::new(repo.clone(), snapshot, id, counters.clone());
    let failed = |source: DatabaseError| CliError::Database {
        context: format!(
            "restore of snapshot {} into {} at {}:{}",
            id.short(),
            kind.display_name(),
            conn.host,
            conn.port
        ),
        source,
    };
    // Every database asked for must be in the backup before anything changes.
    let available: Vec<String> = match kind {
        DatabaseKind::Postgres => {
            postgres::manifest(&source).map(|m| m.databases.into_iter().map(|d| d.name).collect())
        }
        DatabaseKind::Mariadb => mariadb::manifest(&source).map(|m| m.databases.into_iter().map(|d| d.name).collect()),
    }
    .map_err(failed)?;
    for scope in &scopes {
        let wanted = match scope {
            database::RestoreScope::Database { name, .. } => name,
            database::RestoreScope::Tables { database, .. } => database,
            database::RestoreScope::Server => continue,
        };
        if !available.contains(wanted) {
            return Err(CliError::Usage(format!(
                "database `{wanted}` is not in snapshot {} (it has: {})",
                id.short(),
                available.join(", ")
            )));
        }
    }
    let reporter = Reporter::start(ctx.mode, "restore", counters.clone(), Duration::from_secs(1));
    let mut row_counts = BTreeMap::new();
    let mut databases = Vec::new();
    let mut result = Ok(());
    for scope in scopes {
        let options = database::RestoreOptions {
            scope,
            clean: args.clean,
        };
        let restored = match kind {
            DatabaseKind::Postgres => postgres::restore(&conn, &source, &options),
            DatabaseKind::Mariadb => mariadb::restore(&conn, &source, &options),
        };
        match restored {
            Ok(report) => {
                for t in report.tables {
                    row_counts.insert(format!("{}.{}", t.database, t.table), t.restored);
                }
                databases.extend(report.databases);
            }
            Err(e) => {
                let mut error = failed(e);
                if let (CliError::Database { context, .. }, false) = (&mut error, databases.is_empty()) {
                    context.push_str(&format!(" (restored before the failure: {})", databases.join(", ")));
                }
                result = Err(error);
                break;
            }
        }
    }
    drop(reporter);
    result?;
    let bytes = counters.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let duration = started.elapsed().as_secs_f64();
    let report = RestoreReport {
        snapshot_id: id.to_hex(),
        bytes_restored: bytes,
        files: source.opened(),
        skipped: 0,
        duration_seconds: duration,
        row_counts: row_counts.clone(),
    };
    let (message, reported) = report.encode_within_limit();
    if reported < row_counts.len() {
        tracing::warn!(
            tables = row_counts.len(),
            reported,
            "too many tables for the termination message; the summary line has every row count"
        );
    }
    write_message(&message);
    if ctx.json() {
        ctx.print_json(
            &json!({"type": "summary", "snapshot": id, "databases": databases, "bytes": bytes,
                               "streams": source.opened(), "row_counts": row_counts}),
        );
    } else {
        println!(
            "restored {} from snapshot {}: {} tables, {:.1} MiB read, {:.1} s",
            databases.join(", "),
            id.short(),
            row_counts.len(),
            bytes as f64 / 1048576.0,
            duration
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Commands};
    use super::*;

    fn scopes(args: &[&str]) -> Result<Vec<database::RestoreScope>, String> {
        let mut all = vec![
            "hort-agent",
            "restore-postgres",
            "latest",
            "--host",
            "h",
            "--db-user",
            "u",
        ];
        all.extend_from_slice(args);
        let Commands::RestorePostgres(parsed) = Cli::try_parse_from(all).unwrap().command else {
            unreachable!("parsed as restore-postgres")
        };
        restore_scopes(&parsed).map_err(|e| e.to_string())
    }

    #[test]
    fn database_and_table_options_become_restore_scopes() {
        use database::RestoreScope;
        assert_eq!(scopes(&[]), Ok(vec![RestoreScope::Server]));
        assert_eq!(
            scopes(&["--database", "app=copy", "--database", "billing"]),
            Ok(vec![
                RestoreScope::Database {
                    name: "app".into(),
                    rename: Some("copy".into())
                },
                RestoreScope::Database {
                    name: "billing".into(),
                    rename: None
                },
            ])
        );
        assert_eq!(
            scopes(&["--database", "app", "--table", "orders", "--table", "public.items"]),
            Ok(vec![RestoreScope::Tables {
                database: "app".into(),
                tables: vec!["orders".into(), "public.items".into()],
                into: None
            }])
        );
        let err = scopes(&["--table", "orders"]).unwrap_err();
        assert!(err.contains("--table needs exactly one --database"), "{err}");
        let err = scopes(&["--database", "app=", "--database", "b"]).unwrap_err();
        assert!(err.contains("--database `app=`: expected FROM or FROM=TO"), "{err}");
    }
}
