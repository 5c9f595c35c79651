//! Backups: a directory tree, or named streams, into a snapshot.
//!
//! The walking thread reads, chunks and hashes (keyed BLAKE3), skips blobs the repository or
//! this run already has, and hands new blobs to the [`Packer`] pipeline, which compresses,
//! seals and uploads them on other threads. Files whose size, times and inode match the
//! parent snapshot are not read again, nor are the further names of a file with several hard
//! links. The snapshot is written only after every pack and
//! index file is stored, so a snapshot never refers to missing data.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chrono::Utc;
use tracing::{debug, info, warn};

use crate::backend::FileKind;
use crate::backup_lock::{BackupLock, LockLost};
use crate::chunker::{ChunkError, Chunker, ChunkerParams};
use crate::error_kind::ErrorKind;
use crate::filter::Selection;
use crate::id::Id;
use crate::pack::BlobKind;
use crate::packer::{Packer, PackerError, PackerOptions};
use crate::progress::Counters;
use crate::repository::{IndexedRepository, RepositoryError, hostname};
use crate::snapshot::{self, ContentBuilder, Snapshot, Source, Stats, Stream};
use crate::source_file;
use crate::streams::StreamSink;
use crate::tree::{Node, NodeKind, Tree};

/// Errors that stop a backup (unreadable single entries only warn and count as errors).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The write pipeline failed.
    #[error(transparent)]
    Packer(#[from] PackerError),
    /// The directory to back up cannot be read.
    #[error("{path}: {source}")]
    Source {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stream could not be read completely, or its producer failed.
    #[error("stream `{name}`: {source}")]
    Stream {
        /// The stream.
        name: String,
        /// What happened: the read error, or the error of [`StreamInput::complete`].
        source: StreamFailure,
    },
    /// Two streams have the same name.
    #[error("stream name `{0}` given twice")]
    DuplicateStream(String),
    /// The backup lock was not kept fresh (see [`BackupLock::ensure_held`]).
    #[error(transparent)]
    LockLost(#[from] LockLost),
}

/// Why a stream failed: its producer's own error (a dump command that failed), or a read error.
pub type StreamFailure = Box<dyn std::error::Error + Send + Sync>;

impl BackupError {
    /// What kind of failure this is (that of the repository's error, if it is one).
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackupError::Repository(e) => e.kind(),
            _ => ErrorKind::Other,
        }
    }
}

/// Settings of one backup.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Labels for the snapshot.
    pub tags: Vec<String>,
    /// zstd level; the repository's default when `None`.
    pub compression_level: Option<i32>,
    /// Host name recorded in the snapshot; this machine's when `None`.
    pub hostname: Option<String>,
    /// Compare with this snapshot instead of the latest one of the same host and path.
    pub parent: Option<Id>,
    /// Read every file even if it looks unchanged.
    pub force: bool,
    /// Encoder threads; the number of cores when 0.
    pub threads: usize,
    /// Which entries of a directory tree to back up (all by default).
    pub selection: Selection,
    /// The time recorded as the snapshot's; now when `None` (e.g. to import older backups).
    pub time: Option<chrono::DateTime<Utc>>,
}

/// A named stream to back up.
pub struct StreamInput {
    /// Name, unique in the snapshot (e.g. the database name).
    pub name: String,
    /// The data.
    pub reader: Box<dyn Read + Send>,
    /// Called after the reader hit its end; an error (e.g. the dump command failed) fails
    /// the backup, so a truncated dump never becomes a snapshot.
    pub complete: Option<Box<dyn FnOnce() -> Result<(), StreamFailure> + Send>>,
}

struct Session<'a> {
    repo: &'a IndexedRepository,
    lock: &'a BackupLock,
    packer: Packer,
    seen: HashSet<Id>,
    counters: Arc<Counters>,
    stats: Stats,
    /// The directory being backed up, and which entries below it take part.
    root: PathBuf,
    selection: Selection,
    /// Chunkers (each with its buffer) and the buffer small files are read into, reused for
    /// every file and stream.
    file_chunker: Chunker,
    stream_chunker: Chunker,
    small_file: Vec<u8>,
    /// Files with several hard links read in this run, by device and inode: the content of
    /// the first is reused for the others.
    hard_links: HashMap<(u64, u64), HardLinked>,
}

/// What a backup read of a file with several hard links, to reuse for its other names.
struct HardLinked {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    content: Vec<Id>,
}

/// Where the ids of a file's or a stream's content blobs go as they are stored.
trait ContentIds {
    /// Whether the content is a stream (chunked with the stream chunker).
    fn is_stream(&self) -> bool;
    /// Takes the next content blob's id.
    fn add(&mut self, session: &mut Session<'_>, id: Id) -> Result<(), PackerError>;
}

/// A file's content: every id, in order (a tree node lists them).
impl ContentIds for Vec<Id> {
    fn is_stream(&self) -> bool {
        false
    }

    fn add(&mut self, _: &mut Session<'_>, id: Id) -> Result<(), PackerError> {
        self.push(id);
        Ok(())
    }
}

/// A stream's content: its ids inline when few, else content-list blobs stored as each run
/// of ids completes, so a long dump's ids are not all held in memory.
#[derive(Default)]
struct StreamIds {
    builder: ContentBuilder,
    lists: Vec<Id>,
}

impl ContentIds for StreamIds {
    fn is_stream(&self) -> bool {
        true
    }

    fn add(&mut self, session: &mut Session<'_>, id: Id) -> Result<(), PackerError> {
        for run in self.builder.push(id) {
            self.store_run(session, &run)?;
        }
        Ok(())
    }
}

impl StreamIds {
    fn store_run(&mut self, session: &mut Session<'_>, run: &[Id]) -> Result<(), PackerError> {
        let list = session.store(BlobKind::Tree, &snapshot::encode_content_list(run))?;
        self.lists.push(list);
        Ok(())
    }

    /// Ends the stream: its inline content ids and its content lists (one is empty).
    fn finish(mut self, session: &mut Session<'_>) -> Result<(Vec<Id>, Vec<Id>), PackerError> {
        let (content, last_run) = std::mem::take(&mut self.builder).finish();
        if let Some(run) = last_run {
            self.store_run(session, &run)?;
        }
        Ok((content, self.lists))
    }
}

impl Session<'_> {
    fn start<'a>(
        repo: &'a IndexedRepository,
        lock: &'a BackupLock,
        options: &BackupOptions,
        counters: Arc<Counters>,
    ) -> Session<'a> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let threads = if options.threads == 0 { cores } else { options.threads };
        let packer = Packer::start(
            repo.backend().clone(),
            repo.keys().clone(),
            PackerOptions {
                spool_dir: repo.spool_dir().to_path_buf(),
                pack_size: repo.config().pack_size as usize,
                compression_level: options.compression_level.unwrap_or(repo.config().compression_level),
                encoders: threads,
                uploaders: 2,
            },
        );
        Session {
            repo,
            lock,
            packer,
            seen: HashSet::new(),
            counters,
            stats: Stats::default(),
            root: PathBuf::new(),
            selection: options.selection.clone(),
            file_chunker: Chunker::new(repo.config().chunker_files, repo.keys().chunker_seed()),
            stream_chunker: Chunker::new(repo.config().chunker_streams, repo.keys().chunker_seed()),
            small_file: Vec::new(),
            hard_links: HashMap::new(),
        }
    }

    /// Stores a blob unless the repository or this run already has it; returns its id.
    fn store(&mut self, kind: BlobKind, data: &[u8]) -> Result<Id, PackerError> {
        let id = self.repo.keys().blob_id(data);
        if !self.repo.index().contains(&id, kind) && self.seen.insert(id) {
            self.stats.new_blobs += 1;
            self.stats.new_bytes += data.len() as u64;
            Counters::add(&self.counters.new_bytes, data.len() as u64);
            self.packer.add(id, kind, data)?;
        }
        Ok(id)
    }

    /// The chunker for files or for streams.
    fn chunker(&mut self, stream: bool) -> &mut Chunker {
        if stream {
            &mut self.stream_chunker
        } else {
            &mut self.file_chunker
        }
    }

    /// Chunks `reader` (a file with the file chunker, a stream with the stream chunker),
    /// stores its chunks and hands their ids to `ids`; returns the length read.
    fn store_content(&mut self, reader: impl Read, ids: &mut impl ContentIds) -> Result<u64, ContentError> {
        let stream = ids.is_stream();
        // Taken out while it runs (an unused placeholder stands in), so `store` can borrow
        // the session.
        let mut chunker = std::mem::replace(self.chunker(stream), Chunker::new(ChunkerParams::STREAMS, 0));
        let result = chunker.chunk(reader, |chunk| {
            Counters::add(&self.counters.bytes, chunk.len() as u64);
            let id = self.store(BlobKind::Data, chunk)?;
            ids.add(self, id)
        });
        *self.chunker(stream) = chunker;
        let size = result.map_err(|e| match e {
            ChunkError::Read(io) => ContentError::Read(io),
            ChunkError::Consumer(p) => ContentError::Packer(p),
        })?;
        self.stats.bytes += size;
        Ok(size)
    }

    fn store_whole(&mut self, data: &[u8]) -> Result<(Vec<Id>, u64), PackerError> {
        let size = data.len() as u64;
        self.stats.bytes += size;
        Counters::add(&self.counters.bytes, size);
        if data.is_empty() {
            return Ok((Vec::new(), 0));
        }
        Ok((vec![self.store(BlobKind::Data, data)?], size))
    }

    fn all_indexed(&self, ids: &[Id]) -> bool {
        ids.iter().all(|id| self.repo.index().contains(id, BlobKind::Data))
    }

    fn archive_dir(&mut self, dir: &Path, parent: Option<&Tree>) -> Result<Id, BackupError> {
        let mut entries: Vec<(OsString, PathBuf, bool)> = std::fs::read_dir(dir)
            .and_then(|rd| {
                rd.map(|e| e.map(|e| (e.file_name(), e.path(), e.file_type().is_ok_and(|t| t.is_dir()))))
                    .collect()
            })
            .map_err(|source| BackupError::Source {
                path: dir.to_owned(),
                source,
            })?;
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut tree = Tree::default();
        for (name, path, is_dir) in entries {
            if !self
                .selection
                .includes(path.strip_prefix(&self.root).unwrap_or(&path), is_dir)
            {
                continue;
            }
            match self.archive_entry(&name, &path, parent) {
                Ok(Some(node)) => tree.nodes.push(node),
                Ok(None) => {}
                Err(EntryError::Fatal(e)) => return Err(e),
                Err(EntryError::Skip(e)) => {
                    warn!(path = %path.display(), error = %e, "cannot back up this entry; skipped");
                    self.stats.errors += 1;
                    Counters::add(&self.counters.errors, 1);
                }
            }
        }
        self.stats.dirs += 1;
        let json = serde_json::to_vec(&tree).map_err(|e| BackupError::Source {
            path: dir.to_owned(),
            source: std::io::Error::other(e),
        })?;
        Ok(self.store(BlobKind::Tree, &json)?)
    }

    fn archive_entry(
        &mut self,
        name: &OsString,
        path: &Path,
        parent: Option<&Tree>,
    ) -> Result<Option<Node>, EntryError> {
        let meta = std::fs::symlink_metadata(path).map_err(EntryError::Skip)?;
        let mut node = Node::from_metadata(name, &meta);
        if let Err(e) = node.read_xattrs(path) {
            debug!(path = %path.display(), error = %e, "extended attributes not readable");
        }
        let previous = parent.and_then(|t| t.find(name));
        match node.kind {
            NodeKind::File => {
                self.stats.files += 1;
                Counters::add(&self.counters.files, 1);
                if let Some(prev) = previous.filter(|p| node.unchanged_since(p) && self.all_indexed(&p.content)) {
                    node.content = prev.content.clone();
                    self.stats.files_unchanged += 1;
                    self.stats.bytes += node.size;
                    Counters::add(&self.counters.bytes, node.size);
                    return Ok(Some(node));
                }
                let key = node.hard_link_key();
                if let Some(first) = key
                    .and_then(|k| self.hard_links.get(&k))
                    .filter(|f| (f.size, f.mtime_ns, f.ctime_ns) == (node.size, node.mtime_ns, node.ctime_ns))
                {
                    // Another name of a file this run has read: the same content.
                    node.content = first.content.clone();
                    self.stats.bytes += node.size;
                    Counters::add(&self.counters.bytes, node.size);
                    return Ok(Some(node));
                }
                let params = self.repo.config().chunker_files;
                let stored = if node.size < u64::from(params.min_size) {
                    // Small files are one chunk: read them whole, no chunker buffer.
                    let mut data = std::mem::take(&mut self.small_file);
                    data.clear();
                    let read = source_file::open_seen(path, &meta).and_then(|mut f| f.read_to_end(&mut data));
                    let stored = read.map_err(EntryError::Skip).map(|_| self.store_whole(&data));
                    self.small_file = data;
                    stored?.map_err(ContentError::Packer)
                } else {
                    let file = source_file::open_seen(path, &meta).map_err(EntryError::Skip)?;
                    let mut ids = Vec::new();
                    self.store_content(file, &mut ids).map(|size| (ids, size))
                };
                let (content, size) = stored.map_err(|e| match e {
                    ContentError::Read(io) => EntryError::Skip(io),
                    ContentError::Packer(p) => EntryError::Fatal(p.into()),
                })?;
                node.content = content;
                node.size = size;
                if let Some(key) = key {
                    let first = HardLinked {
                        size,
                        mtime_ns: node.mtime_ns,
                        ctime_ns: node.ctime_ns,
                        content: node.content.clone(),
                    };
                    self.hard_links.insert(key, first);
                }
            }
            NodeKind::Dir => {
                let previous_tree = match previous.and_then(|p| p.subtree) {
                    Some(id) => match self.repo.load_tree(&id) {
                        Ok(tree) => Some(tree),
                        Err(e) => {
                            debug!(error = %e, "parent tree unreadable; reading everything");
                            None
                        }
                    },
                    None => None,
                };
                let id = match self.archive_dir(path, previous_tree.as_ref()) {
                    Ok(id) => id,
                    Err(BackupError::Source { source, path: p }) if p == path => return Err(EntryError::Skip(source)),
                    Err(e) => return Err(EntryError::Fatal(e)),
                };
                node.subtree = Some(id);
            }
            NodeKind::Symlink => node.set_target(std::fs::read_link(path).map_err(EntryError::Skip)?.as_os_str()),
            _ => {}
        }
        Ok(Some(node))
    }

    fn finish(self, snapshot: Snapshot, started: Instant) -> Result<(Id, Snapshot), BackupError> {
        let Session {
            repo,
            lock,
            packer,
            mut stats,
            ..
        } = self;
        let summary = packer.finish()?;
        lock.ensure_held()?;
        stats.stored_bytes = summary.stored_bytes;
        stats.packs = summary.packs;
        stats.duration_secs = started.elapsed().as_secs_f64();
        let snapshot = Snapshot { stats, ..snapshot };
        let id = repo.write_sealed(FileKind::Snapshot, snapshot::AAD, &snapshot)?;
        info!(snapshot = %id, files = snapshot.stats.files, bytes = snapshot.stats.bytes,
              new_bytes = snapshot.stats.new_bytes, stored = snapshot.stats.stored_bytes, "snapshot saved");
        Ok((id, snapshot))
    }
}

enum ContentError {
    Read(std::io::Error),
    Packer(PackerError),
}

enum EntryError {
    /// The entry cannot be read: warn and go on.
    Skip(std::io::Error),
    /// The repository side failed: stop.
    Fatal(BackupError),
}

fn new_snapshot(source: Source, options: &BackupOptions) -> Snapshot {
    Snapshot {
        version: snapshot::SNAPSHOT_VERSION,
        time: options.time.unwrap_or_else(Utc::now),
        hostname: options.hostname.clone().unwrap_or_else(hostname),
        source,
        tags: options.tags.clone(),
        tree: None,
        streams: Vec::new(),
        parent: None,
        stats: Stats::default(),
    }
}

/// Backs up the directory `root` (its contents become the snapshot's root tree). `lock`
/// must have been taken before `repo` loaded its index.
pub fn backup_tree(
    repo: &IndexedRepository,
    lock: &BackupLock,
    root: &Path,
    options: &BackupOptions,
    counters: Arc<Counters>,
) -> Result<(Id, Snapshot), BackupError> {
    let started = Instant::now();
    let root = std::fs::canonicalize(root).map_err(|source| BackupError::Source {
        path: root.to_owned(),
        source,
    })?;
    let path = root.to_string_lossy().into_owned();
    let mut snapshot = new_snapshot(Source::Tree { path: path.clone() }, options);
    let parent = if options.force {
        None
    } else if let Some(id) = options.parent {
        Some((id, repo.find_snapshot(&id.to_hex())?.1))
    } else {
        repo.snapshots()?
            .into_iter()
            .rev()
            .find(|(_, s)| s.hostname == snapshot.hostname && s.source == snapshot.source)
    };
    let parent_tree = match parent.as_ref().and_then(|(_, s)| s.tree) {
        Some(tree) => Some(repo.load_tree(&tree)?),
        None => None,
    };
    snapshot.parent = parent.map(|(id, _)| id);
    let mut session = Session::start(repo, lock, options, counters.clone());
    session.root = root.clone();
    // While the backup runs, another thread adds up the sizes for the progress percentage.
    let stop = AtomicBool::new(false);
    let tree = std::thread::scope(|scope| {
        scope.spawn(|| {
            if let Some(total) = options.selection.size_below(&root, &stop) {
                let _ = counters.bytes_total.set(total);
            }
        });
        let tree = session.archive_dir(&root, parent_tree.as_ref());
        stop.store(true, Ordering::Relaxed);
        tree
    })?;
    snapshot.tree = Some(tree);
    session.finish(snapshot, started)
}

/// Backs up named streams, one after another, into one snapshot (`lock` as for
/// [`backup_tree`]).
pub fn backup_streams(
    repo: &IndexedRepository,
    lock: &BackupLock,
    inputs: Vec<StreamInput>,
    options: &BackupOptions,
    counters: Arc<Counters>,
) -> Result<(Id, Snapshot), BackupError> {
    let mut names = HashSet::new();
    if let Some(dup) = inputs.iter().find(|i| !names.insert(i.name.clone())) {
        return Err(BackupError::DuplicateStream(dup.name.clone()));
    }
    let mut backup = StreamBackup::start(repo, lock, options, counters);
    for mut input in inputs {
        backup.add(&input.name, &mut input.reader)?;
        if let Some(complete) = input.complete {
            complete().map_err(|source| BackupError::Stream {
                name: input.name.clone(),
                source,
            })?;
        }
    }
    backup.finish()
}

/// A backup of named streams pushed one at a time (e.g. by a database dump through
/// [`StreamSink`]). The snapshot is written only by [`StreamBackup::finish`]: a backup that is
/// dropped unfinished (a dump failed half-way) leaves no snapshot, only unreferenced packs
/// that `prune` collects.
pub struct StreamBackup<'a> {
    session: Session<'a>,
    snapshot: Snapshot,
    started: Instant,
}

impl<'a> StreamBackup<'a> {
    /// Starts the write pipeline for a snapshot of streams (`lock` as for [`backup_tree`]).
    pub fn start(
        repo: &'a IndexedRepository,
        lock: &'a BackupLock,
        options: &BackupOptions,
        counters: Arc<Counters>,
    ) -> Self {
        StreamBackup {
            session: Session::start(repo, lock, options, counters),
            snapshot: new_snapshot(Source::Streams, options),
            started: Instant::now(),
        }
    }

    /// Stores the stream `name`, reading `data` to its end; returns its length.
    pub fn add(&mut self, name: &str, data: &mut dyn Read) -> Result<u64, BackupError> {
        if self.snapshot.streams.iter().any(|s| s.name == name) {
            return Err(BackupError::DuplicateStream(name.to_owned()));
        }
        let mut ids = StreamIds::default();
        let size = self.session.store_content(data, &mut ids).map_err(|e| match e {
            ContentError::Read(io) => BackupError::Stream {
                name: name.to_owned(),
                source: Box::new(io),
            },
            ContentError::Packer(p) => p.into(),
        })?;
        let (content, content_lists) = ids.finish(&mut self.session)?;
        Counters::add(&self.session.counters.files, 1);
        self.session.stats.files += 1;
        self.snapshot.streams.push(Stream {
            name: name.to_owned(),
            size,
            content,
            content_lists,
        });
        Ok(size)
    }

    /// Waits for every pack and index file, then writes the snapshot.
    pub fn finish(self) -> Result<(Id, Snapshot), BackupError> {
        self.session.finish(self.snapshot, self.started)
    }
}

impl StreamSink for StreamBackup<'_> {
    fn expect_total(&mut self, bytes: u64) {
        let _ = self.session.counters.bytes_total.set(bytes);
    }

    fn put(&mut self, name: &str, data: &mut dyn Read) -> std::io::Result<u64> {
        self.add(name, data).map_err(|e| match e {
            BackupError::Stream { source, .. } => std::io::Error::other(source),
            other => std::io::Error::other(other),
        })
    }
}
