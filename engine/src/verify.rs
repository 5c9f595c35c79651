//! Verification: that every snapshot's trees and blobs are indexed and every indexed pack
//! exists, and for the packs read (all, a random share, or none) that their bytes, trailer
//! and blobs are intact. Problems name the pack and the snapshot files or streams they affect.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::backend::{BackendError, FileKind};
use crate::id::Id;
use crate::pack::{self, BlobKind};
use crate::repository::{IndexedRepository, RepositoryError};
use crate::snapshot::Snapshot;
use crate::tree::NodeKind;

/// Which packs a verification reads and checks byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacksToRead {
    /// None: only the structure is checked.
    None,
    /// A random share, in percent (1–100), at least one pack.
    Share(u8),
    /// Every pack.
    All,
}

/// One piece of damage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// What is damaged: `pack ID`, or a snapshot's file, directory or stream
    /// (`snapshot 1a2b3c4d: file /data/x`).
    pub subject: String,
    /// How.
    pub detail: String,
}

/// Result of a verification.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Snapshots walked.
    pub snapshots: usize,
    /// Packs stored.
    pub packs_stored: usize,
    /// Packs whose data was read.
    pub packs_read: usize,
    /// Blobs decrypted and hashed.
    pub blobs_read: usize,
    /// Bytes of the packs read and found intact.
    pub bytes_read: u64,
    /// Damage found; empty when the repository is sound.
    pub problems: Vec<Problem>,
    /// Harmless findings (e.g. packs left by an interrupted backup).
    pub notes: Vec<String>,
    /// Packs not readable now because they are in an archive storage class (restore them
    /// from the archive to read them): not damage, and not checked.
    pub archived: Vec<String>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the repository, and reads and checks the packs `read` asks for.
pub fn verify(repo: &IndexedRepository, read: PacksToRead) -> Result<VerifyReport, RepositoryError> {
    let mut report = VerifyReport::default();
    let stored: HashSet<Id> = repo
        .backend()
        .list(FileKind::Pack)?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    report.packs_stored = stored.len();
    let mut bad_packs: HashMap<Id, String> = HashMap::new();
    for pack in repo.index().packs() {
        if !stored.contains(pack) {
            bad_packs.insert(*pack, "missing".to_owned());
        }
    }
    for pack in &stored {
        if !repo.index().packs().any(|p| p == pack) {
            report.notes.push(format!(
                "pack {pack} is in no index file (left by an interrupted backup?)"
            ));
        }
    }
    let to_read = chosen(stored.iter().copied().collect(), read);
    if !to_read.is_empty() {
        let (read, blobs, bytes, damaged, archived) = read_packs(repo, to_read);
        report.packs_read = read;
        report.blobs_read = blobs;
        report.bytes_read = bytes;
        report.archived = archived;
        bad_packs.extend(damaged);
    }
    let mut problems: BTreeSet<Problem> = bad_packs
        .iter()
        .map(|(pack, why)| Problem {
            subject: format!("pack {pack}"),
            detail: why.clone(),
        })
        .collect();
    let snapshots = repo.snapshots()?;
    report.snapshots = snapshots.len();
    for (id, snapshot) in &snapshots {
        check_snapshot(repo, id, snapshot, &bad_packs, &mut problems);
    }
    report.problems = problems.into_iter().collect();
    Ok(report)
}

/// The packs `read` asks for, of `packs`: a random share is at least one pack.
fn chosen(packs: Vec<Id>, read: PacksToRead) -> Vec<Id> {
    let percent = match read {
        PacksToRead::None => return Vec::new(),
        PacksToRead::All => return packs,
        PacksToRead::Share(percent) => usize::from(percent.clamp(1, 100)),
    };
    let count = (packs.len() * percent).div_ceil(100).max(1).min(packs.len());
    // A random order: packs sorted by their id hashed under a random key (the clock's if the
    // system has no randomness to give).
    let mut key = [0u8; 32];
    if crate::crypto::random_bytes(&mut key).is_err() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        key = *blake3::hash(&now.unwrap_or_default().as_nanos().to_le_bytes()).as_bytes();
    }
    let mut keyed: Vec<([u8; 32], Id)> = packs
        .into_iter()
        .map(|pack| (*blake3::keyed_hash(&key, &pack.0).as_bytes(), pack))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().take(count).map(|(_, pack)| pack).collect()
}

fn affected(repo: &IndexedRepository, blob: &Id, kind: BlobKind, bad: &HashMap<Id, String>) -> Option<String> {
    match repo.index().get(blob) {
        None => Some(format!("blob {blob} is in no index")),
        Some(l) if l.entry.kind != kind => Some(format!("blob {blob} has the wrong kind")),
        Some(l) if bad.contains_key(&l.pack) => Some(format!("pack {}", l.pack)),
        Some(_) => None,
    }
}

fn check_snapshot(
    repo: &IndexedRepository,
    id: &Id,
    snapshot: &Snapshot,
    bad: &HashMap<Id, String>,
    problems: &mut BTreeSet<Problem>,
) {
    let short = id.short();
    let damaged = |what: String, why: String| Problem {
        subject: format!("snapshot {short}: {what}"),
        detail: format!("damaged ({why})"),
    };
    for stream in &snapshot.streams {
        let stream_name = || format!("stream `{}`", stream.name);
        if let Some(why) = stream
            .content_lists
            .iter()
            .find_map(|b| affected(repo, b, BlobKind::Tree, bad))
        {
            problems.insert(damaged(stream_name(), format!("content list: {why}")));
            continue;
        }
        match repo.stream_content(stream) {
            Ok(content) => {
                if let Some(why) = content.iter().find_map(|b| affected(repo, b, BlobKind::Data, bad)) {
                    problems.insert(damaged(stream_name(), why));
                }
            }
            Err(e) => {
                problems.insert(damaged(stream_name(), e.to_string()));
            }
        }
    }
    let Some(root) = snapshot.tree else { return };
    let mut stack = vec![(PathBuf::from("/"), root)];
    let mut visited = HashSet::new();
    while let Some((dir, tree_id)) = stack.pop() {
        if let Some(why) = affected(repo, &tree_id, BlobKind::Tree, bad) {
            problems.insert(damaged(format!("directory {}", dir.display()), why));
            continue;
        }
        let tree = match repo.load_tree(&tree_id) {
            Ok(tree) => tree,
            Err(e) => {
                problems.insert(damaged(format!("directory {}", dir.display()), e.to_string()));
                continue;
            }
        };
        for node in &tree.nodes {
            let path = dir.join(node.os_name());
            match node.kind {
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree.filter(|s| visited.insert((*s, path.clone()))) {
                        stack.push((path, sub));
                    }
                }
                NodeKind::File => {
                    if let Some(why) = node.content.iter().find_map(|b| affected(repo, b, BlobKind::Data, bad)) {
                        problems.insert(damaged(format!("file {}", path.display()), why));
                    }
                }
                _ => {}
            }
        }
    }
}

/// What [`read_packs`] found: packs read, blobs read, bytes read, damaged packs, archived packs.
type ReadOutcome = (usize, usize, u64, HashMap<Id, String>, Vec<String>);

/// Reads every pack in parallel; packs in an archive storage class are listed apart.
fn read_packs(repo: &IndexedRepository, packs: Vec<Id>) -> ReadOutcome {
    let queue = Mutex::new(packs);
    let results = Mutex::new((0usize, 0usize, 0u64, HashMap::new(), Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let Some(pack) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                        break;
                    };
                    let outcome = check_pack(repo, &pack);
                    let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
                    match outcome {
                        Ok((blobs, bytes)) => {
                            r.0 += 1;
                            r.1 += blobs;
                            r.2 += bytes;
                        }
                        Err(PackProblem::Archived(why)) => r.4.push(format!("pack {pack} is not readable now: {why}")),
                        Err(PackProblem::Damaged(why)) => {
                            r.0 += 1;
                            r.3.insert(pack, format!("damaged: {why}"));
                        }
                    }
                }
            });
        }
    });
    let mut outcome = results.into_inner().unwrap_or_else(|p| p.into_inner());
    outcome.4.sort();
    outcome
}

/// Why a pack could not be checked.
enum PackProblem {
    /// In an archive storage class.
    Archived(String),
    /// Missing, unreadable or wrong.
    Damaged(String),
}

impl From<String> for PackProblem {
    fn from(why: String) -> Self {
        PackProblem::Damaged(why)
    }
}

/// Reads and checks one pack: its blobs and bytes when it is intact.
fn check_pack(repo: &IndexedRepository, pack: &Id) -> Result<(usize, u64), PackProblem> {
    let data = repo
        .backend()
        .read(FileKind::Pack, &pack.to_hex())
        .map_err(|e| match e {
            BackendError::Archived { .. } => PackProblem::Archived(e.to_string()),
            e => PackProblem::Damaged(e.to_string()),
        })?;
    if Id::of_file(&data) != *pack {
        return Err(PackProblem::Damaged("content does not match its name".into()));
    }
    let entries = pack::parse_trailer(repo.keys(), &data, Some(data.len() as u64)).map_err(|e| e.to_string())?;
    for entry in &entries {
        let sealed = &data[entry.offset as usize..(entry.offset + u64::from(entry.length)) as usize];
        pack::open_blob(repo.keys(), entry, sealed).map_err(|e| format!("blob {}: {e}", entry.id))?;
        if let Some(l) = repo.index().get(&entry.id).filter(|l| l.pack == *pack)
            && l.entry != *entry
        {
            return Err(format!("blob {} differs from its index entry", entry.id).into());
        }
    }
    Ok((entries.len(), data.len() as u64))
}
