//! Restores: a snapshot's tree (whole or chosen paths) into a directory, or one stream to a
//! writer. Every blob is checked (tag and hash) before a byte of it is written; a file whose
//! data cannot be read is not left behind half-written: it is written under a temporary name
//! and renamed only when complete. Everything is written through [`TargetDir`], which never
//! follows a symlink below the target. A tree restore holds at most
//! [`RestoreOptions::memory`] bytes of pack data at once, read by one set of reader threads
//! for all its files. The names of a file with several hard links are restored as hard links
//! of one file, as they were.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::bounded;
use tracing::warn;

use crate::error_kind::ErrorKind;
use crate::filter::Selection;
use crate::id::Id;
use crate::memory_budget::MemoryBudget;
use crate::pack::BlobKind;
use crate::progress::Counters;
use crate::repository::{BlobReaders, IndexedRepository, READ_AHEAD, RepositoryError};
use crate::snapshot::Snapshot;
use crate::target_dir::{self, TargetDir};
use crate::tree::{Node, NodeKind};

/// Errors that stop a restore before it starts or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The snapshot holds streams, not a tree (or the reverse).
    #[error("snapshot {snapshot} has no {wanted}")]
    WrongKind {
        /// The snapshot.
        snapshot: String,
        /// `file tree` or `streams`.
        wanted: &'static str,
    },
    /// No stream with this name.
    #[error("snapshot {snapshot} has no stream `{name}` (it has: {available})")]
    StreamNotFound {
        /// The snapshot.
        snapshot: String,
        /// The requested name.
        name: String,
        /// The names it has.
        available: String,
    },
    /// A stream's data could not be read; what was written before is correct but incomplete.
    #[error("stream `{name}`: {source}")]
    Stream {
        /// The stream.
        name: String,
        /// Why.
        source: RepositoryError,
    },
    /// Writing the output failed.
    #[error("{path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl RestoreError {
    /// What kind of failure this is (that of the repository's error, if it is one).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RestoreError::Repository(e) | RestoreError::Stream { source: e, .. } => e.kind(),
            _ => ErrorKind::Other,
        }
    }
}

/// One entry that could not be restored.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Path inside the snapshot.
    pub path: PathBuf,
    /// What went wrong (names the pack for damaged data).
    pub error: String,
}

/// Outcome of a tree restore.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Files restored completely; each further name of a file with several hard links counts
    /// once more (as a link made, not as bytes written).
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Entries that could not be restored (their data is damaged or missing).
    pub failures: Vec<Failure>,
    /// Symbolic links restored.
    pub links: u64,
    /// Existing files and links left alone because of the overwrite policy.
    pub skipped: u64,
    /// Entries (of any kind) at or below the requested paths, or all entries when no path was
    /// requested: zero with paths means none of them is in the snapshot.
    pub matched: u64,
}

impl RestoreReport {
    /// Whether existing entries were kept and nothing was written: the restore did not do
    /// what was asked.
    pub fn kept_everything(&self) -> bool {
        self.files + self.links == 0 && self.skipped > 0
    }
}

/// What to do with files that already exist in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Keep existing files.
    Never,
    /// Replace files older than the snapshot's copy.
    IfNewer,
    /// Replace every existing file.
    #[default]
    Always,
}

/// The default of [`RestoreOptions::memory`]: room for a few runs of blobs in flight.
pub const DEFAULT_RESTORE_MEMORY: u64 = 16 << 20;

/// Settings of a tree restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Which entries to restore (paths relative to the snapshot root; excludes).
    pub selection: Selection,
    /// Existing files in the target.
    pub overwrite: Overwrite,
    /// Parallel file writers; 4 when 0.
    pub threads: usize,
    /// Bytes of pack data (read plus decoded) the restore holds at once, whatever the number
    /// and size of its files; [`DEFAULT_RESTORE_MEMORY`] when 0.
    pub memory: u64,
    /// Restore setuid and setgid bits (otherwise they are cleared).
    pub keep_setid: bool,
}

/// Whether an existing entry at `dest` stays, by `policy`.
fn keep_existing(dest: &Path, node: &Node, policy: Overwrite) -> bool {
    use std::os::unix::fs::MetadataExt;
    if policy == Overwrite::Always {
        return false; // no need to look
    }
    let Ok(meta) = fs::symlink_metadata(dest) else {
        return false;
    };
    match policy {
        Overwrite::Always => false,
        Overwrite::Never => true,
        Overwrite::IfNewer => meta.mtime() * 1_000_000_000 + meta.mtime_nsec() >= node.mtime_ns,
    }
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Restores the snapshot's tree into `target`.
pub fn restore_tree(
    repo: &IndexedRepository,
    snapshot: &Snapshot,
    snapshot_id: &Id,
    target: &Path,
    options: &RestoreOptions,
    counters: Arc<Counters>,
) -> Result<RestoreReport, RestoreError> {
    let root = snapshot.tree.ok_or(RestoreError::WrongKind {
        snapshot: snapshot_id.short(),
        wanted: "file tree",
    })?;
    fs::create_dir_all(target).map_err(|source| RestoreError::Write {
        path: target.to_owned(),
        source,
    })?;
    let root_dir = TargetDir::open(target).map_err(|source| RestoreError::Write {
        path: target.to_owned(),
        source,
    })?;
    let root_dir = &root_dir;
    let report = Mutex::new(RestoreReport::default());
    let chown = crate::backend::local::process_is_root();
    let keep_setid = options.keep_setid;
    let threads = if options.threads == 0 { 4 } else { options.threads };
    let budget = MemoryBudget::new(match options.memory {
        0 => DEFAULT_RESTORE_MEMORY,
        bytes => bytes,
    });
    let budget = &budget;
    let mut dirs: Vec<(PathBuf, Node)> = Vec::new();
    // The first name restored of each file with several hard links, and the names to link to it
    // once every file is written.
    let mut first_names: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut hard_links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let (tx, rx) = bounded::<(PathBuf, PathBuf, Node)>(threads * 2);
    repo.with_readers(READ_AHEAD, |readers| {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let rx = rx.clone();
                let (report, counters) = (&report, &counters);
                scope.spawn(move || {
                    let writer = FileWriter {
                        repo,
                        budget,
                        readers,
                        root: root_dir,
                        metadata: (chown, keep_setid),
                        counters,
                    };
                    for (rel, dest, node) in rx {
                        match restore_file(&writer, &rel, &dest, &node) {
                            Ok(bytes) => {
                                let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                                r.files += 1;
                                r.bytes += bytes;
                            }
                            Err(error) => {
                                warn!(path = %rel.display(), %error, "file not restored");
                                Counters::add(&counters.errors, 1);
                                report.lock().unwrap_or_else(|p| p.into_inner()).failures.push(Failure {
                                    path: rel,
                                    error: error.to_string(),
                                });
                            }
                        }
                    }
                });
            }
            drop(rx);
            let mut stack = vec![(PathBuf::new(), root)];
            while let Some((rel_dir, tree_id)) = stack.pop() {
                let tree = match repo.load_tree(&tree_id) {
                    Ok(tree) => tree,
                    Err(e) => {
                        warn!(path = %rel_dir.display(), error = %e, "directory not restored");
                        let failure = Failure {
                            path: rel_dir.clone(),
                            error: e.to_string(),
                        };
                        report.lock().unwrap_or_else(|p| p.into_inner()).failures.push(failure);
                        continue;
                    }
                };
                for node in tree.nodes {
                    let rel = rel_dir.join(node.os_name());
                    if !options.selection.includes(&rel, node.kind == NodeKind::Dir) {
                        continue;
                    }
                    if options.selection.requested(&rel) {
                        report.lock().unwrap_or_else(|p| p.into_inner()).matched += 1;
                    }
                    let dest = target.join(&rel);
                    // An existing directory the policy keeps keeps its metadata; what is below it
                    // is decided entry by entry.
                    let keep = keep_existing(&dest, &node, options.overwrite);
                    if node.kind != NodeKind::Dir && keep {
                        report.lock().unwrap_or_else(|p| p.into_inner()).skipped += 1;
                        continue;
                    }
                    let result = match node.kind {
                        NodeKind::Dir => root_dir.dir(&rel, true).map(|_| {
                            if let Some(sub) = node.subtree {
                                stack.push((rel.clone(), sub));
                            }
                            if !keep {
                                dirs.push((rel.clone(), node));
                            }
                        }),
                        NodeKind::File => {
                            if let Some(key) = node.hard_link_key() {
                                if let Some(first) = first_names.get(&key) {
                                    hard_links.push((rel.clone(), first.clone()));
                                    continue;
                                }
                                first_names.insert(key, rel.clone());
                            }
                            if tx.send((rel.clone(), dest, node)).is_err() {
                                break;
                            }
                            Ok(())
                        }
                        NodeKind::Symlink => restore_symlink(root_dir, &rel, &dest, &node, chown).map(|()| {
                            report.lock().unwrap_or_else(|p| p.into_inner()).links += 1;
                        }),
                        other => {
                            warn!(path = %rel.display(), kind = ?other, "special files are not restored");
                            Ok(())
                        }
                    };
                    if let Err(e) = result {
                        report.lock().unwrap_or_else(|p| p.into_inner()).failures.push(Failure {
                            path: rel,
                            error: e.to_string(),
                        });
                    }
                }
            }
            drop(tx);
        })
    });
    let mut report = report.into_inner().unwrap_or_else(|p| p.into_inner());
    restore_hard_links(root_dir, &hard_links, &mut report, &counters);
    // Directory metadata last, deepest first, so writing files does not change their times.
    for (rel, node) in dirs.iter().rev() {
        let applied = root_dir
            .dir(rel, false)
            .and_then(|fd| apply_file_metadata(&File::from(fd), node, (chown, keep_setid)));
        if let Err(e) = applied {
            warn!(path = %rel.display(), error = %e, "directory metadata not restored");
        }
    }
    Ok(report)
}

/// Makes each `(name, first)` of `links` a hard link to the restored file `first`; a name
/// whose first file failed fails with it.
fn restore_hard_links(root: &TargetDir, links: &[(PathBuf, PathBuf)], report: &mut RestoreReport, counters: &Counters) {
    let failed: HashSet<PathBuf> = report.failures.iter().map(|f| f.path.clone()).collect();
    for (rel, first) in links {
        let linked = if failed.contains(first) {
            Err(std::io::Error::other(format!(
                "a hard link to {}, which was not restored",
                first.display()
            )))
        } else {
            parent_of(root, first).and_then(|(from_dir, from_name)| {
                let (to_dir, name) = parent_of(root, rel)?;
                let mut tmp_name = std::ffi::OsString::from(".");
                tmp_name.push(name);
                tmp_name.push(".hort-restore");
                target_dir::hard_link((&from_dir, from_name), (&to_dir, name), &tmp_name)
            })
        };
        match linked {
            Ok(()) => {
                report.files += 1;
                Counters::add(&counters.files, 1);
            }
            Err(e) => {
                warn!(path = %rel.display(), error = %e, "hard link not restored");
                Counters::add(&counters.errors, 1);
                report.failures.push(Failure {
                    path: rel.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
}

/// The parent directory of `rel` (opened without following symlinks) and its file name.
fn parent_of<'a>(root: &TargetDir, rel: &'a Path) -> std::io::Result<(std::os::fd::OwnedFd, &'a OsStr)> {
    let name = rel
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{}: no file name", rel.display())))?;
    Ok((root.dir(rel.parent().unwrap_or(Path::new("")), true)?, name))
}

fn restore_symlink(root: &TargetDir, rel: &Path, dest: &Path, node: &Node, chown: bool) -> std::io::Result<()> {
    let (parent, name) = parent_of(root, rel)?;
    let target = node.os_target().unwrap_or_default();
    target_dir::symlink(&parent, name, &target, chown.then_some((node.uid, node.gid)))?;
    if let Err(e) = node.write_xattrs(dest) {
        tracing::debug!(path = %dest.display(), error = %e, "symlink extended attributes not restored");
    }
    Ok(())
}

/// Applies owner (`chown`), mode and time through an open handle (no path lookups); the
/// setuid and setgid bits only with `keep_setid`.
fn apply_file_metadata(file: &File, node: &Node, (chown, keep_setid): (bool, bool)) -> std::io::Result<()> {
    use xattr::FileExt;
    for (name, value) in &node.xattrs {
        let applied = hex::decode(value)
            .map_err(std::io::Error::other)
            .and_then(|value| file.set_xattr(name, &value));
        if let Err(e) = applied {
            warn!(xattr = %name, error = %e, "extended attribute not restored");
        }
    }
    if chown {
        std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))?;
    }
    let mode = if keep_setid { node.mode } else { node.mode & !0o6000 };
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.set_modified(time_of(node.mtime_ns))
}

/// Why one file was not restored (it becomes a [`Failure`]).
#[derive(Debug, thiserror::Error)]
enum FileError {
    /// Creating, writing, finishing or renaming the file failed.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file (its temporary name while it is written).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its data could not be read from the repository.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Its blobs hold another length than the snapshot records.
    #[error("restored {written} bytes, the snapshot records {recorded}")]
    Length {
        /// Bytes written.
        written: u64,
        /// The size in the snapshot.
        recorded: u64,
    },
}

/// What every file of one restore is written with.
struct FileWriter<'a> {
    repo: &'a IndexedRepository,
    /// Shared by all files being written.
    budget: &'a MemoryBudget,
    readers: &'a BlobReaders,
    root: &'a TargetDir,
    /// `chown` and `keep_setid` (see [`apply_file_metadata`]).
    metadata: (bool, bool),
    counters: &'a Counters,
}

fn restore_file(writer: &FileWriter<'_>, rel: &Path, dest: &Path, node: &Node) -> Result<u64, FileError> {
    let FileWriter {
        repo,
        budget,
        readers,
        root,
        metadata,
        counters,
    } = *writer;
    let at = |path: &Path| {
        let path = path.to_owned();
        move |source| FileError::Write { path, source }
    };
    let (parent, name) = parent_of(root, rel).map_err(at(dest))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".hort-restore");
    let tmp = dest.with_file_name(&tmp_name);
    let result = (|| {
        let mut file = target_dir::create_file(&parent, &tmp_name).map_err(at(&tmp))?;
        let mut written = 0u64;
        repo.read_in_order_within(
            &node.content,
            BlobKind::Data,
            budget,
            readers,
            |data| {
                file.write_all(&data).map_err(at(&tmp))?;
                written += data.len() as u64;
                Counters::add(&counters.bytes, data.len() as u64);
                Ok(())
            },
            FileError::Repository,
        )?;
        if written != node.size {
            return Err(FileError::Length {
                written,
                recorded: node.size,
            });
        }
        apply_file_metadata(&file, node, metadata).map_err(at(&tmp))?;
        drop(file);
        target_dir::rename(&parent, &tmp_name, name).map_err(at(dest))?;
        Counters::add(&counters.files, 1);
        Ok(written)
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&parent, &tmp_name, rustix::fs::AtFlags::empty());
    }
    result
}

/// Writes stream `name` of the snapshot to `out`, reading a few blobs ahead in parallel.
pub fn restore_stream(
    repo: &IndexedRepository,
    snapshot: &Snapshot,
    snapshot_id: &Id,
    name: &str,
    out: &mut dyn Write,
    counters: &Counters,
) -> Result<u64, RestoreError> {
    if snapshot.streams.is_empty() {
        return Err(RestoreError::WrongKind {
            snapshot: snapshot_id.short(),
            wanted: "streams",
        });
    }
    let stream = snapshot
        .streams
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| RestoreError::StreamNotFound {
            snapshot: snapshot_id.short(),
            name: name.to_owned(),
            available: snapshot
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let mut written = 0u64;
    let write_err = |source| RestoreError::Write {
        path: PathBuf::from("<output>"),
        source,
    };
    let content = repo.stream_content(stream).map_err(|source| RestoreError::Stream {
        name: name.to_owned(),
        source,
    })?;
    repo.read_in_order(
        &content,
        BlobKind::Data,
        |data| {
            out.write_all(&data).map_err(write_err)?;
            written += data.len() as u64;
            Counters::add(&counters.bytes, data.len() as u64);
            Ok(())
        },
        |source| RestoreError::Stream {
            name: name.to_owned(),
            source,
        },
    )?;
    out.flush().map_err(write_err)?;
    if written != stream.size {
        return Err(RestoreError::Stream {
            name: name.to_owned(),
            source: RepositoryError::Corrupt {
                what: format!("snapshot {}", snapshot_id.short()),
                reason: format!("stream has {written} bytes, the snapshot records {}", stream.size),
            },
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::archiver::{BackupOptions, StreamInput, backup_streams, backup_tree};
    use crate::backend::{BackendError, FileKind};
    use crate::backup_lock::BackupLock;
    use crate::repository::Repository;

    /// A dump-like stream: rows that differ, so it is cut into many small chunks.
    fn dump(rows: usize) -> Vec<u8> {
        (0..rows)
            .flat_map(|i| {
                format!("{i}\t{}\tuser{}@example.com\t{}\n", i * 7919 % 104_729, i % 977, i * 31).into_bytes()
            })
            .collect()
    }

    /// A backend that counts the pack bytes read and, at each read, how many of all bytes
    /// read so far the restore has not written yet: the pack data it holds.
    struct Counting {
        inner: Arc<crate::backend::memory::MemoryBackend>,
        written: Arc<Counters>,
        read: std::sync::atomic::AtomicU64,
        peak: std::sync::atomic::AtomicU64,
    }

    impl crate::backend::Backend for Counting {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
            self.inner.list(kind)
        }
        fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
            self.inner.read(kind, name)
        }
        fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
            use std::sync::atomic::Ordering::SeqCst;
            if kind == FileKind::Pack {
                let read = self.read.fetch_add(length, SeqCst) + length;
                let written = self.written.bytes.load(SeqCst);
                self.peak.fetch_max(read.saturating_sub(written), SeqCst);
            }
            self.inner.read_range(kind, name, offset, length)
        }
        fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError> {
            self.inner.read_tail(kind, name, length)
        }
        fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
            self.inner.write(kind, name, data)
        }
        fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
            self.inner.delete(kind, name)
        }
    }

    /// Bytes that do not compress (so that pack bytes read and plaintext written compare).
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn the_memory_budget_bounds_the_pack_data_a_restore_holds() {
        let source = tempfile::tempdir().unwrap();
        for i in 0..4u64 {
            fs::write(source.path().join(format!("large-{i}.bin")), noise(i, 12 << 20)).unwrap();
        }
        fs::create_dir(source.path().join("small")).unwrap();
        for i in 0..300u64 {
            fs::write(source.path().join(format!("small/{i}")), noise(100 + i, 3000)).unwrap();
        }
        let (repo, backend) = crate::repository::in_memory();
        let lock = BackupLock::acquire(&repo).unwrap();
        let repo = repo.load_index().unwrap();
        let options = BackupOptions {
            threads: 1, // blobs of a file back to back: a run reads no other file's bytes
            ..BackupOptions::default()
        };
        let (id, snapshot) = backup_tree(&repo, &lock, source.path(), &options, Arc::default()).unwrap();
        drop(lock);

        let written = Arc::new(Counters::default());
        let counting = Arc::new(Counting {
            inner: backend,
            written: written.clone(),
            read: Default::default(),
            peak: Default::default(),
        });
        let repo = Repository::open(counting.clone(), b"unit-test password")
            .unwrap()
            .load_index()
            .unwrap();
        let largest_blob = repo
            .index()
            .locations()
            .map(|l| u64::from(l.entry.length))
            .max()
            .unwrap();
        let budget = 6 << 20;
        let target = tempfile::tempdir().unwrap();
        let options = RestoreOptions {
            memory: budget,
            ..RestoreOptions::default()
        };
        let report = restore_tree(&repo, &snapshot, &id, target.path(), &options, written.clone()).unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.files, 304);
        for i in 0..4u64 {
            let restored = fs::read(target.path().join(format!("large-{i}.bin"))).unwrap();
            assert!(restored == noise(i, 12 << 20), "large-{i}.bin restored byte for byte");
        }
        assert_eq!(fs::read(target.path().join("small/7")).unwrap(), noise(107, 3000));
        // A blob larger than the budget is read alone; the slack covers the trees and the
        // few bytes each sealed blob has more than its plaintext.
        let peak = counting.peak.load(std::sync::atomic::Ordering::SeqCst);
        let bound = budget.max(largest_blob) + (256 << 10);
        assert!(
            peak <= bound,
            "{peak} bytes of pack data held at once; the budget allows {bound}"
        );
        assert!(peak > 0);
    }

    #[test]
    fn hard_links_are_restored_as_links() {
        use std::os::unix::fs::MetadataExt;
        let source = tempfile::tempdir().unwrap();
        fs::create_dir(source.path().join("sub")).unwrap();
        fs::write(source.path().join("a.so"), noise(1, 300_000)).unwrap();
        fs::hard_link(source.path().join("a.so"), source.path().join("sub/b.so")).unwrap();
        fs::hard_link(source.path().join("a.so"), source.path().join("sub/c.so")).unwrap();
        fs::write(source.path().join("copy.so"), noise(1, 300_000)).unwrap();
        let (repo, backend) = crate::repository::in_memory();
        let lock = BackupLock::acquire(&repo).unwrap();
        let repo = repo.load_index().unwrap();
        let (id, snapshot) =
            backup_tree(&repo, &lock, source.path(), &BackupOptions::default(), Arc::default()).unwrap();
        drop(lock);
        let repo = Repository::open(backend, b"unit-test password")
            .unwrap()
            .load_index()
            .unwrap();
        let root = repo.load_tree(&snapshot.tree.unwrap()).unwrap();
        let a = root.find(OsStr::new("a.so")).unwrap();
        assert_eq!(a.links, 3);
        assert_eq!(
            root.find(OsStr::new("copy.so")).unwrap().links,
            0,
            "one link: not recorded"
        );

        let restore = |target: &Path, options: &RestoreOptions| {
            let report = restore_tree(&repo, &snapshot, &id, target, options, Arc::default()).unwrap();
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            report
        };
        let target = tempfile::tempdir().unwrap();
        fs::write(target.path().join("copy.so"), b"old").unwrap();
        let report = restore(target.path(), &RestoreOptions::default());
        assert_eq!(report.files, 4);
        assert_eq!(report.bytes, 600_000, "the linked file is written once, the copy once");
        let meta = |p: &str| fs::metadata(target.path().join(p)).unwrap();
        assert_eq!(meta("a.so").nlink(), 3);
        assert_eq!(meta("sub/b.so").ino(), meta("a.so").ino());
        assert_eq!(meta("sub/c.so").ino(), meta("a.so").ino());
        assert_ne!(meta("copy.so").ino(), meta("a.so").ino(), "equal content is not a link");
        assert!(fs::read(target.path().join("sub/c.so")).unwrap() == noise(1, 300_000));
        assert!(fs::read(target.path().join("copy.so")).unwrap() == noise(1, 300_000));

        // Restoring again replaces each name; one name alone is a file of its own.
        restore(target.path(), &RestoreOptions::default());
        assert_eq!(meta("sub/b.so").ino(), meta("a.so").ino());
        let alone = tempfile::tempdir().unwrap();
        let options = RestoreOptions {
            selection: Selection::new(&[PathBuf::from("sub/c.so")], &[]).unwrap(),
            ..RestoreOptions::default()
        };
        assert_eq!(restore(alone.path(), &options).files, 1);
        assert!(fs::read(alone.path().join("sub/c.so")).unwrap() == noise(1, 300_000));
    }

    #[test]
    fn a_long_stream_restores_exactly_with_few_requests() {
        let (repo, backend) = crate::repository::in_memory();
        let lock = BackupLock::acquire(&repo).unwrap();
        let repo = repo.load_index().unwrap();
        let data = dump(150_000);
        let input = StreamInput {
            name: "db".into(),
            reader: Box::new(std::io::Cursor::new(data.clone())),
            complete: None,
        };
        // Four encoder threads: blobs may land in their pack out of stream order.
        let options = BackupOptions {
            threads: 4,
            ..BackupOptions::default()
        };
        let (id, snapshot) = backup_streams(&repo, &lock, vec![input], &options, Arc::default()).unwrap();
        let stream = &snapshot.streams[0];
        assert!(
            stream.content.is_empty() && !stream.content_lists.is_empty(),
            "{stream:?}"
        );

        let repo = Repository::open(backend.clone(), b"unit-test password")
            .unwrap()
            .load_index()
            .unwrap();
        let blobs = repo.stream_content(stream).unwrap().len();
        assert!(blobs > 200, "{blobs} blobs");
        let before = backend.range_reads();
        let mut out = Vec::new();
        let written = restore_stream(&repo, &snapshot, &id, "db", &mut out, &Counters::default()).unwrap();
        assert_eq!(written, data.len() as u64);
        assert!(out == data, "restored byte for byte");
        let requests = backend.range_reads() - before;
        assert!(
            requests * 20 < blobs,
            "{requests} range requests for {blobs} data blobs and {} content lists",
            stream.content_lists.len()
        );
    }
}
