//! Errors of repository operations.

use crate::backend::BackendError;
use crate::error_kind::ErrorKind;
use crate::id::Id;
use crate::keyfile::KeyFileError;
use crate::pack::{BlobError, BlobKind};
use crate::sealed::WriteError;

use super::MIN_PASSWORD_CHARS;

/// Errors of repository operations. Each names the file, pack or blob concerned.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// There is no `config` file.
    #[error("{location}: no repository here (run `hort-agent init` first)")]
    NotInitialized {
        /// The backend.
        location: String,
    },
    /// `init` found an existing repository.
    #[error("{location}: a repository already exists here")]
    AlreadyInitialized {
        /// The backend.
        location: String,
    },
    /// `init` could not make sure that no target holds a repository.
    #[error(
        "{location}: not creating a repository while a target cannot be listed ({source}); it may hold the repository already, and creating another would split the group into two"
    )]
    InitUnsafe {
        /// The backend.
        location: String,
        /// Why a target could not be listed.
        source: BackendError,
    },
    /// The repository has no key files.
    #[error("{location}: no key files under keys/")]
    NoKeys {
        /// The backend.
        location: String,
    },
    /// No key file opens with the password.
    #[error("wrong password: no key file of the repository opens with it")]
    WrongPassword,
    /// A new password (of `init` or `key add`) is shorter than [`MIN_PASSWORD_CHARS`].
    #[error(
        "the new repository password has {chars} characters, fewer than {MIN_PASSWORD_CHARS}: choose a longer one (a passphrase of several words is easy to keep and hard to guess); nothing was written"
    )]
    WeakPassword {
        /// Characters it has.
        chars: usize,
    },
    /// A key file could not be used.
    #[error("key file {name}: {source}")]
    KeyFile {
        /// Its name.
        name: String,
        /// Why.
        source: KeyFileError,
    },
    /// A metadata file is damaged.
    #[error("{what}: {reason}")]
    Corrupt {
        /// The file, e.g. `index file 1a2b…`.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob that something refers to is in no index file.
    #[error("{kind:?} blob {id} is not in the index (a missing index file or pack)")]
    BlobNotInIndex {
        /// The blob.
        id: Id,
        /// Its expected kind.
        kind: BlobKind,
    },
    /// The pack that holds a blob is gone.
    #[error("pack {pack} is missing (blob {blob}): {source}")]
    PackMissing {
        /// The pack.
        pack: Id,
        /// The blob being read.
        blob: Id,
        /// The backend's error.
        source: Box<BackendError>,
    },
    /// The pack could not be read (truncated, unreachable).
    #[error("pack {pack} unreadable (blob {blob}): {source}")]
    PackUnreadable {
        /// The pack.
        pack: Id,
        /// The blob being read.
        blob: Id,
        /// The backend's error.
        source: Box<BackendError>,
    },
    /// A blob failed authentication or its hash check.
    #[error("pack {pack} is damaged: blob {blob}: {source}")]
    BlobCorrupt {
        /// The pack.
        pack: Id,
        /// The blob.
        blob: Id,
        /// What failed.
        source: Box<BlobError>,
    },
    /// No snapshot matches.
    #[error("no snapshot matches `{0}`")]
    SnapshotNotFound(String),
    /// Several snapshots match an id prefix.
    #[error("`{0}` matches several snapshots; give more digits")]
    AmbiguousSnapshot(String),
    /// The index outgrew memory and its sorted file could not be written.
    #[error(
        "index too large for memory: cannot write its sorted file in the spool directory {dir}: {source} (set --spool-dir / HORT_SPOOL_DIR to a writable directory with room for 56 bytes a blob)"
    )]
    IndexSpool {
        /// The spool directory.
        dir: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

impl RepositoryError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RepositoryError::NotInitialized { .. } => ErrorKind::NoRepository,
            RepositoryError::WrongPassword => ErrorKind::WrongPassword,
            RepositoryError::WeakPassword { .. } => ErrorKind::Usage,
            RepositoryError::BlobNotInIndex { .. }
            | RepositoryError::PackMissing { .. }
            | RepositoryError::BlobCorrupt { .. }
            | RepositoryError::PackUnreadable { .. }
            | RepositoryError::Corrupt { .. } => ErrorKind::Corrupt,
            _ => ErrorKind::Other,
        }
    }

    /// A failed [`crate::sealed::write`] of the new file `what`: the storage's error as it is,
    /// a failure to seal as [`RepositoryError::Corrupt`].
    pub(crate) fn from_sealed_write(error: WriteError, what: &str) -> Self {
        match error {
            WriteError::Backend { source, .. } => RepositoryError::Backend(source),
            WriteError::Seal(e) => RepositoryError::Corrupt {
                what: what.to_owned(),
                reason: e.to_string(),
            },
        }
    }
}
