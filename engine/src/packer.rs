//! The write pipeline: blobs in, packs and index files out.
//!
//! `add` → N encoder threads (zstd + seal) → one packer thread (separate data and tree packs,
//! each written to a spool file as it fills: [`crate::spool`]) → uploader threads
//! (`Backend::write_file`) → index files. Every channel is bounded, so a slow stage (usually
//! the upload) holds back the stages before it and memory stays bounded: a few chunks per
//! encoder; packs, open or uploading, are on disk, at most [`PackerOptions::uploaders`] + 2
//! of them at a time. Chunk and sealed-blob buffers go back to the stage that fills them
//! and are reused ([`Recycler`]), so the allocator does not see a large allocation and a
//! free on another thread for every chunk (glibc kept such freed blocks resident).
//!
//! An index file is written after every [`INDEX_EVERY`] uploaded packs (or fewer, once they
//! list [`INDEX_BLOBS`] blobs) and at the end, and only lists packs that are already stored,
//! so an interrupted backup leaves a valid repository (its unindexed packs are garbage for
//! `prune`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use tracing::debug;

use crate::backend::{Backend, BackendError, FileKind};
use crate::crypto::Keys;
use crate::id::Id;
use crate::index::{self, IndexFile, IndexPack};
use crate::pack::{self, BlobError, BlobKind, PackWriter, SpooledPack};
use crate::sealed::WriteError;

/// Packs per intermediate index file.
pub const INDEX_EVERY: usize = 64;
/// Blobs per intermediate index file at most (before the pack that passes it): packs of small
/// stream chunks hold about a thousand blobs each, and an index file is held in memory,
/// as JSON, while it is written.
pub const INDEX_BLOBS: usize = 16 * 1024;
/// Chunk and sealed-blob buffers larger than this are freed rather than reused (chunks above
/// the 1 MiB average of file trees).
pub const REUSE_MAX: usize = 1024 * 1024 + 64 * 1024;

/// Buffers returned for reuse by the stage that consumed them; a bounded number is kept.
#[derive(Clone)]
struct Recycler {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

impl Recycler {
    fn new(keep: usize) -> Self {
        let (tx, rx) = bounded(keep);
        Self { tx, rx }
    }

    /// An empty buffer: a returned one if there is one.
    fn take(&self) -> Vec<u8> {
        self.rx.try_recv().unwrap_or_default()
    }

    /// Returns a buffer for reuse (dropped when it is very large or enough are kept).
    fn give(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() <= REUSE_MAX {
            buffer.clear();
            let _ = self.tx.try_send(buffer);
        }
    }
}

/// Errors of the write pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PackerError {
    /// Uploading a pack or index file failed.
    #[error("storing {what}: {source}")]
    Backend {
        /// The file, e.g. `pack 1a2b…`.
        what: String,
        /// Why.
        source: BackendError,
    },
    /// Sealing a blob or writing a pack to its spool file failed.
    #[error("sealing blob {id}: {source}")]
    Blob {
        /// The blob.
        id: Id,
        /// Why.
        source: BlobError,
    },
    /// Serializing an index file failed.
    #[error("writing an index file: {0}")]
    Index(#[from] crate::sealed::SealError),
    /// A pipeline thread stopped unexpectedly.
    #[error("the write pipeline stopped unexpectedly")]
    Stopped,
}

struct Job {
    id: Id,
    kind: BlobKind,
    data: Vec<u8>,
}

struct Sealed {
    id: Id,
    kind: BlobKind,
    raw_length: u32,
    sealed: Vec<u8>,
}

/// What the pipeline wrote.
#[derive(Debug, Default, Clone)]
pub struct PackerSummary {
    /// Packs stored (all of them are in index files). A count, not the packs' blob lists,
    /// so memory does not grow with the size of the backup.
    pub packs: u64,
    /// Bytes written to packs.
    pub stored_bytes: u64,
    /// Blobs added.
    pub blobs: u64,
    /// Plaintext bytes added.
    pub raw_bytes: u64,
}

#[derive(Default)]
struct Shared {
    error: Option<PackerError>,
    summary: PackerSummary,
    unindexed: Vec<IndexPack>,
    unindexed_blobs: usize,
}

/// Settings of the write pipeline.
#[derive(Debug, Clone)]
pub struct PackerOptions {
    /// Where packs are written while they fill and upload.
    pub spool_dir: PathBuf,
    /// Close a pack at this many bytes.
    pub pack_size: usize,
    /// zstd level (0 = raw).
    pub compression_level: i32,
    /// Encoder threads.
    pub encoders: usize,
    /// Concurrent uploads.
    pub uploaders: usize,
}

/// A running write pipeline.
pub struct Packer {
    jobs: Option<Sender<Job>>,
    plaintexts: Recycler,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    backend: Arc<dyn Backend>,
    keys: Keys,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail(shared: &Mutex<Shared>, error: PackerError) {
    lock(shared).error.get_or_insert(error);
}

fn write_index(backend: &dyn Backend, keys: &Keys, packs: Vec<IndexPack>) -> Result<(), PackerError> {
    if packs.is_empty() {
        return Ok(());
    }
    let id = crate::sealed::write(
        backend,
        keys,
        FileKind::Index,
        index::AAD,
        &IndexFile { version: 1, packs },
    )
    .map_err(|e| match e {
        WriteError::Seal(e) => PackerError::Index(e),
        WriteError::Backend { id, source } => PackerError::Backend {
            what: format!("index file {id}"),
            source,
        },
    })?;
    debug!(index = %id, "index file written");
    Ok(())
}

impl Packer {
    /// Starts the pipeline threads.
    pub fn start(backend: Arc<dyn Backend>, keys: Keys, options: PackerOptions) -> Self {
        let encoders = options.encoders.max(1);
        let (job_tx, job_rx) = bounded::<Job>(encoders);
        let (sealed_tx, sealed_rx) = bounded::<Sealed>(encoders);
        let (pack_tx, pack_rx) = bounded::<SpooledPack>(0);
        let shared = Arc::new(Mutex::new(Shared::default()));
        // Enough buffers for every chunk that can be in flight at once.
        let plaintexts = Recycler::new(2 * encoders + 2);
        let sealed_buffers = Recycler::new(2 * encoders + 2);
        let mut threads = Vec::new();
        for _ in 0..encoders {
            let (rx, tx, keys, shared) = (job_rx.clone(), sealed_tx.clone(), keys.clone(), shared.clone());
            let buffers = (plaintexts.clone(), sealed_buffers.clone());
            threads.push(std::thread::spawn(move || {
                encode_loop(&rx, &tx, &keys, options.compression_level, &shared, &buffers)
            }));
        }
        drop(sealed_tx);
        {
            let (keys, shared, options) = (keys.clone(), shared.clone(), options.clone());
            threads.push(std::thread::spawn(move || {
                pack_loop(&sealed_rx, &pack_tx, &keys, &options, &shared, &sealed_buffers)
            }));
        }
        for _ in 0..options.uploaders.max(1) {
            let (rx, backend, keys, shared) = (pack_rx.clone(), backend.clone(), keys.clone(), shared.clone());
            threads.push(std::thread::spawn(move || {
                upload_loop(&rx, backend.as_ref(), &keys, &shared)
            }));
        }
        Self {
            jobs: Some(job_tx),
            plaintexts,
            threads,
            shared,
            backend,
            keys,
        }
    }

    /// Queues a copy of a blob (blocks while the pipeline is full). The caller deduplicates.
    pub fn add(&self, id: Id, kind: BlobKind, plaintext: &[u8]) -> Result<(), PackerError> {
        let mut data = self.plaintexts.take();
        data.extend_from_slice(plaintext);
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|tx| tx.send(Job { id, kind, data }).is_ok());
        if sent {
            return Ok(());
        }
        Err(lock(&self.shared).error.take().unwrap_or(PackerError::Stopped))
    }

    /// Flushes the open packs, waits for every upload, writes the last index file.
    pub fn finish(mut self) -> Result<PackerSummary, PackerError> {
        drop(self.jobs.take());
        let mut panicked = false;
        for thread in self.threads.drain(..) {
            panicked |= thread.join().is_err();
        }
        let mut shared = lock(&self.shared);
        if let Some(error) = shared.error.take() {
            return Err(error);
        }
        if panicked {
            return Err(PackerError::Stopped);
        }
        write_index(self.backend.as_ref(), &self.keys, std::mem::take(&mut shared.unindexed))?;
        Ok(std::mem::take(&mut shared.summary))
    }
}

fn encode_loop(
    rx: &Receiver<Job>,
    tx: &Sender<Sealed>,
    keys: &Keys,
    level: i32,
    shared: &Mutex<Shared>,
    (plaintexts, sealed_buffers): &(Recycler, Recycler),
) {
    for job in rx {
        let mut sealed = sealed_buffers.take();
        if let Err(source) = pack::seal_blob_into(keys, job.kind, &job.id, &job.data, level, &mut sealed) {
            return fail(shared, PackerError::Blob { id: job.id, source });
        }
        let raw_length = u32::try_from(job.data.len()).unwrap_or(u32::MAX);
        plaintexts.give(job.data);
        let sealed = Sealed {
            id: job.id,
            kind: job.kind,
            raw_length,
            sealed,
        };
        if tx.send(sealed).is_err() {
            return;
        }
    }
}

/// The packer thread: appends sealed blobs to the open data or tree pack (opened on the
/// first blob of its kind), and hands each full pack to the uploaders.
fn pack_loop(
    rx: &Receiver<Sealed>,
    tx: &Sender<SpooledPack>,
    keys: &Keys,
    options: &PackerOptions,
    shared: &Mutex<Shared>,
    sealed_buffers: &Recycler,
) {
    let pack_size = options.pack_size as u64;
    let failed = |id: Id, source: BlobError| fail(shared, PackerError::Blob { id, source });
    let finish = |writer: PackWriter| -> bool {
        match writer.finish(keys) {
            Ok(pack) => tx.send(pack).is_ok(),
            Err(source) => {
                failed(Id([0; 32]), source);
                false
            }
        }
    };
    // Data and tree blobs go to separate packs, so trees are read without data.
    let mut open: [Option<PackWriter>; 2] = [None, None];
    for blob in rx {
        {
            let mut s = lock(shared);
            s.summary.blobs += 1;
            s.summary.raw_bytes += u64::from(blob.raw_length);
        }
        let slot = &mut open[usize::from(blob.kind == BlobKind::Tree)];
        let writer = match slot {
            Some(writer) => writer,
            None => match PackWriter::create(&options.spool_dir) {
                Ok(writer) => slot.insert(writer),
                Err(e) => return failed(blob.id, e.into()),
            },
        };
        if let Err(e) = writer.add(blob.id, blob.kind, blob.raw_length, &blob.sealed) {
            return failed(blob.id, e.into());
        }
        sealed_buffers.give(blob.sealed);
        if writer.written() >= pack_size && slot.take().is_some_and(|full| !finish(full)) {
            return;
        }
    }
    if lock(shared).error.is_some() {
        return;
    }
    for writer in open.into_iter().flatten() {
        if !finish(writer) {
            return;
        }
    }
}

fn upload_loop(rx: &Receiver<SpooledPack>, backend: &dyn Backend, keys: &Keys, shared: &Mutex<Shared>) {
    for pack in rx {
        if let Err(source) = backend.write_file(pack::file_kind(&pack.blobs), &pack.id.to_hex(), pack.file.local()) {
            return fail(
                shared,
                PackerError::Backend {
                    what: format!("pack {}", pack.id),
                    source,
                },
            );
        }
        let stored_bytes = pack.file.size();
        debug!(pack = %pack.id, bytes = stored_bytes, blobs = pack.blobs.len(), "pack stored");
        drop(pack.file);
        let entry = IndexPack {
            id: pack.id,
            blobs: pack.blobs,
        };
        let batch = {
            let mut s = lock(shared);
            s.summary.stored_bytes += stored_bytes;
            s.summary.packs += 1;
            s.unindexed_blobs += entry.blobs.len();
            s.unindexed.push(entry);
            if s.unindexed.len() >= INDEX_EVERY || s.unindexed_blobs >= INDEX_BLOBS {
                s.unindexed_blobs = 0;
                std::mem::take(&mut s.unindexed)
            } else {
                Vec::new()
            }
        };
        if let Err(e) = write_index(backend, keys, batch) {
            return fail(shared, e);
        }
    }
}
