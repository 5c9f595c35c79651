//! Prune: forget snapshots by a retention policy, then collect garbage in two phases so a
//! backup running at the same time never loses data (see `FORMAT.md`, §11).
//!
//! - **Mark**: packs none of whose blobs a snapshot references (and stored packs in no index
//!   file, left by interrupted or still-running backups) are *condemned*: listed with the
//!   time in a sealed `prune/<id>` marker and dropped from a rewritten index, so backups
//!   starting from now on cannot deduplicate against them.
//! - **Sweep**, in a later run once the marker is older than the grace period and no running
//!   backup (see [`crate::backup_lock`]) started before the mark replaced the index: a
//!   condemned pack still holding a blob that some snapshot needs and no indexed pack has (a
//!   backup that loaded the index before the mark used it) is indexed again; the others are
//!   deleted.
//!
//! - **Repack**, during the mark: a pack whose referenced blobs make up less than
//!   [`REPACK_BELOW_PERCENT`] % of its blob bytes has those blobs copied (sealed bytes as
//!   they are, after checking them) into new packs; the new packs are stored and indexed,
//!   and the old pack is condemned like an unused one, so it is deleted only by a later sweep.
//!
//! A backup of any length is safe: its lock holds back every sweep that could take its packs.

use std::collections::{BTreeMap, HashSet};

use chrono::{Duration, Utc};
use serde::Serialize;
use tracing::info;

use crate::backend::{BackendError, FileKind};
use crate::backup_lock::{LiveBackups, LockTiming};
use crate::id::Id;
use crate::index::{self, IndexBuilder, IndexFile, IndexPack};
use crate::pack::{self, BlobEntry, BlobKind, PackBuilder};
use crate::prune_marker::{AAD, PruneMarker};
use crate::repository::{IndexedRepository, Repository, RepositoryError};
use crate::retention::{self, Decision, Policy};
use crate::tree::NodeKind;

/// Packs per index file when prune rewrites the index: 16 GiB of packs, at most about 40 MB
/// of JSON with 64 KiB stream chunks, far below what readers accept
/// ([`crate::codec::MAX_DOCUMENT`]).
pub const PACKS_PER_INDEX_FILE: usize = 1024;

/// A pack whose referenced blobs make up less than this share (in percent of its sealed blob
/// bytes) is repacked: its referenced blobs are copied into new packs and it is condemned.
/// At 50 %, repacking a pack frees at least as many bytes as it writes.
pub const REPACK_BELOW_PERCENT: u64 = 50;

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
    /// Packs the sweep would have deleted but kept: under S3 Object Lock retention. They
    /// are condemned again by the next run and deleted by a sweep after the retention.
    pub retained: Vec<Id>,
    /// Condemned packs indexed again because a snapshot needs them.
    pub reindexed: Vec<Id>,
    /// Condemned packs still within the grace period or held back by running backups.
    pub pending: usize,
    /// Prune markers past the grace period whose sweep waits for running backups that
    /// started before their mark.
    pub waiting_for_backups: usize,
    /// Locks of backups that stopped refreshing them (killed); deleted unless a dry run.
    pub stale_locks: usize,
    /// Packs in use.
    pub live_packs: usize,
    /// Mostly-unused packs whose referenced blobs this run copied into new packs; they are
    /// condemned (and counted in `condemned`) like unused packs.
    pub repacked: Vec<Id>,
    /// The new packs written by repacking.
    pub repack_new_packs: Vec<Id>,
    /// Sealed bytes of the blobs copied by repacking.
    pub repacked_bytes: u64,
}

/// Forgets (deletes) the snapshots `policy` does not keep; returns every decision.
pub fn forget(repo: &Repository, policy: &Policy, dry_run: bool) -> Result<Vec<Decision>, RepositoryError> {
    let snapshots = repo.snapshots()?;
    let mut decisions = retention::apply(&snapshots, policy);
    forget_decided(repo, &mut decisions, dry_run)?;
    Ok(decisions)
}

/// The reason a snapshot is kept while its S3 Object Lock retention runs.
pub const KEPT_BY_OBJECT_LOCK: &str = "object lock";

/// Deletes the snapshots `decisions` forget (unless `dry_run`), except those still under
/// S3 Object Lock retention: they are kept for [`KEPT_BY_OBJECT_LOCK`], and a later run
/// forgets them once the retention has expired.
pub fn forget_decided(repo: &Repository, decisions: &mut [Decision], dry_run: bool) -> Result<(), RepositoryError> {
    for d in decisions.iter_mut().filter(|d| !d.keep) {
        let name = d.id.to_hex();
        let outcome = match repo.backend().retained_until(FileKind::Snapshot, &name)? {
            Some(until) => Err(until),
            None if dry_run => Ok(()),
            None => match repo.backend().delete(FileKind::Snapshot, &name) {
                Err(BackendError::Retained { until, .. }) => Err(until),
                other => Ok(other?),
            },
        };
        match outcome {
            Ok(()) => info!(snapshot = %d.id, dry_run, "snapshot forgotten"),
            Err(until) => {
                info!(snapshot = %d.id, %until, "snapshot kept: under Object Lock retention");
                d.keep = true;
                d.reasons.push(KEPT_BY_OBJECT_LOCK);
            }
        }
    }
    Ok(())
}

/// Every blob (data and tree) some snapshot refers to.
fn referenced_blobs(repo: &IndexedRepository) -> Result<HashSet<Id>, RepositoryError> {
    let mut used = HashSet::new();
    for (_, snapshot) in repo.snapshots()? {
        for stream in &snapshot.streams {
            used.extend(stream.content_lists.iter().copied());
            used.extend(repo.stream_content(stream)?);
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
    // Locks first: a backup that is gone by now wrote its snapshot before it removed its
    // lock, so the snapshots read below include it.
    let live = LiveBackups::read(&repo, Utc::now(), &LockTiming::default())?;
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
    let spool_dir = repo.spool_dir().to_path_buf();
    let spool = |source| RepositoryError::IndexSpool {
        dir: spool_dir.clone(),
        source,
    };
    let mut lookup = IndexBuilder::new(repo.spool_dir());
    for pack in current.values() {
        lookup.add_pack(pack).map_err(spool)?;
    }
    for pack in markers.iter().flat_map(|(_, m)| m.packs.iter()) {
        lookup.add_condemned_pack(pack).map_err(spool)?;
    }
    let repo = repo.with_index(lookup.finish().map_err(spool)?);
    let used = referenced_blobs(&repo)?;
    let indexed_blobs: HashSet<Id> = current.values().flat_map(|p| p.blobs.iter().map(|b| b.id)).collect();
    let stored: HashSet<Id> = repo
        .backend()
        .list(FileKind::Pack)?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let now = Utc::now();
    let mut report = PruneReport {
        stale_locks: live.stale.len(),
        ..PruneReport::default()
    };

    // Sweep markers older than the grace period that no running backup holds back. A pack
    // in several markers (an interrupted run's and a later one's) waits for all of them.
    let mut pending = HashSet::new();
    let mut due = Vec::new();
    for (name, marker) in &markers {
        if now - marker.time < options.grace {
            pending.extend(marker.packs.iter().map(|p| p.id));
        } else if live.may_have_seen(marker.index_replaced) {
            report.waiting_for_backups += 1;
            pending.extend(marker.packs.iter().map(|p| p.id));
        } else {
            due.push((name, marker));
        }
    }
    let mut reindex = Vec::new();
    let mut swept_markers = Vec::new();
    for (name, marker) in due {
        for pack in &marker.packs {
            if current.contains_key(&pack.id) || pending.contains(&pack.id) {
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
    let mut repack = Vec::new();
    for pack in current.values() {
        let total: u64 = pack.blobs.iter().map(|b| u64::from(b.length)).sum();
        let live: u64 = pack
            .blobs
            .iter()
            .filter(|b| used.contains(&b.id))
            .map(|b| u64::from(b.length))
            .sum();
        if pending.contains(&pack.id) {
            if live > 0 {
                report.live_packs += 1;
            }
        } else if pack.blobs.iter().all(|b| !used.contains(&b.id)) {
            condemned.push(pack.clone());
        } else if live * 100 < total * REPACK_BELOW_PERCENT {
            repack.push(pack.clone());
        } else {
            report.live_packs += 1;
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
    report.live_packs += reindex.len();
    report.repacked = repack.iter().map(|p| p.id).collect();
    if options.dry_run {
        report.condemned = condemned.iter().chain(&repack).map(|p| p.id).collect();
        return Ok(report);
    }

    // Repack: store the new packs before anything refers to them or condemns the old ones.
    let mut archived = HashSet::new();
    let new_packs = if repack.is_empty() {
        Vec::new()
    } else {
        // A blob that a pack outside the repacked ones holds needs no copy (also after an
        // interrupted repack, whose copies are then already indexed).
        let repacked: HashSet<Id> = repack.iter().map(|p| p.id).collect();
        let mut have: HashSet<Id> = current
            .values()
            .filter(|p| !repacked.contains(&p.id))
            .flat_map(|p| p.blobs.iter().map(|b| b.id))
            .collect();
        let mut copier = Copier::new(&repo);
        for pack in &repack {
            let wanted: Vec<BlobEntry> = pack
                .blobs
                .iter()
                .filter(|b| used.contains(&b.id) && have.insert(b.id))
                .copied()
                .collect();
            if !copier.copy(pack.id, &wanted)? {
                archived.insert(pack.id);
            }
        }
        report.repacked_bytes = copier.copied_bytes;
        copier.finish()?
    };
    // A pack in an archive storage class cannot be read now: it stays as it is.
    repack.retain(|p| !archived.contains(&p.id));
    report.live_packs += archived.len();
    report.repacked = repack.iter().map(|p| p.id).collect();
    report.repack_new_packs = new_packs.iter().map(|p| p.id).collect();
    report.live_packs += new_packs.len();
    condemned.extend(repack);
    report.condemned = condemned.iter().map(|p| p.id).collect();

    // Write in an order that leaves a valid repository after a crash at any point.
    let mut marker = PruneMarker {
        version: 1,
        time: now,
        index_replaced: None,
        packs: condemned.clone(),
    };
    let first_marker = if condemned.is_empty() {
        None
    } else {
        Some(repo.write_sealed(FileKind::Prune, AAD, &marker)?)
    };
    let dropped: HashSet<Id> = condemned
        .iter()
        .filter(|p| current.contains_key(&p.id))
        .map(|p| p.id)
        .collect();
    if !dropped.is_empty() || !reindex.is_empty() || !new_packs.is_empty() || index_files.len() > 1 {
        let packs: Vec<IndexPack> = current
            .values()
            .filter(|p| !dropped.contains(&p.id))
            .cloned()
            .chain(reindex)
            .chain(new_packs)
            .collect();
        // Several files for a large repository, so none nears the readers' size limit.
        for chunk in packs.chunks(PACKS_PER_INDEX_FILE) {
            let file = IndexFile {
                version: 1,
                packs: chunk.to_vec(),
            };
            repo.write_sealed(FileKind::Index, index::AAD, &file)?;
        }
        for (name, _) in &index_files {
            // A bucket's default retention may lock index files too: an old one that stays
            // only keeps its packs indexed (never deleted) until a run after it expired.
            unless_retained(repo.backend().delete(FileKind::Index, name))?;
        }
    }
    // The same marker again, now with the time from which no backup can see its packs.
    if let Some(first) = first_marker {
        marker.index_replaced = Some(Utc::now());
        repo.write_sealed(FileKind::Prune, AAD, &marker)?;
        unless_retained(repo.backend().delete(FileKind::Prune, &first.to_hex()))?;
    }
    // A pack under Object Lock retention stays: in no index and no marker now, the next
    // mark condemns it again, and a sweep after its retention has expired deletes it.
    let mut deleted = Vec::new();
    for pack in std::mem::take(&mut report.deleted) {
        match repo.backend().delete(FileKind::Pack, &pack.to_hex()) {
            Ok(()) => {
                info!(%pack, "pack deleted");
                deleted.push(pack);
            }
            Err(BackendError::Retained { until, .. }) => {
                info!(%pack, %until, "unused pack kept: under Object Lock retention");
                report.retained.push(pack);
            }
            Err(e) => return Err(e.into()),
        }
    }
    report.deleted = deleted;
    for name in &swept_markers {
        unless_retained(repo.backend().delete(FileKind::Prune, name))?;
    }
    for name in &live.stale {
        unless_retained(repo.backend().delete(FileKind::Lock, name))?;
        info!(lock = %name, "stale backup lock deleted");
    }
    Ok(report)
}

/// A delete's outcome, with a file kept by Object Lock retention counted as done: such a
/// marker, lock or index file is read again by later runs, which is harmless.
fn unless_retained(deleted: Result<(), BackendError>) -> Result<(), RepositoryError> {
    match deleted {
        Err(e) if e.is_retained() => {
            info!(error = %e, "file kept: under Object Lock retention");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Copies checked sealed blobs of old packs into new packs (data and trees apart, like the
/// write pipeline), storing each new pack as soon as it is full.
struct Copier<'a> {
    repo: &'a IndexedRepository,
    pack_size: usize,
    data: PackBuilder,
    trees: PackBuilder,
    stored: Vec<IndexPack>,
    copied_bytes: u64,
}

impl<'a> Copier<'a> {
    fn new(repo: &'a IndexedRepository) -> Self {
        Self {
            repo,
            pack_size: repo.config().pack_size as usize,
            data: PackBuilder::default(),
            trees: PackBuilder::default(),
            stored: Vec::new(),
            copied_bytes: 0,
        }
    }

    /// Copies the blobs `wanted` of pack `pack_id`. The pack is read whole (one request);
    /// every blob is opened and hash-checked before it is copied, and a blob that is damaged
    /// here is read through the index instead (other copies in a storage group), decoded
    /// and sealed again, so damage is never copied. Returns `false`, copying nothing, for a
    /// pack in an archive storage class (not readable now).
    fn copy(&mut self, pack_id: Id, wanted: &[BlobEntry]) -> Result<bool, RepositoryError> {
        if wanted.is_empty() {
            return Ok(true);
        }
        let repo = self.repo;
        let name = pack_id.to_hex();
        let whole = match repo.backend().read(FileKind::Pack, &name) {
            Ok(data) if Id::of_file(&data) == pack_id => Some(data),
            Ok(_) => None,
            Err(e) if e.is_not_found() => {
                return Err(RepositoryError::Corrupt {
                    what: format!("pack {pack_id}"),
                    reason: "missing, but the index lists it and snapshots need its blobs".into(),
                });
            }
            Err(e @ BackendError::Archived { .. }) => {
                info!(pack = %pack_id, error = %e, "pack not repacked: in an archive storage class");
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        for entry in wanted {
            let range = usize::try_from(entry.offset)
                .ok()
                .and_then(|start| Some(start..start.checked_add(entry.length as usize)?));
            let sealed = whole.as_deref().and_then(|w| w.get(range?));
            let intact = sealed.filter(|s| pack::open_blob(repo.keys(), entry, s).is_ok());
            let sealed = match intact {
                Some(sealed) => sealed.to_vec(),
                None => {
                    let plaintext = repo.read_blob(&entry.id, entry.kind)?;
                    pack::seal_blob(
                        repo.keys(),
                        entry.kind,
                        &entry.id,
                        &plaintext,
                        repo.config().compression_level,
                    )
                    .map_err(|e| RepositoryError::Corrupt {
                        what: format!("blob {} of pack {pack_id}", entry.id),
                        reason: e.to_string(),
                    })?
                }
            };
            self.copied_bytes += sealed.len() as u64;
            let builder = if entry.kind == BlobKind::Tree {
                &mut self.trees
            } else {
                &mut self.data
            };
            builder.add(entry.id, entry.kind, entry.raw_length, &sealed);
            if builder.len() >= self.pack_size {
                let full = std::mem::take(builder);
                self.store(full)?;
            }
        }
        Ok(true)
    }

    fn store(&mut self, builder: PackBuilder) -> Result<(), RepositoryError> {
        let pack = builder.finish(self.repo.keys()).map_err(|e| RepositoryError::Corrupt {
            what: "new pack".into(),
            reason: e.to_string(),
        })?;
        self.repo
            .backend()
            .write(pack::file_kind(&pack.blobs), &pack.id.to_hex(), &pack.data)?;
        info!(pack = %pack.id, blobs = pack.blobs.len(), bytes = pack.data.len(), "pack written by repacking");
        self.stored.push(IndexPack {
            id: pack.id,
            blobs: pack.blobs,
        });
        Ok(())
    }

    /// Stores the last, partly filled packs; returns every new pack.
    fn finish(mut self) -> Result<Vec<IndexPack>, RepositoryError> {
        for builder in [std::mem::take(&mut self.data), std::mem::take(&mut self.trees)] {
            if !builder.is_empty() {
                self.store(builder)?;
            }
        }
        Ok(self.stored)
    }
}
