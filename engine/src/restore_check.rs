//! Checking a restored tree against its snapshot, for `verify-restore`: every entry of the
//! snapshot must be on disk with its type and permission bits, every file with its size and
//! content (each stretch of the file hashed the way its content blob's id was made, with the
//! repository's keyed hash, and compared with the id recorded), every symbolic link with its
//! target, and nothing else. Also the removal of a scratch directory's contents.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::id::Id;
use crate::repository::IndexedRepository;
use crate::tree::{Node, NodeKind};

/// One difference between a restored tree and its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Path in the snapshot (relative to its root).
    pub path: PathBuf,
    /// What differs.
    pub detail: String,
}

/// What [`compare_tree`] compared and found.
#[derive(Debug, Default)]
pub struct TreeCheck {
    /// Regular files compared.
    pub files: u64,
    /// Bytes of the files compared.
    pub bytes: u64,
    /// Directories compared.
    pub dirs: u64,
    /// Symbolic links compared.
    pub links: u64,
    /// Fifos, sockets and device nodes of the snapshot, which a restore does not create.
    pub special: u64,
    /// Differences, in the order found.
    pub differences: Vec<Difference>,
}

/// Permission bits a restore sets (setuid and setgid are cleared unless asked for).
const COMPARED_MODE: u32 = 0o1777;

/// Compares the tree below `root` (a restore of the snapshot tree `tree` into it) with the
/// snapshot. Entries in `already_failed` (those the restore reported it could not write) and
/// what is below them are not compared again.
pub fn compare_tree(repo: &IndexedRepository, tree: Id, root: &Path, already_failed: &HashSet<PathBuf>) -> TreeCheck {
    let mut check = TreeCheck::default();
    let mut buffer = Vec::new();
    let mut stack = vec![(PathBuf::new(), tree)];
    while let Some((rel_dir, tree_id)) = stack.pop() {
        let tree = match repo.load_tree(&tree_id) {
            Ok(tree) => tree,
            Err(e) => {
                if !already_failed.contains(&rel_dir) {
                    check.differ(&rel_dir, format!("directory listing unreadable: {e}"));
                }
                continue;
            }
        };
        let mut expected: BTreeSet<OsString> = BTreeSet::new();
        for node in &tree.nodes {
            let rel = rel_dir.join(node.os_name());
            expected.insert(node.os_name());
            if already_failed.contains(&rel) {
                continue;
            }
            if let Some(detail) = compare_node(repo, node, &root.join(&rel), &mut check, &mut buffer) {
                check.differ(&rel, detail);
            } else if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
                stack.push((rel, sub));
            }
        }
        // Nothing but the snapshot's entries (fifos, sockets and devices are not restored).
        if let Ok(entries) = fs::read_dir(root.join(&rel_dir)) {
            for entry in entries.flatten() {
                if !expected.contains(&entry.file_name()) {
                    check.differ(
                        &rel_dir.join(entry.file_name()),
                        "restored, but not in the snapshot".into(),
                    );
                }
            }
        }
    }
    check
}

impl TreeCheck {
    fn differ(&mut self, path: &Path, detail: String) {
        self.differences.push(Difference {
            path: path.to_owned(),
            detail,
        });
    }
}

/// What differs between `node` and the entry at `path`, if anything; counts what it compared.
fn compare_node(
    repo: &IndexedRepository,
    node: &Node,
    path: &Path,
    check: &mut TreeCheck,
    buffer: &mut Vec<u8>,
) -> Option<String> {
    let special = !matches!(node.kind, NodeKind::File | NodeKind::Dir | NodeKind::Symlink);
    if special {
        check.special += 1;
        return None;
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some("missing from the restore".into()),
        Err(e) => return Some(format!("cannot read: {e}")),
    };
    let found = meta.file_type();
    let kind_matches = match node.kind {
        NodeKind::File => found.is_file(),
        NodeKind::Dir => found.is_dir(),
        _ => found.is_symlink(),
    };
    if !kind_matches {
        let wanted = match node.kind {
            NodeKind::File => "a regular file",
            NodeKind::Dir => "a directory",
            _ => "a symbolic link",
        };
        return Some(format!("is not {wanted} as in the snapshot"));
    }
    if node.kind == NodeKind::Symlink {
        check.links += 1;
        let target = fs::read_link(path).map(PathBuf::into_os_string);
        return match target {
            Ok(target) if Some(&target) == node.os_target().as_ref() => None,
            Ok(target) => Some(format!(
                "links to {:?}, the snapshot records {:?}",
                target,
                node.os_target().unwrap_or_default()
            )),
            Err(e) => Some(format!("cannot read the link: {e}")),
        };
    }
    let mode = meta.mode() & COMPARED_MODE;
    if mode != node.mode & COMPARED_MODE {
        return Some(format!(
            "permissions {:o}, the snapshot records {:o}",
            mode,
            node.mode & COMPARED_MODE
        ));
    }
    if node.kind == NodeKind::Dir {
        check.dirs += 1;
        // Lets the walk below read and list it, whatever its recorded permissions.
        if mode & 0o500 != 0o500 {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
        }
        return None;
    }
    check.files += 1;
    check.bytes += node.size;
    if meta.len() != node.size {
        return Some(format!("{} bytes, the snapshot records {}", meta.len(), node.size));
    }
    compare_content(repo, node, path, buffer).err().map(|d| d.to_string())
}

/// How a restored file's content differs from its snapshot, or why it could not be compared.
#[derive(Debug, thiserror::Error)]
enum ContentDifference {
    /// The file cannot be opened.
    #[error("cannot read: {0}")]
    Unreadable(io::Error),
    /// A content blob of the snapshot is in no index file.
    #[error("chunk {chunk} of {chunks}: blob {blob} is in no index")]
    NotIndexed {
        /// Its position, from 1.
        chunk: usize,
        /// How many the file has.
        chunks: usize,
        /// The blob's short id.
        blob: String,
    },
    /// Reading a stretch failed (the file is shorter than its chunks).
    #[error("reading bytes {start}..{end}: {source}")]
    Read {
        /// First byte.
        start: u64,
        /// End of the stretch.
        end: u64,
        /// Why.
        source: io::Error,
    },
    /// A stretch hashes to another id than its chunk's.
    #[error("content differs from the snapshot in bytes {start}..{end} (chunk {chunk} of {chunks})")]
    Differs {
        /// First byte.
        start: u64,
        /// End of the stretch.
        end: u64,
        /// Its position, from 1.
        chunk: usize,
        /// How many the file has.
        chunks: usize,
    },
    /// The chunks hold fewer bytes than the snapshot records for the file.
    #[error("its chunks hold {held} bytes, the snapshot records {recorded}")]
    ChunksShort {
        /// Bytes of the chunks.
        held: u64,
        /// The file's size in the snapshot.
        recorded: u64,
    },
    /// The file goes on after its last chunk.
    #[error("longer than its {0} bytes of chunks")]
    Longer(u64),
    /// Reading after the last chunk failed.
    #[error("reading past byte {offset}: {source}")]
    ReadPast {
        /// Bytes of the chunks.
        offset: u64,
        /// Why.
        source: io::Error,
    },
}

/// Reads the file at `path` stretch by stretch, one per content blob (of the length the
/// index records), and compares each stretch's keyed hash with the blob's id.
fn compare_content(
    repo: &IndexedRepository,
    node: &Node,
    path: &Path,
    buffer: &mut Vec<u8>,
) -> Result<(), ContentDifference> {
    let mut file = match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // Restored with its recorded permissions, which may not let its owner read it.
            let mode = node.mode & COMPARED_MODE;
            fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o400))
                .and_then(|()| File::open(path))
                .map_err(ContentDifference::Unreadable)?
        }
        opened => opened.map_err(ContentDifference::Unreadable)?,
    };
    let chunks = node.content.len();
    let mut offset = 0u64;
    for (i, blob) in node.content.iter().enumerate() {
        let Some(location) = repo.index().get(blob) else {
            return Err(ContentDifference::NotIndexed {
                chunk: i + 1,
                chunks,
                blob: blob.short(),
            });
        };
        let length = location.entry.raw_length as usize;
        let end = offset + length as u64;
        buffer.resize(length, 0);
        file.read_exact(buffer).map_err(|source| ContentDifference::Read {
            start: offset,
            end,
            source,
        })?;
        if repo.keys().blob_id(buffer) != *blob {
            return Err(ContentDifference::Differs {
                start: offset,
                end,
                chunk: i + 1,
                chunks,
            });
        }
        offset = end;
    }
    let mut more = [0u8; 1];
    match file.read(&mut more) {
        Ok(0) if offset == node.size => Ok(()),
        Ok(0) => Err(ContentDifference::ChunksShort {
            held: offset,
            recorded: node.size,
        }),
        Ok(_) => Err(ContentDifference::Longer(offset)),
        Err(source) => Err(ContentDifference::ReadPast { offset, source }),
    }
}

/// Removes everything below `dir` (not `dir` itself, which may be a mount point), never
/// following a symbolic link: a link is removed, not what it points at. Directories whose
/// permissions forbid it are made writable first.
pub fn remove_contents(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
            remove_contents(&path)?;
            fs::remove_dir(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::archiver::{BackupOptions, backup_tree};
    use crate::backup_lock::BackupLock;
    use crate::repository::Repository;
    use crate::restorer::{RestoreOptions, restore_tree};

    #[test]
    fn what_differs_on_disk_is_named_by_path() {
        let (repo, backend) = crate::repository::in_memory();
        let lock = BackupLock::acquire(&repo).unwrap();
        let repo = repo.load_index().unwrap();
        let source = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        fs::write(source.path().join("big"), &data).unwrap();
        fs::write(source.path().join("small"), b"hello").unwrap();
        std::os::unix::fs::symlink("small", source.path().join("link")).unwrap();
        let (id, snapshot) =
            backup_tree(&repo, &lock, source.path(), &BackupOptions::default(), Arc::default()).unwrap();
        let repo = Repository::open(backend, b"unit-test password")
            .unwrap()
            .load_index()
            .unwrap();
        let root = snapshot.tree.unwrap();
        let restored = tempfile::tempdir().unwrap();
        let target = restored.path();
        restore_tree(
            &repo,
            &snapshot,
            &id,
            target,
            &RestoreOptions::default(),
            Arc::default(),
        )
        .unwrap();
        let clean = compare_tree(&repo, root, target, &HashSet::new());
        assert!(clean.differences.is_empty(), "{:?}", clean.differences);
        assert_eq!((clean.files, clean.bytes, clean.links), (2, 3_000_005, 1));

        // One byte changed far into the big file, a link retargeted, a file too many, one gone.
        let mut changed = data.clone();
        changed[2_900_000] ^= 1;
        fs::write(target.join("big"), &changed).unwrap();
        fs::remove_file(target.join("link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", target.join("link")).unwrap();
        fs::write(target.join("stray"), b"?").unwrap();
        fs::remove_file(target.join("small")).unwrap();
        let found: Vec<(String, String)> = compare_tree(&repo, root, target, &HashSet::new())
            .differences
            .into_iter()
            .map(|d| (d.path.display().to_string(), d.detail))
            .collect();
        assert_eq!(found.len(), 4, "{found:?}");
        let detail = |path: &str| &found.iter().find(|(p, _)| p == path).unwrap().1;
        assert!(
            detail("big").starts_with("content differs from the snapshot in bytes"),
            "{found:?}"
        );
        assert!(detail("big").contains(" of "), "names the chunk: {found:?}");
        assert_eq!(detail("link"), "links to \"elsewhere\", the snapshot records \"small\"");
        assert_eq!(detail("stray"), "restored, but not in the snapshot");
        assert_eq!(detail("small"), "missing from the restore");
        // What the restore already reported is not reported again.
        let skipped = HashSet::from([PathBuf::from("big")]);
        assert_eq!(compare_tree(&repo, root, target, &skipped).differences.len(), 3);
    }

    #[test]
    fn removal_stays_inside_and_gets_through_read_only_directories() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"not scratch").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let locked = scratch.path().join("a/locked");
        fs::create_dir_all(&locked).unwrap();
        fs::write(locked.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), scratch.path().join("link")).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
        remove_contents(scratch.path()).unwrap();
        assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);
        assert_eq!(fs::read(outside.path().join("keep")).unwrap(), b"not scratch");
    }
}
