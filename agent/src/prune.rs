//! Prune: forget snapshots by a retention policy, then collect garbage in two phases so a
//! backup running at the same time never loses data (see `FORMAT.md`, §11).
//!
//! - **Mark**: packs none of whose blobs a snapshot references (and stored packs in no index
//!   file, left by interrupted or still-running backups) are *condemned*: listed with the
//!   time in a sealed `prune/<id>` marker and dropped from a rewritten index, so backups
//!   starting from now on cannot deduplicate against them.
//! - **Sweep**, in a later run once the marker is older than the grace period: a condemned
//!   pack still holding a blob that some snapshot needs and no indexed pack has (a backup that
//!   loaded the index before the mark used it) is indexed again; the others are deleted.
//!
//! Safe as long as no backup runs longer than the grace period (default 24 h).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::backend::FileKind;
use crate::id::Id;
use crate::index::{self, Index, IndexFile, IndexPack};
use crate::repository::{IndexedRepository, Repository, RepositoryError};
use crate::retention::{self, Decision, Policy};
use crate::tree::NodeKind;

/// Associated data of sealed prune markers.
pub const AAD: &[u8] = b"hort.v1.prune";

/// Contents of a `prune/<id>` marker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneMarker {
    /// Marker format version (1).
    pub version: u32,
    /// When the packs were condemned.
    pub time: DateTime<Utc>,
    /// The condemned packs with their index entries (empty for packs that were in no index).
    pub packs: Vec<IndexPack>,
}

/// Settings of garbage collection.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// How long condemned packs stay before they are deleted.
    pub grace: Duration,
    /// Report only; change nothing.
    pub dry_run: bool,
}

/// What garbage collection did (or would do, in a dry run).
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    /// Packs condemned by this run.
    pub condemned: Vec<Id>,
    /// Packs deleted by this run (condemned by an earlier one).
    pub deleted: Vec<Id>,
    /// Condemned packs indexed again because a snapshot needs them.
    pub reindexed: Vec<Id>,
    /// Condemned packs still within the grace period.
    pub pending: usize,
    /// Packs in use.
    pub live_packs: usize,
}

/// Forgets (deletes) the snapshots `policy` does not keep; returns every decision.
pub fn forget(repo: &Repository, policy: &Policy, dry_run: bool) -> Result<Vec<Decision>, RepositoryError> {
    let snapshots = repo.snapshots()?;
    let decisions = retention::apply(&snapshots, policy);
    if !dry_run {
        for d in decisions.iter().filter(|d| !d.keep) {
            repo.backend().delete(FileKind::Snapshot, &d.id.to_hex())?;
            info!(snapshot = %d.id, "snapshot forgotten");
        }
    }
    Ok(decisions)
}

/// Every blob (data and tree) some snapshot refers to.
fn referenced_blobs(repo: &IndexedRepository) -> Result<HashSet<Id>, RepositoryError> {
    let mut used = HashSet::new();
    for (_, snapshot) in repo.snapshots()? {
        for stream in &snapshot.streams {
            used.extend(stream.content.iter().copied());
        }
        let mut stack: Vec<Id> = snapshot.tree.into_iter().collect();
        while let Some(tree_id) = stack.pop() {
            if !used.insert(tree_id) {
                continue;
            }
            for node in repo.load_tree(&tree_id)?.nodes {
                match node.kind {
                    NodeKind::Dir => stack.extend(node.subtree),
                    NodeKind::File => used.extend(node.content),
                    _ => {}
                }
            }
        }
    }
    Ok(used)
}

/// Runs one sweep-and-mark round of garbage collection.
pub fn collect_garbage(repo: Repository, options: PruneOptions) -> Result<PruneReport, RepositoryError> {
    let index_files = repo.index_files()?;
    let mut current: BTreeMap<Id, IndexPack> = BTreeMap::new();
    for (_, file) in &index_files {
        for pack in &file.packs {
            current.entry(pack.id).or_insert_with(|| pack.clone());
        }
    }
    let mut markers = Vec::new();
    for name in repo.backend().list(FileKind::Prune)? {
        let marker: PruneMarker = repo.read_sealed(FileKind::Prune, AAD, &name)?;
        markers.push((name, marker));
    }
    // Trees of new snapshots may live in condemned packs: look there too.
    let mut lookup = Index::default();
    for pack in current.values() {
        lookup.add_pack(pack);
    }
    for pack in markers.iter().flat_map(|(_, m)| m.packs.iter()) {
        lookup.add_condemned_pack(pack);
    }
    let repo = repo.with_index(lookup);
    let used = referenced_blobs(&repo)?;
    let indexed_blobs: HashSet<Id> = current.values().flat_map(|p| p.blobs.iter().map(|b| b.id)).collect();
    let stored: HashSet<Id> = repo
        .backend()
        .list(FileKind::Pack)?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let now = Utc::now();
    let mut report = PruneReport::default();

    // Sweep markers older than the grace period.
    let mut pending = HashSet::new();
    let mut reindex = Vec::new();
    let mut swept_markers = Vec::new();
    for (name, marker) in &markers {
        if now - marker.time < options.grace {
            pending.extend(marker.packs.iter().map(|p| p.id));
            continue;
        }
        for pack in &marker.packs {
            if current.contains_key(&pack.id) {
                continue; // indexed again by a backup that finished: the mark below decides
            }
            let needed = pack
                .blobs
                .iter()
                .any(|b| used.contains(&b.id) && !indexed_blobs.contains(&b.id));
            if needed {
                reindex.push(pack.clone());
                report.reindexed.push(pack.id);
            } else if stored.contains(&pack.id) {
                report.deleted.push(pack.id);
            }
        }
        swept_markers.push(name.clone());
    }
    report.pending = pending.len();

    // Mark.
    let swept: HashSet<Id> = report.deleted.iter().chain(&report.reindexed).copied().collect();
    let mut condemned = Vec::new();
    for pack in current.values() {
        let live = pack.blobs.iter().any(|b| used.contains(&b.id));
        if live {
            report.live_packs += 1;
        } else if !pending.contains(&pack.id) {
            condemned.push(pack.clone());
        }
    }
    for id in &stored {
        if !current.contains_key(id) && !pending.contains(id) && !swept.contains(id) {
            condemned.push(IndexPack {
                id: *id,
                blobs: Vec::new(),
            });
        }
    }
    report.condemned = condemned.iter().map(|p| p.id).collect();
    report.live_packs += reindex.len();
    if options.dry_run {
        return Ok(report);
    }

    // Write in an order that leaves a valid repository after a crash at any point.
    if !condemned.is_empty() {
        repo.write_sealed(
            FileKind::Prune,
            AAD,
            &PruneMarker {
                version: 1,
                time: now,
                packs: condemned.clone(),
            },
        )?;
    }
    let dropped: HashSet<Id> = condemned
        .iter()
        .filter(|p| current.contains_key(&p.id))
        .map(|p| p.id)
        .collect();
    if !dropped.is_empty() || !reindex.is_empty() || index_files.len() > 1 {
        let packs: Vec<IndexPack> = current
            .values()
            .filter(|p| !dropped.contains(&p.id))
            .cloned()
            .chain(reindex)
            .collect();
        if !packs.is_empty() {
            repo.write_sealed(FileKind::Index, index::AAD, &IndexFile { version: 1, packs })?;
        }
        for (name, _) in &index_files {
            repo.backend().delete(FileKind::Index, name)?;
        }
    }
    for pack in &report.deleted {
        repo.backend().delete(FileKind::Pack, &pack.to_hex())?;
        info!(%pack, "pack deleted");
    }
    for name in &swept_markers {
        repo.backend().delete(FileKind::Prune, name)?;
    }
    Ok(report)
}
