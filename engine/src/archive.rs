//! Restores from targets whose packs may be in an archive storage class (S3 `GLACIER`,
//! `DEEP_ARCHIVE`): before reading, the data packs a snapshot needs are made readable in
//! one batch ([`crate::backend::Backend::make_readable`]: restore requests for all of them,
//! then one bounded wait), instead of failing on the first archived pack. Tree packs are
//! never archived (`FileKind::TreePack`), so the snapshot's trees can be walked first.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::id::Id;
use crate::pack::BlobKind;
use crate::repository::{IndexedRepository, RepositoryError};
use crate::snapshot::Snapshot;
use crate::tree::NodeKind;

/// Makes the packs holding `snapshot`'s data readable, waiting up to `wait`; does nothing
/// (no request) unless a target may archive packs. Returns how many were archived.
pub fn make_snapshot_readable(
    repo: &IndexedRepository,
    snapshot: &Snapshot,
    wait: Duration,
) -> Result<usize, RepositoryError> {
    if !repo.backend().archives()? {
        return Ok(0);
    }
    let mut blobs = Vec::new();
    for stream in &snapshot.streams {
        blobs.extend(repo.stream_content(stream)?);
    }
    let mut stack: Vec<Id> = snapshot.tree.into_iter().collect();
    while let Some(tree) = stack.pop() {
        for node in repo.load_tree(&tree)?.nodes {
            match node.kind {
                NodeKind::Dir => stack.extend(node.subtree),
                NodeKind::File => blobs.extend(node.content),
                _ => {}
            }
        }
    }
    let packs: BTreeSet<String> = blobs
        .iter()
        .filter_map(|b| repo.index().get(b).filter(|l| l.entry.kind == BlobKind::Data))
        .map(|l| l.pack.to_hex())
        .collect();
    let packs: Vec<String> = packs.into_iter().collect();
    Ok(repo.backend().make_readable(&packs, wait)?.len())
}
