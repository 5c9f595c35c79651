//! Repairs that rebuild what the format promises can always be rebuilt: `repair index`
//! rewrites the index from the index files that are intact and, for every stored pack none of
//! them lists, from the pack's own trailer (FORMAT.md §7).

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::{info, warn};

use crate::backend::FileKind;
use crate::id::Id;
use crate::index::{self, IndexFile, IndexPack};
use crate::pack;
use crate::prune::PACKS_PER_INDEX_FILE;
use crate::repository::{Repository, RepositoryError};

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

/// The blob entries of pack `id`, from its trailer.
fn read_trailer(repo: &Repository, id: &Id) -> Result<Vec<pack::BlobEntry>, String> {
    let name = id.to_hex();
    let tail = repo
        .backend()
        .read_tail(FileKind::Pack, &name, TAIL)
        .map_err(|e| e.to_string())?;
    let needed = pack::trailer_length(&tail).map_err(|e| e.to_string())? + pack::FOOTER_LEN;
    let tail = if needed > tail.len() as u64 {
        repo.backend()
            .read_tail(FileKind::Pack, &name, needed)
            .map_err(|e| e.to_string())?
    } else {
        tail
    };
    pack::parse_trailer(repo.keys(), &tail, None).map_err(|e| e.to_string())
}
