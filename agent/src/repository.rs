//! The repository: keys, config and sealed metadata files on a [`Backend`], and (once the
//! index is loaded) blob reads that check the AEAD tag and the blob hash every time.
//!
//! Lifecycle as types: [`Repository::open`] gives a [`Repository`] (keys and config);
//! [`Repository::load_index`] turns it into an [`IndexedRepository`], which alone can read
//! blobs, so "reading before the index is loaded" does not compile.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::bounded;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::backend::{Backend, BackendError, FileKind};
use crate::codec;
use crate::config::{self, Config, FORMAT_VERSION};
use crate::crypto::{self, Keys, MASTER_KEY_LEN};
use crate::id::Id;
use crate::index::{self, Index, IndexFile};
use crate::keyfile::{KdfParams, KeyFileError};
use crate::pack::{self, BlobError, BlobKind};
use crate::prune_marker::{self, PruneMarker};
use crate::snapshot::{self, Snapshot, Stream};
use crate::tree::Tree;

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
            params.validate().map_err(|reason| RepositoryError::Corrupt {
                what: "config".into(),
                reason,
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
        let corrupt = |reason: String| RepositoryError::Corrupt {
            what: format!("new {kind} file"),
            reason,
        };
        let (id, sealed) = crate::sealed::seal(&self.keys, aad, value).map_err(corrupt)?;
        self.backend.write(kind, &id.to_hex(), &sealed)?;
        Ok(id)
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
    /// every tag in `tags`.
    pub fn find_tagged_snapshot(&self, spec: &str, tags: &[String]) -> Result<(Id, Snapshot), RepositoryError> {
        if spec == "latest" {
            return self
                .snapshots()?
                .into_iter()
                .rev()
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
    /// for deduplication. Index files are read one at a time, so only the in-memory index
    /// grows with the repository, not a copy of every file's entries.
    pub fn load_index(self) -> Result<IndexedRepository, RepositoryError> {
        let mut index = Index::default();
        let names = self.backend.list(FileKind::Index)?;
        for name in &names {
            for pack in &self.index_file(name)?.packs {
                index.add_pack(pack);
            }
        }
        for name in self.backend.list(FileKind::Prune)? {
            let marker: PruneMarker = self.read_sealed(FileKind::Prune, prune_marker::AAD, &name)?;
            for pack in &marker.packs {
                index.add_condemned_pack(pack);
            }
        }
        debug!(files = names.len(), blobs = index.len(), "index loaded");
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

/// A repository with its index loaded: can read blobs.
pub struct IndexedRepository {
    repo: Repository,
    index: Index,
}

impl Deref for IndexedRepository {
    type Target = Repository;

    fn deref(&self) -> &Repository {
        &self.repo
    }
}

/// Blobs of one run lie at most this far apart in their pack (see
/// [`IndexedRepository::adjacent_runs`]).
const RUN_GAP: u64 = 256 << 10;
/// Requests in flight ahead of the writer, per file or stream.
const READ_AHEAD: usize = 4;
/// Blobs close together in one pack are fetched with one request of up to this many bytes read
/// and this many bytes of plaintext.
const RUN_BYTES: u64 = 4 << 20;

impl IndexedRepository {
    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Splits `ids` into runs of consecutive ids whose blobs lie close together in one pack,
    /// in any order (the encoder threads of a backup may store neighbours swapped), each run
    /// spanning at most `max_bytes` of the pack and holding at most `max_bytes` of plaintext
    /// (a single blob may be larger; compressible data would otherwise decompress to many
    /// times the bytes read), so that a run is read with one request. A blob joins a run only if it lies within [`RUN_GAP`] bytes
    /// of the span read so far, which bounds the bytes read but not needed.
    pub fn adjacent_runs(&self, ids: &[Id], max_bytes: u64) -> Vec<std::ops::Range<usize>> {
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        // Pack, start and end of the run's span, plaintext bytes of the run.
        let mut span: Option<(Id, u64, u64, u64)> = None;
        for (i, id) in ids.iter().enumerate() {
            let here = self.index.get(id).map(|l| {
                let (start, end) = (l.entry.offset, l.entry.offset + u64::from(l.entry.length));
                (l.pack, start, end, u64::from(l.entry.raw_length))
            });
            match (here, span, runs.last_mut()) {
                (Some((pack, start, end, raw)), Some((run_pack, lo, hi, run_raw)), Some(run))
                    if pack == run_pack
                        && start + RUN_GAP >= lo
                        && end <= hi + RUN_GAP
                        && end.max(hi) - start.min(lo) <= max_bytes
                        && run_raw + raw <= max_bytes =>
                {
                    run.end = i + 1;
                    span = Some((pack, start.min(lo), end.max(hi), run_raw + raw));
                }
                _ => {
                    runs.push(i..i + 1);
                    span = here;
                }
            }
        }
        runs
    }

    /// Reads blobs that [`adjacent_runs`](Self::adjacent_runs) put in one run, with one request
    /// to the backend, checking each like [`read_blob`](Self::read_blob). A blob that fails its
    /// check is read again alone, which tries the other copies of a storage group.
    pub fn read_blob_run(&self, ids: &[Id], kind: BlobKind) -> Result<Vec<Vec<u8>>, RepositoryError> {
        let locations: Option<Vec<index::BlobLocation>> = ids
            .iter()
            .map(|id| self.index.get(id).filter(|l| l.entry.kind == kind))
            .collect();
        let (Some(locations), true) = (locations, ids.len() > 1) else {
            return ids.iter().map(|id| self.read_blob(id, kind)).collect();
        };
        let pack = locations[0].pack;
        let start = locations.iter().map(|l| l.entry.offset).min().unwrap_or(0);
        let end = locations
            .iter()
            .map(|l| l.entry.offset + u64::from(l.entry.length))
            .max()
            .unwrap_or(0);
        let length = end - start;
        let sealed = match self.backend.read_range(FileKind::Pack, &pack.to_hex(), start, length) {
            Ok(sealed) if sealed.len() as u64 == length => sealed,
            // Missing, short or unreadable: blob by blob, for errors that name the blob.
            _ => return ids.iter().map(|id| self.read_blob(id, kind)).collect(),
        };
        ids.iter()
            .zip(&locations)
            .map(|(id, location)| {
                let from = (location.entry.offset - start) as usize;
                let part = &sealed[from..from + location.entry.length as usize];
                match pack::open_blob(&self.keys, &location.entry, part) {
                    Ok(plaintext) => Ok(plaintext),
                    Err(_) => self.read_blob(id, kind),
                }
            })
            .collect()
    }

    /// Reads a blob, checking its tag and hash; never returns wrong bytes.
    pub fn read_blob(&self, id: &Id, kind: BlobKind) -> Result<Vec<u8>, RepositoryError> {
        let location = self
            .index
            .get(id)
            .filter(|l| l.entry.kind == kind)
            .ok_or(RepositoryError::BlobNotInIndex { id: *id, kind })?;
        let pack = location.pack;
        let sealed = self
            .backend
            .read_range(
                FileKind::Pack,
                &pack.to_hex(),
                location.entry.offset,
                u64::from(location.entry.length),
            )
            .map_err(|source| {
                if source.is_not_found() {
                    RepositoryError::PackMissing {
                        pack,
                        blob: *id,
                        source: Box::new(source),
                    }
                } else {
                    RepositoryError::PackUnreadable {
                        pack,
                        blob: *id,
                        source: Box::new(source),
                    }
                }
            })?;
        let error = match pack::open_blob(&self.keys, &location.entry, &sealed) {
            Ok(plaintext) => return Ok(plaintext),
            Err(source) => RepositoryError::BlobCorrupt {
                pack,
                blob: *id,
                source: Box::new(source),
            },
        };
        // A storage group may hold other copies of the pack: use the first intact one.
        let (offset, length) = (location.entry.offset, u64::from(location.entry.length));
        for copy in 0..self.backend.copies() {
            let Ok(sealed) = self
                .backend
                .read_range_copy(FileKind::Pack, &pack.to_hex(), offset, length, copy)
            else {
                continue;
            };
            if let Ok(plaintext) = pack::open_blob(&self.keys, &location.entry, &sealed) {
                warn!(%pack, blob = %id, copy, "{error}; read an intact copy from another target");
                return Ok(plaintext);
            }
        }
        Err(error)
    }

    /// The content blob ids of `stream`, in order, reading its content-list blobs if it has
    /// them (like data, with [`read_in_order`](Self::read_in_order)).
    pub fn stream_content(&self, stream: &Stream) -> Result<Vec<Id>, RepositoryError> {
        let mut content = stream.content.clone();
        let mut lists = stream.content_lists.iter();
        self.read_in_order(
            &stream.content_lists,
            BlobKind::Tree,
            |bytes| {
                let list = lists.next().expect("one blob per content list");
                let ids = snapshot::decode_content_list(&bytes).map_err(|reason| RepositoryError::Corrupt {
                    what: format!("content list {list} of stream `{}`", stream.name),
                    reason,
                })?;
                content.extend(ids);
                Ok(())
            },
            |e| e,
        )?;
        Ok(content)
    }

    /// Reads the blobs `ids` (of `kind`) in order and hands each checked plaintext to `sink`. Blobs stored back to back
    /// are fetched together (one request per run of up to [`RUN_BYTES`]: remote backends answer
    /// each request with a delay, whatever its size). Up to [`READ_AHEAD`] reader threads fetch,
    /// decrypt and check the next runs while `sink` writes, and never get more than
    /// [`READ_AHEAD`] runs ahead of it (a ticket per run bounds the memory).
    pub fn read_in_order<E>(
        &self,
        ids: &[Id],
        kind: BlobKind,
        mut sink: impl FnMut(Vec<u8>) -> Result<(), E>,
        from_repo: impl Fn(RepositoryError) -> E,
    ) -> Result<(), E> {
        let runs = self.adjacent_runs(ids, RUN_BYTES);
        let read = |run: &std::ops::Range<usize>| self.read_blob_run(&ids[run.clone()], kind);
        if runs.len() <= 1 {
            for run in &runs {
                for blob in read(run).map_err(&from_repo)? {
                    sink(blob)?;
                }
            }
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let (ticket_tx, ticket_rx) = bounded::<()>(READ_AHEAD);
        for _ in 0..READ_AHEAD {
            let _ = ticket_tx.send(());
        }
        let (done_tx, done_rx) = bounded::<(usize, Result<Vec<Vec<u8>>, RepositoryError>)>(READ_AHEAD);
        std::thread::scope(|scope| {
            for _ in 0..READ_AHEAD.min(runs.len()) {
                let (tickets, done, next, runs, read) = (ticket_rx.clone(), done_tx.clone(), &next, &runs, &read);
                scope.spawn(move || {
                    while tickets.recv().is_ok() {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(run) = runs.get(i) else { break };
                        if done.send((i, read(run))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut early = BTreeMap::new();
            let mut result = Ok(());
            for (want, run) in runs.iter().enumerate() {
                let blobs = loop {
                    if let Some(blobs) = early.remove(&want) {
                        break blobs;
                    }
                    match done_rx.recv() {
                        Ok((i, blobs)) => {
                            early.insert(i, blobs);
                        }
                        Err(_) => {
                            break Err(RepositoryError::Corrupt {
                                what: format!("blob {}", ids[run.start]),
                                reason: "the reader threads stopped".into(),
                            });
                        }
                    }
                };
                let written = blobs
                    .map_err(&from_repo)
                    .and_then(|blobs| blobs.into_iter().try_for_each(&mut sink));
                if let Err(e) = written {
                    result = Err(e);
                    break;
                }
                let _ = ticket_tx.send(());
            }
            // Stop the readers: no more tickets, and nobody takes their results.
            drop(ticket_tx);
            drop(done_rx);
            result
        })
    }

    /// Reads and parses a tree blob.
    pub fn load_tree(&self, id: &Id) -> Result<Tree, RepositoryError> {
        let bytes = self.read_blob(id, BlobKind::Tree)?;
        Tree::parse(&bytes).map_err(|e| RepositoryError::Corrupt {
            what: format!("tree {id}"),
            reason: e.to_string(),
        })
    }
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
