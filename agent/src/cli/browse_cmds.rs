//! Reading a repository's contents: `snapshots`, `ls` and `cat`. With `--json` (the default
//! when stdout is not a terminal) `snapshots` and `ls` print one typed report
//! (`hort_protocol::SnapshotList`, `hort_protocol::Listing`), which `kubectl hort` reads;
//! `cat` writes the exact bytes of one file or stream.

use std::io::Write;
use std::path::{Component, Path};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use hort_protocol::report::encode;
use hort_protocol::{
    DatabaseKind, EntryKind, ListedEntry, ListedStream, ListedTable, Listing, SnapshotList, SnapshotSummary,
};

use super::CliError;
use super::context::Context;
use crate::database::{mariadb, postgres, verification};
use hort_engine::id::Id;
use hort_engine::pack::BlobKind;
use hort_engine::progress::Counters;
use hort_engine::repository::IndexedRepository;
use hort_engine::snapshot::{Snapshot, Source};
use hort_engine::snapshot_streams::SnapshotStreams;
use hort_engine::tree::{Node, NodeKind};

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn summary(id: &Id, s: &Snapshot) -> SnapshotSummary {
    SnapshotSummary {
        id: id.to_hex(),
        time: rfc3339(s.time),
        hostname: s.hostname.clone(),
        path: match &s.source {
            Source::Tree { path } => Some(path.clone()),
            Source::Streams => None,
        },
        streams: s
            .streams
            .iter()
            .map(|st| ListedStream {
                name: st.name.clone(),
                size: st.size,
            })
            .collect(),
        tags: s.tags.clone(),
        bytes: s.stats.bytes,
        files: s.stats.files,
    }
}

pub(super) fn snapshots(ctx: &Context, tags: &[String]) -> Result<(), CliError> {
    let repo = ctx.open()?;
    let list: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| tags.iter().all(|t| s.tags.contains(t)))
        .collect();
    if ctx.json() {
        let report = SnapshotList {
            snapshots: list.iter().map(|(id, s)| summary(id, s)).collect(),
        };
        println!("{}", encode(&report));
        return Ok(());
    }
    println!("{:<10} {:<20} {:<16} {:<30} tags", "id", "time", "host", "source");
    for (id, s) in &list {
        let source = match &s.source {
            Source::Tree { path } => path.clone(),
            Source::Streams => format!(
                "streams: {}",
                s.streams.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(",")
            ),
        };
        println!(
            "{:<10} {:<20} {:<16} {:<30} {}",
            id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            source,
            s.tags.join(",")
        );
    }
    Ok(())
}

/// The components of a path below a snapshot's root; `..` and the like are refused.
fn components(path: &str) -> Result<Vec<&std::ffi::OsStr>, CliError> {
    Path::new(path)
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(CliError::Usage(format!(
                "path {path:?}: give a path below the snapshot root, without `..`"
            ))),
        })
        .collect()
}

/// The node at `path` of a tree snapshot (`None`: the root).
fn find_node(repo: &IndexedRepository, id: &Id, snapshot: &Snapshot, path: &str) -> Result<Option<Node>, CliError> {
    let not_found = || {
        CliError::Usage(format!(
            "snapshot {} has no entry {path:?}: list it with `ls {} [DIR]`",
            id.short(),
            id.short()
        ))
    };
    let mut tree_id = snapshot.tree.ok_or_else(not_found)?;
    let mut found = None;
    for name in components(path)? {
        let Some(subtree) = found.as_ref().map_or(Some(tree_id), |n: &Node| n.subtree) else {
            return Err(not_found());
        };
        tree_id = subtree;
        let tree = repo.load_tree(&tree_id)?;
        found = Some(tree.find(name).cloned().ok_or_else(not_found)?);
    }
    Ok(found)
}

fn entry(path: &Path, node: &Node) -> ListedEntry {
    ListedEntry {
        path: path.to_string_lossy().into_owned(),
        kind: match node.kind {
            NodeKind::File => EntryKind::File,
            NodeKind::Dir => EntryKind::Dir,
            NodeKind::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        },
        size: node.size,
        mode: format!("{:o}", node.mode),
        mtime: Some(rfc3339(DateTime::from_timestamp_nanos(node.mtime_ns))),
        target: node.target.clone(),
        content: (node.kind == NodeKind::File).then(|| content_digest(&node.content)),
    }
}

/// A digest of a file's chunk ids: equal for equal content in one repository (the ids are
/// keyed hashes of the chunks), without reading any data.
fn content_digest(chunks: &[Id]) -> String {
    let ids: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.0).collect();
    hex::encode(&Id::of_file(&ids).0[..16])
}

/// The tables a database backup's manifest records (none for other stream snapshots).
fn tables(repo: &Arc<IndexedRepository>, id: &Id, snapshot: &Snapshot) -> Result<Vec<ListedTable>, CliError> {
    let has = |name: &str| snapshot.streams.iter().any(|s| s.name == name);
    let kind = if has(postgres::MANIFEST_STREAM) {
        DatabaseKind::Postgres
    } else if has(mariadb::MANIFEST_STREAM) {
        DatabaseKind::Mariadb
    } else {
        return Ok(Vec::new());
    };
    let source = SnapshotStreams::new(repo.clone(), snapshot.clone(), *id, Arc::new(Counters::default()));
    let databases = verification::expected(kind, &source).map_err(|source| CliError::Database {
        context: format!("reading the tables of snapshot {}", id.short()),
        source,
    })?;
    Ok(databases
        .into_iter()
        .flat_map(|db| {
            db.tables.into_iter().map(move |t| ListedTable {
                database: db.name.clone(),
                table: match t.schema {
                    Some(schema) => format!("{schema}.{}", t.name),
                    None => t.name,
                },
                rows: t.rows,
            })
        })
        .collect())
}

/// The entries of a snapshot below `path` (all when unset), directories before their contents,
/// or its streams.
fn listing(
    repo: &Arc<IndexedRepository>,
    id: &Id,
    snapshot: &Snapshot,
    path: Option<&str>,
) -> Result<Listing, CliError> {
    let mut entries: Vec<ListedEntry> = Vec::new();
    if !snapshot.streams.is_empty() {
        for stream in &snapshot.streams {
            if path
                .is_none_or(|p| stream.name == p || stream.name.starts_with(&format!("{}/", p.trim_end_matches('/'))))
            {
                entries.push(ListedEntry {
                    path: stream.name.clone(),
                    kind: EntryKind::Stream,
                    size: stream.size,
                    mode: String::new(),
                    mtime: None,
                    target: None,
                    content: None,
                });
            }
        }
        if entries.is_empty() && path.is_some() {
            return Err(CliError::Usage(format!(
                "snapshot {} has no stream {:?}: list its streams with `ls {}`",
                id.short(),
                path.unwrap_or_default(),
                id.short()
            )));
        }
    } else {
        let start = match path {
            Some(p) => find_node(repo, id, snapshot, p)?,
            None => None,
        };
        let base: std::path::PathBuf = path
            .map(|p| components(p).map(|c| c.iter().collect()))
            .transpose()?
            .unwrap_or_default();
        let root = match &start {
            Some(node) => {
                entries.push(entry(&base, node));
                node.subtree
            }
            None => snapshot.tree,
        };
        if let Some(root) = root {
            walk(repo, &base, &root, &mut entries)?;
        }
    }
    Ok(Listing {
        snapshot_id: id.to_hex(),
        entries,
        tables: match path {
            None => tables(repo, id, snapshot)?,
            Some(_) => Vec::new(),
        },
    })
}

/// Appends the entries below tree `id` (at `dir`), each directory followed by its contents.
fn walk(repo: &IndexedRepository, dir: &Path, id: &Id, entries: &mut Vec<ListedEntry>) -> Result<(), CliError> {
    for node in repo.load_tree(id)?.nodes {
        let path = dir.join(node.os_name());
        entries.push(entry(&path, &node));
        if let Some(sub) = node.subtree {
            walk(repo, &path, &sub, entries)?;
        }
    }
    Ok(())
}

pub(super) fn ls(ctx: &Context, spec: &str, path: Option<&str>) -> Result<(), CliError> {
    let repo = Arc::new(ctx.open_indexed()?);
    let (id, snapshot) = repo.find_snapshot(spec)?;
    let listing = listing(&repo, &id, &snapshot, path)?;
    if ctx.json() {
        println!("{}", encode(&listing));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for e in &listing.entries {
        let line = match (e.kind, &e.target) {
            (EntryKind::Stream, _) => format!("stream {} ({} bytes)", e.path, e.size),
            (EntryKind::Symlink, Some(t)) => format!("{} {:>12} /{} -> {t}", e.mode, e.size, e.path),
            _ => format!("{} {:>12} /{}", e.mode, e.size, e.path),
        };
        let _ = writeln!(out, "{line}");
    }
    for t in &listing.tables {
        let _ = writeln!(out, "table {}.{} ({} rows)", t.database, t.table, t.rows);
    }
    Ok(())
}

/// `cat SNAPSHOT PATH`: the exact bytes of a file of a tree snapshot, or of a stream, on
/// stdout.
pub(super) fn cat(ctx: &Context, spec: &str, path: &str) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let (id, snapshot) = repo.find_snapshot(spec)?;
    let mut out = std::io::stdout().lock();
    if !snapshot.streams.is_empty() {
        let counters = hort_engine::progress::Counters::default();
        hort_engine::restorer::restore_stream(&repo, &snapshot, &id, path, &mut out, &counters)?;
        return Ok(());
    }
    let node = find_node(&repo, &id, &snapshot, path)?;
    let Some(node) = node.filter(|n| n.kind == NodeKind::File) else {
        return Err(CliError::Usage(format!(
            "{path:?} in snapshot {} is not a file: list it with `ls {} {path}`",
            id.short(),
            id.short()
        )));
    };
    let write_err = |e: std::io::Error| CliError::Usage(format!("writing {path:?} to stdout: {e}"));
    repo.read_in_order(
        &node.content,
        BlobKind::Data,
        |data| out.write_all(&data).map_err(write_err),
        CliError::from,
    )?;
    out.flush().map_err(write_err)
}
