//! `catalog put` and `catalog show`: Hort's own catalog in the repository
//! (`hort_protocol::catalog`), and storing it after a backup when the operator gave one.
//!
//! A catalog is stored as a snapshot of one stream with its own tags and host, so user
//! backups' retention never counts it; `put` keeps the newest
//! [`catalog::KEPT_PER_NAMESPACE`] of its namespace and forgets older ones.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::SecondsFormat;
use clap::Subcommand;
use hort_engine::archiver::{self, BackupOptions, StreamInput};
use hort_engine::filter::Selection;
use hort_engine::id::Id;
use hort_engine::progress::Counters;
use hort_engine::repository::IndexedRepository;
use hort_engine::retention::Decision;
use hort_engine::snapshot::Snapshot;
use hort_protocol::catalog::{self, Catalog, CatalogList, StoredCatalog};
use hort_protocol::report::encode;
use hort_protocol::{BackupReport, env};

use super::CliError;
use super::context::{Context, write_report, written_report};

/// The `catalog` commands.
#[derive(Debug, Subcommand)]
pub(super) enum CatalogCommand {
    /// Store a catalog (a `hort_protocol::Catalog` as JSON, from `--file`, `-` for stdin, or
    /// the variable HORT_CATALOG) as a catalog snapshot of its namespace.
    Put {
        /// Read the catalog from this file (`-`: stdin) instead of HORT_CATALOG.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Print the newest catalog of each namespace (with `--json`: a `hort_protocol::CatalogList`).
    Show {
        /// Only this namespace's.
        #[arg(long)]
        namespace: Option<String>,
    },
}

/// Runs a `catalog` command.
pub(super) fn run(ctx: &Context, command: &CatalogCommand) -> Result<(), CliError> {
    match command {
        CatalogCommand::Put { file } => {
            let text = match file.as_deref() {
                Some(path) if path.as_os_str() == "-" => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .map_err(|e| CliError::Usage(format!("reading the catalog from stdin: {e}")))?;
                    text
                }
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| CliError::Usage(format!("catalog file {}: {e}", path.display())))?,
                None => std::env::var(env::CATALOG)
                    .map_err(|_| CliError::Usage(format!("no catalog: set {} or give --file", env::CATALOG)))?,
            };
            let id = put(ctx, parse(&text)?)?;
            if ctx.json() {
                ctx.print_json(&serde_json::json!({"type": "summary", "snapshot": id}));
            } else {
                println!("catalog saved as snapshot {}", id.short());
            }
            Ok(())
        }
        CatalogCommand::Show { namespace } => show(ctx, namespace.as_deref()),
    }
}

fn parse(text: &str) -> Result<Catalog, CliError> {
    let catalog: Catalog =
        serde_json::from_str(text).map_err(|e| CliError::Usage(format!("the catalog is not a Hort catalog ({e})")))?;
    if catalog.version != catalog::VERSION {
        return Err(CliError::Usage(format!(
            "the catalog is of format version {}, this agent writes {}: run the hort-agent image of the operator's release",
            catalog.version,
            catalog::VERSION
        )));
    }
    Ok(catalog)
}

/// After a backup command: when the operator gave a catalog ([`env::CATALOG`]) and the backup
/// succeeded, records the backup's snapshot in it and stores it. The backup's result is
/// returned unchanged: its snapshot is saved whatever becomes of the catalog, so a catalog
/// that cannot be stored is logged as a warning, not a failed backup.
pub(super) fn after_backup(ctx: &Context, result: Result<(), CliError>) -> Result<(), CliError> {
    result?;
    let Ok(text) = std::env::var(env::CATALOG) else {
        return Ok(());
    };
    let stored = parse(&text).and_then(|mut catalog| {
        let repo = ctx.open()?;
        let tags = [
            format!("hort.dev/namespace={}", catalog.namespace),
            format!("hort.dev/backup-job={}", catalog.written_by),
        ];
        let newest = repo
            .snapshots()?
            .into_iter()
            .filter(|(_, s)| tags.iter().all(|t| s.tags.contains(t)))
            .max_by_key(|(_, s)| s.time);
        if let Some((id, s)) = newest {
            let time = s.time.to_rfc3339_opts(SecondsFormat::Secs, true);
            catalog.record_success(&catalog.written_by.clone(), &id.to_hex(), &time);
        }
        put(ctx, catalog)
    });
    if let Err(e) = stored {
        tracing::warn!(error = %e, "the backup is saved, but Hort's catalog could not be stored in the repository");
        // The operator reads the report: it says so in the BackupJob's status.
        if let Some(mut report) = written_report::<BackupReport>() {
            report.catalog_error = Some(e.to_string());
            write_report(&report);
        }
    }
    Ok(())
}

/// The catalog snapshots of the repository, by namespace, oldest first.
fn catalogs(repo: &IndexedRepository) -> Result<BTreeMap<String, Vec<(Id, Snapshot)>>, CliError> {
    let mut by_namespace: BTreeMap<String, Vec<(Id, Snapshot)>> = BTreeMap::new();
    let prefix = catalog::namespace_tag("");
    for (id, s) in repo.snapshots()? {
        if !s.tags.iter().any(|t| t == catalog::TAG) {
            continue;
        }
        if let Some(ns) = s.tags.iter().find_map(|t| t.strip_prefix(&prefix)) {
            by_namespace.entry(ns.to_owned()).or_default().push((id, s));
        }
    }
    for list in by_namespace.values_mut() {
        list.sort_by_key(|(_, s)| s.time);
    }
    Ok(by_namespace)
}

/// Stores `catalog` as a snapshot and forgets the older catalogs of its namespace beyond
/// [`catalog::KEPT_PER_NAMESPACE`] (a failure to forget them is a warning).
fn put(ctx: &Context, catalog: Catalog) -> Result<Id, CliError> {
    let json = serde_json::to_vec(&catalog).map_err(|e| CliError::Usage(format!("encoding the catalog: {e}")))?;
    let (repo, lock) = ctx.open_for_backup()?;
    let options = BackupOptions {
        tags: vec![catalog::TAG.to_owned(), catalog::namespace_tag(&catalog.namespace)],
        compression_level: None,
        hostname: Some(catalog::host(&catalog.namespace)),
        parent: None,
        force: false,
        threads: 1,
        selection: Selection::default(),
        time: None,
    };
    let input = StreamInput {
        name: catalog::STREAM.to_owned(),
        reader: Box::new(std::io::Cursor::new(json)),
        complete: None,
    };
    let (id, _) = archiver::backup_streams(&repo, &lock, vec![input], &options, Arc::new(Counters::default()))?;
    drop(lock);
    let kept = catalogs(&repo)?.remove(&catalog.namespace).unwrap_or_default();
    let excess = kept.len().saturating_sub(catalog::KEPT_PER_NAMESPACE);
    let mut old: Vec<Decision> = kept
        .iter()
        .take(excess)
        .filter(|(old, _)| *old != id)
        .map(|(old, _)| Decision {
            id: *old,
            keep: false,
            reasons: vec![],
        })
        .collect();
    // The catalog is stored; older ones that cannot be forgotten now (e.g. under an object
    // lock) are forgotten by a later put.
    if let Err(e) = hort_engine::prune::forget_decided(&repo, &mut old, false) {
        tracing::warn!(namespace = %catalog.namespace, error = %e, "older catalog snapshots could not be forgotten");
    }
    Ok(id)
}

fn show(ctx: &Context, namespace: Option<&str>) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let mut list = CatalogList { catalogs: vec![] };
    for (ns, snapshots) in catalogs(&repo)? {
        if namespace.is_some_and(|n| n != ns) {
            continue;
        }
        let Some((id, s)) = snapshots.last() else { continue };
        let mut bytes = Vec::new();
        hort_engine::restorer::restore_stream(&repo, s, id, catalog::STREAM, &mut bytes, &Counters::default())?;
        let catalog: Catalog = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Usage(format!(
                "catalog snapshot {} of namespace {ns:?} is not a Hort catalog ({e}): an agent of another release wrote it",
                id.short()
            ))
        })?;
        list.catalogs.push(StoredCatalog {
            snapshot_id: id.to_hex(),
            time: s.time.to_rfc3339_opts(SecondsFormat::Secs, true),
            catalog,
        });
    }
    if ctx.json() {
        println!("{}", encode(&list));
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<20} {:>6} {:>9} {:>7}",
        "namespace", "snapshot", "time", "groups", "schedules", "backups"
    );
    for c in &list.catalogs {
        println!(
            "{:<20} {:<10} {:<20} {:>6} {:>9} {:>7}",
            c.catalog.namespace,
            &c.snapshot_id[..8.min(c.snapshot_id.len())],
            c.time,
            c.catalog.storage_groups.len(),
            c.catalog.schedules.len(),
            c.catalog.backup_jobs.len()
        );
    }
    Ok(())
}
