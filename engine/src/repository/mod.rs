//! The repository: keys, config and sealed metadata files on a [`Backend`], and (once the
//! index is loaded) blob reads that check the AEAD tag and the blob hash every time.
//!
//! Lifecycle as types: [`Repository::open`] gives a [`Repository`] (keys and config);
//! [`Repository::load_index`] turns it into an [`IndexedRepository`], which alone can read
//! blobs, so "reading before the index is loaded" does not compile.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use crate::backend::{Backend, FileKind};
use crate::codec;
use crate::config::{self, Config, FORMAT_VERSION};
use crate::crypto::{self, Keys, MASTER_KEY_LEN};
use crate::id::Id;
use crate::index::{self, Index, IndexBuilder, IndexFile};
use crate::keyfile::KdfParams;
use crate::prune_marker::{self, PruneMarker};
use crate::snapshot::{self, Snapshot};

mod error;
mod indexed;

pub use error::RepositoryError;
pub use indexed::{BlobReaders, IndexedRepository, READ_AHEAD};

/// Fewest characters a new repository password may have. Key files stretch it with Argon2id,
/// which slows each guess but cannot save a password that is short enough to try them all.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Refuses a new password shorter than [`MIN_PASSWORD_CHARS`] characters.
pub fn check_new_password(password: &[u8]) -> Result<(), RepositoryError> {
    let chars = String::from_utf8_lossy(password).chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(RepositoryError::WeakPassword { chars });
    }
    Ok(())
}

/// The name of this machine, for key files and snapshots.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// An open repository: backend, keys and config.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: Keys,
    config: Config,
    spool_dir: PathBuf,
}

impl Repository {
    /// Creates a repository: a random master key, one key file for `password`, the config.
    /// Refused unless every target answers and none holds a repository, and for a password
    /// shorter than [`MIN_PASSWORD_CHARS`].
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], kdf: KdfParams) -> Result<Self, RepositoryError> {
        check_new_password(password)?;
        let unsafe_init = |source| RepositoryError::InitUnsafe {
            location: backend.describe(),
            source,
        };
        let existing = backend.list_every_target(FileKind::Config).map_err(unsafe_init)?;
        if !existing.is_empty() {
            return Err(RepositoryError::AlreadyInitialized {
                location: backend.describe(),
            });
        }
        if !backend
            .list_every_target(FileKind::Key)
            .map_err(unsafe_init)?
            .is_empty()
        {
            return Err(RepositoryError::Corrupt {
                what: format!("{}: keys/", backend.describe()),
                reason: "key files but no config: the config was lost, or an init was interrupted; not creating a repository over them (move keys/ away if it is an interrupted init)".into(),
            });
        }
        let mut master = [0u8; MASTER_KEY_LEN];
        let mut repo_id = [0u8; 32];
        let crypto_err = |e: crypto::CryptoError| RepositoryError::Corrupt {
            what: "init".into(),
            reason: e.to_string(),
        };
        crypto::random_bytes(&mut master).map_err(crypto_err)?;
        crypto::random_bytes(&mut repo_id).map_err(crypto_err)?;
        let (key_name, bytes) = crate::keyring::new_key_file(&master, password, kdf)?;
        let repo = Self {
            backend,
            keys: Keys::derive(&master),
            config: Config::new(Id(repo_id)),
            spool_dir: std::env::temp_dir(),
        };
        let written = repo
            .backend
            .write(FileKind::Key, &key_name, &bytes)
            .map_err(RepositoryError::from)
            .and_then(|()| repo.write_sealed(FileKind::Config, config::AAD, &repo.config));
        if let Err(e) = written {
            // Leave no key of a repository that does not exist on the targets that took it.
            let _ = repo.backend.delete(FileKind::Config, "config");
            let _ = repo.backend.delete(FileKind::Key, &key_name);
            return Err(e);
        }
        info!(location = %repo.backend.describe(), "repository created");
        Ok(repo)
    }

    /// Opens a repository with `password`, trying every key file.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Self, RepositoryError> {
        if backend.list(FileKind::Config)?.is_empty() {
            return Err(RepositoryError::NotInitialized {
                location: backend.describe(),
            });
        }
        let (master, _) = crate::keyring::unlock(backend.as_ref(), password)?;
        let keys = Keys::derive(&master);
        let sealed = backend.read(FileKind::Config, "config")?;
        let config: Config = open_sealed(&keys, config::AAD, &sealed, "config")?;
        if config.version != FORMAT_VERSION {
            return Err(RepositoryError::Corrupt {
                what: "config".into(),
                reason: format!(
                    "format version {} is not supported (this agent reads {FORMAT_VERSION})",
                    config.version
                ),
            });
        }
        for params in [config.chunker_files, config.chunker_streams] {
            params.validate().map_err(|e| RepositoryError::Corrupt {
                what: "config".into(),
                reason: e.to_string(),
            })?;
        }
        Ok(Self {
            backend,
            keys,
            config,
            spool_dir: std::env::temp_dir(),
        })
    }

    /// Writes packs to spool files in `dir` while they fill and upload, instead of the
    /// system temporary directory.
    pub fn with_spool_dir(mut self, dir: PathBuf) -> Self {
        self.spool_dir = dir;
        self
    }

    /// Where packs are spooled while they fill and upload.
    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Seals a JSON document and stores it under the hash of the sealed bytes.
    pub fn write_sealed<T: Serialize>(&self, kind: FileKind, aad: &[u8], value: &T) -> Result<Id, RepositoryError> {
        crate::sealed::write(self.backend.as_ref(), &self.keys, kind, aad, value)
            .map_err(|e| RepositoryError::from_sealed_write(e, &format!("new {kind} file")))
    }

    /// Reads, checks and opens a sealed JSON document.
    pub fn read_sealed<T: DeserializeOwned>(
        &self,
        kind: FileKind,
        aad: &[u8],
        name: &str,
    ) -> Result<T, RepositoryError> {
        let sealed = self.backend.read(kind, name)?;
        let what = format!("{kind} file {name}");
        if Id::of_file(&sealed).to_hex() != name {
            return Err(RepositoryError::Corrupt {
                what,
                reason: "content does not match its name (damaged)".into(),
            });
        }
        open_sealed(&self.keys, aad, &sealed, &what)
    }

    /// Reads the snapshot file `name`, refusing a format version this agent does not know
    /// (it could hold content this agent would not see).
    fn read_snapshot(&self, name: &str) -> Result<Snapshot, RepositoryError> {
        let snapshot: Snapshot = self.read_sealed(FileKind::Snapshot, snapshot::AAD, name)?;
        if snapshot.version == 0 || snapshot.version > snapshot::SNAPSHOT_VERSION {
            return Err(RepositoryError::Corrupt {
                what: format!("snapshot file {name}"),
                reason: format!(
                    "snapshot format version {} is not supported (this agent reads 1 to {}); use a newer hort-agent",
                    snapshot.version,
                    snapshot::SNAPSHOT_VERSION
                ),
            });
        }
        Ok(snapshot)
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>, RepositoryError> {
        let mut out = Vec::new();
        for name in self.backend.list(FileKind::Snapshot)? {
            let id = parse_name(&name, "snapshot")?;
            out.push((id, self.read_snapshot(&name)?));
        }
        out.sort_by_key(|(id, s)| (s.time, *id));
        Ok(out)
    }

    /// The snapshot named by `spec`: `latest`, a full id or a unique id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot), RepositoryError> {
        self.find_tagged_snapshot(spec, &[])
    }

    /// Like [`Repository::find_snapshot`], with `latest` meaning the newest snapshot that has
    /// every tag in `tags`. Hort's own catalog snapshots (tag `hort.dev/catalog`) are never
    /// `latest` unless `tags` asks for that tag: `latest` means the newest backup.
    pub fn find_tagged_snapshot(&self, spec: &str, tags: &[String]) -> Result<(Id, Snapshot), RepositoryError> {
        if spec == "latest" {
            let catalogs_asked = tags.iter().any(|t| t == hort_protocol::catalog::TAG);
            return self
                .snapshots()?
                .into_iter()
                .rev()
                .filter(|(_, s)| catalogs_asked || !s.tags.iter().any(|t| t == hort_protocol::catalog::TAG))
                .find(|(_, s)| tags.iter().all(|t| s.tags.contains(t)))
                .ok_or_else(|| RepositoryError::SnapshotNotFound(format!("latest (tags {tags:?})")));
        }
        let names: Vec<String> = self
            .backend
            .list(FileKind::Snapshot)?
            .into_iter()
            .filter(|n| n.starts_with(spec))
            .collect();
        match names.as_slice() {
            [] => Err(RepositoryError::SnapshotNotFound(spec.to_owned())),
            [name] => Ok((parse_name(name, "snapshot")?, self.read_snapshot(name)?)),
            _ => Err(RepositoryError::AmbiguousSnapshot(spec.to_owned())),
        }
    }

    /// Reads every index file: names and contents.
    pub fn index_files(&self) -> Result<Vec<(String, IndexFile)>, RepositoryError> {
        let mut out = Vec::new();
        for name in self.backend.list(FileKind::Index)? {
            let file = self.index_file(&name)?;
            out.push((name, file));
        }
        Ok(out)
    }

    /// Reads one index file, refusing versions this agent does not know.
    pub fn index_file(&self, name: &str) -> Result<IndexFile, RepositoryError> {
        let file: IndexFile = self.read_sealed(FileKind::Index, index::AAD, name)?;
        if file.version != 1 {
            return Err(RepositoryError::Corrupt {
                what: format!("index file {name}"),
                reason: format!("unsupported version {}", file.version),
            });
        }
        Ok(file)
    }

    /// Loads every index file, and the packs condemned by prune markers as readable but not
    /// for deduplication. Index files are read one at a time, so only the index grows with
    /// the repository, not a copy of every file's entries; beyond [`index::MEMORY_BLOBS`]
    /// blobs the index is sorted into a file in the spool directory instead of memory.
    pub fn load_index(self) -> Result<IndexedRepository, RepositoryError> {
        self.load_index_within(index::MEMORY_BLOBS)
    }

    /// [`Repository::load_index`] keeping at most `memory_blobs` blobs in memory.
    pub fn load_index_within(self, memory_blobs: usize) -> Result<IndexedRepository, RepositoryError> {
        let spool = |source| RepositoryError::IndexSpool {
            dir: self.spool_dir.clone(),
            source,
        };
        let mut index = IndexBuilder::with_memory_blobs(&self.spool_dir, memory_blobs);
        let names = self.backend.list(FileKind::Index)?;
        for name in &names {
            for pack in &self.index_file(name)?.packs {
                index.add_pack(pack).map_err(spool)?;
            }
        }
        for name in self.backend.list(FileKind::Prune)? {
            let marker: PruneMarker = self.read_sealed(FileKind::Prune, prune_marker::AAD, &name)?;
            for pack in &marker.packs {
                index.add_condemned_pack(pack).map_err(spool)?;
            }
        }
        let index = index.finish().map_err(spool)?;
        debug!(
            files = names.len(),
            blobs = index.len(),
            sorted_file = index.is_sorted_file(),
            "index loaded"
        );
        Ok(self.with_index(index))
    }

    /// Uses an index assembled by the caller (e.g. prune's, which adds condemned packs).
    pub fn with_index(self, index: Index) -> IndexedRepository {
        IndexedRepository { repo: self, index }
    }
}

fn parse_name(name: &str, what: &str) -> Result<Id, RepositoryError> {
    name.parse()
        .map_err(|e: crate::id::ParseIdError| RepositoryError::Corrupt {
            what: format!("{what} {name}"),
            reason: e.to_string(),
        })
}

/// Opens a sealed JSON document (config, index file, snapshot, prune marker): checks the tag
/// against `aad`, decodes the codec byte (bounded by [`codec::MAX_DOCUMENT`]) and parses the
/// JSON into `T`. Errors name the file as `what`. Never panics, whatever the bytes; the fuzz
/// targets drive it for every sealed document type.
pub fn open_sealed<T: DeserializeOwned>(
    keys: &Keys,
    aad: &[u8],
    sealed: &[u8],
    what: &str,
) -> Result<T, RepositoryError> {
    let corrupt = |reason: String| RepositoryError::Corrupt {
        what: what.to_owned(),
        reason,
    };
    let encoded = keys.open(aad, sealed).map_err(|e| corrupt(e.to_string()))?;
    let json = codec::decode(encoded, None).map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
}

/// A repository in memory with cheap key derivation, for the engine's unit tests; also returns
/// its backend.
#[cfg(test)]
pub(crate) fn in_memory() -> (Repository, Arc<crate::backend::memory::MemoryBackend>) {
    let backend = Arc::new(crate::backend::memory::MemoryBackend::new());
    let kdf = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    (
        Repository::init(backend.clone(), b"unit-test password", kdf).expect("init in memory"),
        backend,
    )
}
