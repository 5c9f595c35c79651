//! Storage backends: where repository files live. The engine only sees [`Backend`].
//!
//! A backend stores whole files by kind and name; writes are atomic (a reader sees the
//! whole file or none), and files are never modified after they are written.

pub mod group;
pub mod http;
pub mod local;
pub mod memory;
pub mod resync;
pub mod s3;
pub mod throttle;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The kinds of repository files, each in its own directory (see `FORMAT.md`, "Layout").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// The repository's `config` file (the name is ignored).
    Config,
    /// Key files under `keys/`.
    Key,
    /// Pack files under `data/<first two hex digits>/`.
    Pack,
    /// A pack of tree blobs, written with this kind so that backends keep it readable (no
    /// archive storage class: every command walks trees). Stored, listed and read exactly
    /// as a [`FileKind::Pack`]: only writes use this kind.
    TreePack,
    /// Index files under `index/`.
    Index,
    /// Snapshot manifests under `snapshots/`.
    Snapshot,
    /// Prune markers (packs condemned by a prune run) under `prune/`.
    Prune,
    /// Locks of running backups under `locks/`.
    Lock,
    /// Transient files written and deleted by `check` to test a target, under `probe/`.
    Probe,
}

impl FileKind {
    /// The directory of this kind, relative to the repository root.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Pack | FileKind::TreePack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Prune => "prune",
            FileKind::Lock => "locks",
            FileKind::Probe => "probe",
        }
    }

    /// The path of a file of this kind, relative to the repository root.
    pub fn path(self, name: &str) -> String {
        match self {
            FileKind::Config => "config".to_owned(),
            FileKind::Pack | FileKind::TreePack => format!("data/{}/{name}", name.get(..2).unwrap_or("00")),
            other => format!("{}/{name}", other.dir()),
        }
    }

    /// Whether files of this kind are metadata (small, needed to read anything) rather than
    /// data packs. Storage groups keep metadata on every target.
    pub fn is_metadata(self) -> bool {
        !self.is_pack()
    }

    /// Whether files of this kind are packs (of data or of trees).
    pub fn is_pack(self) -> bool {
        matches!(self, FileKind::Pack | FileKind::TreePack)
    }

    /// Whether a target with S3 Object Lock puts its retention on files of this kind: the
    /// repository's content (config, keys, packs, snapshots). Index files (rebuilt from the
    /// packs by `repair index`), prune markers, backup locks and probes are rewritten or
    /// deleted by normal work and stay unlocked.
    pub fn is_locked(self) -> bool {
        matches!(
            self,
            FileKind::Config | FileKind::Key | FileKind::Pack | FileKind::TreePack | FileKind::Snapshot
        )
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Config => "config",
            FileKind::Key => "key",
            FileKind::Pack => "pack",
            FileKind::TreePack => "tree pack",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshot",
            FileKind::Prune => "prune marker",
            FileKind::Lock => "backup lock",
            FileKind::Probe => "probe",
        })
    }
}

/// Errors of a backend. Every variant names the file (`location`) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The file does not exist.
    #[error("{location}: not found")]
    NotFound {
        /// Backend and path.
        location: String,
    },
    /// The file is shorter than the requested range (a truncated file).
    #[error("{location}: truncated (wanted {wanted} bytes at offset {offset}, file has {size})")]
    Truncated {
        /// Backend and path.
        location: String,
        /// Start of the requested range.
        offset: u64,
        /// Requested length.
        wanted: u64,
        /// The file's actual size.
        size: u64,
    },
    /// A local I/O error.
    #[error("{location}: {source}")]
    Io {
        /// Backend and path.
        location: String,
        /// The error.
        source: std::io::Error,
    },
    /// A remote service failed (after retries).
    #[error("{location}: {message}")]
    Remote {
        /// Backend and path.
        location: String,
        /// What the service said.
        message: String,
    },
    /// The file is under S3 Object Lock retention: it cannot be deleted before `until`.
    #[error("{location}: under S3 Object Lock retention until {until}; it can be deleted after that")]
    Retained {
        /// Backend and path.
        location: String,
        /// When the retention ends.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The file is in an archive storage class (S3 `GLACIER`, `DEEP_ARCHIVE`) and cannot be
    /// read until its restore was requested and has completed.
    #[error("{location}: in storage class {class}, not readable until restored from the archive")]
    Archived {
        /// Backend and path.
        location: String,
        /// The storage class.
        class: String,
    },
    /// The service refused the request (wrong keys, no permission, no such bucket): trying
    /// again cannot help.
    #[error("{location}: {message}")]
    Refused {
        /// Backend and path.
        location: String,
        /// What the service said, and what to check.
        message: String,
    },
    /// The backend's configuration is invalid.
    #[error("invalid backend configuration: {0}")]
    Config(String),
}

/// A finished file on local disk to be stored whole (the packer's spool files): where it is
/// and its size. The caller keeps the file until the write returns.
#[derive(Debug, Clone, Copy)]
pub struct LocalFile<'a> {
    /// Where it is.
    pub path: &'a Path,
    /// Its size in bytes.
    pub size: u64,
}

impl LocalFile<'_> {
    fn error(&self, source: std::io::Error) -> BackendError {
        BackendError::Io {
            location: format!("local file {}", self.path.display()),
            source,
        }
    }

    /// Opens it for reading from the start; the error names the file.
    pub fn open(&self) -> Result<File, BackendError> {
        File::open(self.path).map_err(|e| self.error(e))
    }

    /// The whole content (for backends that keep files in memory).
    pub fn read_all(&self) -> Result<Vec<u8>, BackendError> {
        let mut data = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0));
        self.open()?.read_to_end(&mut data).map_err(|e| self.error(e))?;
        Ok(data)
    }
}

impl BackendError {
    /// Fails with [`BackendError::Truncated`] unless the `length` bytes at `offset` lie within
    /// the `size` bytes of the file at `location` (called only on failure).
    pub(crate) fn check_range(
        location: impl FnOnce() -> String,
        offset: u64,
        length: u64,
        size: u64,
    ) -> Result<(), BackendError> {
        if offset.saturating_add(length) > size {
            return Err(BackendError::Truncated {
                location: location(),
                offset,
                wanted: length,
                size,
            });
        }
        Ok(())
    }

    /// Whether the error means the file is absent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }

    /// Whether the error means the file is under Object Lock retention.
    pub fn is_retained(&self) -> bool {
        matches!(self, BackendError::Retained { .. })
    }
}

/// A place that stores repository files.
pub trait Backend: Send + Sync {
    /// A human-readable location, e.g. `/srv/repo` or `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// Names of all files of `kind` (for `Config`: `["config"]` if it exists).
    fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError>;

    /// Like [`Backend::list`], but a group fails unless every target answers (where
    /// [`Backend::list`] lists the targets that do): for decisions that need to know that
    /// no target holds a file, such as creating a repository.
    fn list_every_target(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        self.list(kind)
    }

    /// The whole file.
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError>;

    /// Exactly `length` bytes at `offset`; [`BackendError::Truncated`] if the file is shorter.
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError>;

    /// The last `length` bytes (the whole file if it is shorter).
    fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError>;

    /// Stores a file atomically (whole or not at all) and durably.
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError>;

    /// Like [`Backend::write`], with the content of a file on local disk. Backends that keep
    /// files on disk or send them over the network read it from disk as they go; the default
    /// reads it into memory.
    fn write_file(&self, kind: FileKind, name: &str, source: LocalFile<'_>) -> Result<(), BackendError> {
        let data = source.read_all()?;
        self.write(kind, name, &data)
    }

    /// Bytes of the repository's files here, where the backend can count them without reading
    /// them (S3: the sizes its listing gives, current versions only); `None` for others (a
    /// directory is measured by walking it).
    fn bytes_used(&self) -> Result<Option<u64>, BackendError> {
        Ok(None)
    }

    /// Bytes free where this backend stores files, if it can tell (a filesystem can; S3
    /// cannot). A storage group spreading packs skips a target that is nearly full.
    fn free_bytes(&self) -> Option<u64> {
        None
    }

    /// Targets of a storage group that missed writes of this process (down, refused or
    /// full), described; empty for a single target, which fails the write instead. Each
    /// needs a resync to be complete again.
    fn missed_writes(&self) -> Vec<String> {
        Vec::new()
    }

    /// How many independent copies of a file this backend may hold (a storage group: one per
    /// target). Readers that find a copy damaged try the others.
    fn copies(&self) -> usize {
        1
    }

    /// Like [`Backend::read_range`], from copy `copy` (`0..copies()`) only.
    fn read_range_copy(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        copy: usize,
    ) -> Result<Vec<u8>, BackendError> {
        let _ = copy;
        self.read_range(kind, name, offset, length)
    }

    /// When the file's S3 Object Lock retention ends, if it is still under one (a group: the
    /// latest over its targets); `None` for backends without Object Lock and for kinds they
    /// do not lock ([`FileKind::is_locked`]). Deleting it before
    /// then fails with [`BackendError::Retained`].
    fn retained_until(
        &self,
        kind: FileKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, BackendError> {
        let _ = (kind, name);
        Ok(None)
    }

    /// Whether the place has S3 Object Lock enabled: `Some` for S3 buckets whose server
    /// answers the question, `None` for other backends.
    fn object_lock_enabled(&self) -> Result<Option<bool>, BackendError> {
        Ok(None)
    }

    /// Whether packs written here may be in an archive storage class (S3 `GLACIER`,
    /// `DEEP_ARCHIVE`), which must be restored before they can be read. Fails only where
    /// the answer must be asked for (through `hort-store`).
    fn archives(&self) -> Result<bool, BackendError> {
        Ok(false)
    }

    /// Makes the packs `names` readable where this backend holds them in an archive storage
    /// class: requests their restore and waits up to `wait` for it to complete (a group: on
    /// its archive targets, for the packs no other target holds). Returns the names it held
    /// archived, now readable; fails with [`BackendError::Archived`], naming the objects,
    /// when some are still archived after `wait`. Backends without archive classes do nothing.
    fn make_readable(&self, names: &[String], wait: std::time::Duration) -> Result<Vec<String>, BackendError> {
        let _ = (names, wait);
        Ok(Vec::new())
    }

    /// Removes a file (in a versioned S3 bucket, every version of it); removing an absent
    /// file is not an error. A file under S3 Object Lock retention is not deleted:
    /// [`BackendError::Retained`].
    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError>;
}
