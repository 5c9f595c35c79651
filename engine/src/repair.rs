//! Repairs that rebuild what the format promises can always be rebuilt: `repair index`
//! rewrites the index from the index files that are intact and, for every stored pack none of
//! them lists, from the pack's own trailer (FORMAT.md §7); `repair snapshots` rewrites
//! snapshots without the entries whose data is gone, so everything else stays restorable.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Serialize;
use tracing::{info, warn};

use crate::backend::{BackendError, FileKind};
use crate::backup_lock::{BackupLock, LockLost};
use crate::error_kind::ErrorKind;
use crate::id::Id;
use crate::index::{self, IndexFile, IndexPack};
use crate::pack::{self, BlobError, BlobKind};
use crate::packer::{Packer, PackerError, PackerOptions};
use crate::prune::PACKS_PER_INDEX_FILE;
use crate::repository::{IndexedRepository, Repository, RepositoryError};
use crate::snapshot;
use crate::tree::NodeKind;

/// Bytes read from a pack's end to find its trailer; more is read when the trailer is longer.
const TAIL: u64 = 64 * 1024;

/// What `repair index` found and did.
#[derive(Debug, Default, Serialize)]
pub struct IndexRepair {
    /// Index files that could not be read (damaged), each with why; they are replaced.
    pub damaged_index_files: Vec<String>,
    /// Packs listed by an intact index file.
    pub packs_kept: usize,
    /// Packs indexed again from their trailers.
    pub packs_from_trailers: Vec<Id>,
    /// Stored packs whose trailer could not be read, with why: their blobs stay unindexed.
    pub unreadable_packs: Vec<String>,
    /// Packs an index file listed that are not stored: dropped from the index.
    pub missing_packs: Vec<Id>,
    /// Index files written.
    pub index_files_written: usize,
}

/// Rebuilds the index (with `dry_run`, only reports). Refuses to run while a target of a
/// group cannot be listed: its packs would look missing and be dropped.
pub fn repair_index(repo: &Repository, dry_run: bool) -> Result<IndexRepair, RepositoryError> {
    let backend = repo.backend();
    let stored: Vec<Id> = backend
        .list_every_target(FileKind::Pack)?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let mut report = IndexRepair::default();
    let mut packs: BTreeMap<Id, IndexPack> = BTreeMap::new();
    let names = backend.list_every_target(FileKind::Index)?;
    for name in &names {
        match repo.index_file(name) {
            Ok(file) => {
                for pack in file.packs {
                    packs.entry(pack.id).or_insert(pack);
                }
            }
            Err(e) => {
                warn!(index = %name, error = %e, "index file unreadable; it is replaced");
                report.damaged_index_files.push(format!("{name}: {e}"));
            }
        }
    }
    report.missing_packs = packs.keys().filter(|id| !stored.contains(id)).copied().collect();
    for id in &report.missing_packs {
        packs.remove(id);
    }
    report.packs_kept = packs.len();
    let unindexed: Vec<Id> = stored.iter().filter(|id| !packs.contains_key(id)).copied().collect();
    for id in &unindexed {
        match read_trailer(repo, id) {
            Ok(blobs) => {
                report.packs_from_trailers.push(*id);
                packs.insert(*id, IndexPack { id: *id, blobs });
            }
            Err(why) => {
                warn!(pack = %id, error = %why, "pack trailer unreadable");
                report.unreadable_packs.push(format!("{id}: {why}"));
            }
        }
    }
    let changed = !report.damaged_index_files.is_empty()
        || !report.missing_packs.is_empty()
        || !report.packs_from_trailers.is_empty();
    if dry_run || !changed {
        return Ok(report);
    }
    // New index files first, then the old ones go: a crash in between leaves both, which
    // readers merge.
    let all: Vec<IndexPack> = packs.into_values().collect();
    for chunk in all.chunks(PACKS_PER_INDEX_FILE) {
        let file = IndexFile {
            version: 1,
            packs: chunk.to_vec(),
        };
        repo.write_sealed(FileKind::Index, index::AAD, &file)?;
        report.index_files_written += 1;
    }
    for name in &names {
        backend.delete(FileKind::Index, name)?;
    }
    info!(
        packs = all.len(),
        from_trailers = report.packs_from_trailers.len(),
        "index rebuilt"
    );
    Ok(report)
}

/// Why a pack's trailer could not be read.
#[derive(Debug, thiserror::Error)]
enum TrailerError {
    /// The storage failed.
    #[error(transparent)]
    Read(#[from] BackendError),
    /// The trailer is damaged.
    #[error(transparent)]
    Damaged(#[from] BlobError),
}

/// The blob entries of pack `id`, from its trailer.
fn read_trailer(repo: &Repository, id: &Id) -> Result<Vec<pack::BlobEntry>, TrailerError> {
    let name = id.to_hex();
    let tail = repo.backend().read_tail(FileKind::Pack, &name, TAIL)?;
    let needed = pack::trailer_length(&tail)? + pack::FOOTER_LEN;
    let tail = if needed > tail.len() as u64 {
        repo.backend().read_tail(FileKind::Pack, &name, needed)?
    } else {
        tail
    };
    Ok(pack::parse_trailer(repo.keys(), &tail, None)?)
}

/// What `repair snapshots` found in one snapshot and did about it.
#[derive(Debug, Serialize)]
pub struct SnapshotRepair {
    /// The damaged snapshot.
    pub snapshot: Id,
    /// What it loses: files and directories (paths) and streams whose data is gone.
    pub lost: Vec<String>,
    /// The snapshot written without them (tagged `repaired`), unless a dry run.
    pub repaired: Option<Id>,
    /// Whether the damaged snapshot was forgotten.
    pub forgotten: bool,
}

/// The tag of snapshots written by `repair snapshots`.
pub const REPAIRED_TAG: &str = "repaired";

/// Which blobs are readable: in the index, in a pack that is stored.
struct Present<'a> {
    repo: &'a IndexedRepository,
    packs: HashSet<Id>,
}

impl Present<'_> {
    fn has(&self, id: &Id, kind: BlobKind) -> bool {
        self.repo.index().contains(id, kind) && self.repo.index().get(id).is_some_and(|l| self.packs.contains(&l.pack))
    }
}

/// Rewrites every snapshot that refers to data that is gone (not indexed, or in a pack that
/// is not stored) without the files, directories and streams that lost data, so everything
/// else stays restorable; with `forget`, the damaged snapshot is deleted once its repaired
/// copy is written. Run `repair index` first, so that data the index lost is found again.
pub fn repair_snapshots(
    repo: &IndexedRepository,
    lock: &BackupLock,
    forget: bool,
    dry_run: bool,
) -> Result<Vec<SnapshotRepair>, RepairError> {
    let present = Present {
        repo,
        packs: repo
            .backend()
            .list_every_target(FileKind::Pack)?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
    };
    let mut packer = (!dry_run).then(|| {
        Packer::start(
            repo.backend().clone(),
            repo.keys().clone(),
            PackerOptions {
                spool_dir: repo.spool_dir().to_path_buf(),
                pack_size: repo.config().pack_size as usize,
                compression_level: repo.config().compression_level,
                encoders: 1,
                uploaders: 1,
            },
        )
    });
    let mut repairs = Vec::new();
    let mut fixed_snapshots = Vec::new();
    for (id, snapshot) in repo.snapshots()? {
        let mut lost = Vec::new();
        let mut fixed = snapshot.clone();
        if let Some(tree) = snapshot.tree {
            fixed.tree = rewrite_tree(repo, &present, &mut packer, tree, Path::new(""), &mut lost)?;
        }
        fixed.streams.retain(|stream| {
            let intact = stream.content_lists.iter().all(|l| present.has(l, BlobKind::Data))
                && repo
                    .stream_content(stream)
                    .is_ok_and(|ids| ids.iter().all(|b| present.has(b, BlobKind::Data)));
            if !intact {
                lost.push(format!("stream {}", stream.name));
            }
            intact
        });
        if lost.is_empty() {
            continue;
        }
        warn!(snapshot = %id, lost = lost.len(), "snapshot refers to data that is gone");
        fixed.tags.push(REPAIRED_TAG.to_owned());
        fixed_snapshots.push(fixed);
        repairs.push(SnapshotRepair {
            snapshot: id,
            lost,
            repaired: None,
            forgotten: false,
        });
    }
    let Some(packer) = packer else {
        return Ok(repairs);
    };
    // The new trees are stored and indexed before any snapshot refers to them.
    packer.finish()?;
    for (repair, fixed) in repairs.iter_mut().zip(&fixed_snapshots) {
        lock.ensure_held()?;
        repair.repaired = Some(repo.write_sealed(FileKind::Snapshot, snapshot::AAD, fixed)?);
        if forget {
            repo.backend().delete(FileKind::Snapshot, &repair.snapshot.to_hex())?;
            repair.forgotten = true;
        }
        info!(snapshot = %repair.snapshot, repaired = ?repair.repaired, "snapshot repaired");
    }
    Ok(repairs)
}

/// The tree `id` at `path` without what lost its data (recorded in `lost`): `Some` of its
/// id (new if it changed), `None` if the tree itself is gone.
fn rewrite_tree(
    repo: &IndexedRepository,
    present: &Present<'_>,
    packer: &mut Option<Packer>,
    id: Id,
    path: &Path,
    lost: &mut Vec<String>,
) -> Result<Option<Id>, RepairError> {
    if !present.has(&id, BlobKind::Tree) {
        lost.push(format!("{}/ (the whole directory)", path.display()));
        return Ok(None);
    }
    let mut tree = repo.load_tree(&id)?;
    let before = lost.len();
    let mut nodes = Vec::with_capacity(tree.nodes.len());
    for mut node in std::mem::take(&mut tree.nodes) {
        let node_path = path.join(node.os_name());
        match node.kind {
            NodeKind::File if !node.content.iter().all(|b| present.has(b, BlobKind::Data)) => {
                lost.push(node_path.display().to_string());
                continue;
            }
            NodeKind::Dir => {
                if let Some(sub) = node.subtree {
                    match rewrite_tree(repo, present, packer, sub, &node_path, lost)? {
                        Some(new) => node.subtree = Some(new),
                        None => continue,
                    }
                }
            }
            _ => {}
        }
        nodes.push(node);
    }
    if lost.len() == before {
        return Ok(Some(id));
    }
    tree.nodes = nodes;
    let json = serde_json::to_vec(&tree).map_err(RepairError::Encode)?;
    let new = repo.keys().blob_id(&json);
    if let Some(packer) = packer
        && !repo.index().contains(&new, BlobKind::Tree)
    {
        packer.add(new, BlobKind::Tree, &json)?;
    }
    Ok(Some(new))
}

/// Why `repair snapshots` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Storing new trees failed.
    #[error(transparent)]
    Packer(#[from] PackerError),
    /// Listing the packs failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A tree could not be encoded.
    #[error("cannot encode a tree: {0}")]
    Encode(#[source] serde_json::Error),
    /// The lock was not kept fresh (see [`BackupLock::ensure_held`]).
    #[error(transparent)]
    LockLost(#[from] LockLost),
}

impl RepairError {
    /// What kind of failure this is (that of the repository's error, if it is one).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RepairError::Repository(e) => e.kind(),
            _ => ErrorKind::Other,
        }
    }
}
