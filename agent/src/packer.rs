//! The write pipeline: blobs in, packs and index files out.
//!
//! `add` → N encoder threads (zstd + seal) → one packer thread (separate data and tree packs)
//! → uploader threads (`Backend::write`) → index files. Every channel is bounded, so a slow
//! stage (usually the upload) holds back the stages before it and memory stays bounded:
//! at most a few chunks per encoder and [`PackerOptions::uploaders`] (at least two) data-pack
//! buffers in all, open or uploading. Those buffers are allocated once and cycled between
//! the packer and the uploaders, so the allocator never has to give back pack-sized blocks
//! (glibc would keep freed ones resident, which doubled the peak memory).
//!
//! An index file is written after every [`INDEX_EVERY`] uploaded packs and at the end, and
//! only lists packs that are already stored, so an interrupted backup leaves a valid
//! repository (its unindexed packs are garbage for `prune`).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use tracing::debug;

use crate::backend::{Backend, BackendError, FileKind};
use crate::crypto::Keys;
use crate::id::Id;
use crate::index::{self, IndexFile, IndexPack};
use crate::pack::{self, BlobError, BlobKind, FinishedPack, PackBuilder};

/// Packs per intermediate index file.
pub const INDEX_EVERY: usize = 64;

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
    /// Sealing failed.
    #[error("sealing blob {id}: {source}")]
    Blob {
        /// The blob.
        id: Id,
        /// Why.
        source: BlobError,
    },
    /// Serializing an index file failed.
    #[error("writing an index file: {0}")]
    Index(String),
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
    /// Packs stored (all of them are in index files).
    pub packs: Vec<IndexPack>,
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
}

/// Settings of the write pipeline.
#[derive(Debug, Clone, Copy)]
pub struct PackerOptions {
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
    let json = serde_json::to_vec(&IndexFile { version: 1, packs }).map_err(|e| PackerError::Index(e.to_string()))?;
    let encoded = crate::codec::encode(3, &json).map_err(|e| PackerError::Index(e.to_string()))?;
    let sealed = keys
        .seal(index::AAD, &encoded)
        .map_err(|e| PackerError::Index(e.to_string()))?;
    let id = Id::of_file(&sealed);
    backend
        .write(FileKind::Index, &id.to_hex(), &sealed)
        .map_err(|source| PackerError::Backend {
            what: format!("index file {id}"),
            source,
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
        let (pack_tx, pack_rx) = bounded::<FinishedPack>(0);
        // Data-pack buffers: one is filled while the others are uploaded.
        let buffers = options.uploaders.max(2);
        let (free_tx, free_rx) = bounded::<Vec<u8>>(buffers);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut threads = Vec::new();
        for _ in 0..encoders {
            let (rx, tx, keys, shared) = (job_rx.clone(), sealed_tx.clone(), keys.clone(), shared.clone());
            threads.push(std::thread::spawn(move || {
                encode_loop(&rx, &tx, &keys, options.compression_level, &shared)
            }));
        }
        drop(sealed_tx);
        {
            let (keys, shared) = (keys.clone(), shared.clone());
            threads.push(std::thread::spawn(move || {
                let pool = BufferPool {
                    free: free_rx,
                    capacity: options.pack_size + 9 * 1024 * 1024,
                    left: buffers,
                };
                pack_loop(&sealed_rx, &pack_tx, &keys, options.pack_size, pool, &shared)
            }));
        }
        for _ in 0..options.uploaders.max(1) {
            let (rx, backend, keys, shared) = (pack_rx.clone(), backend.clone(), keys.clone(), shared.clone());
            let free = free_tx.clone();
            let min_capacity = options.pack_size;
            threads.push(std::thread::spawn(move || {
                upload_loop(&rx, backend.as_ref(), &keys, &shared, &free, min_capacity)
            }));
        }
        drop(free_tx);
        Self {
            jobs: Some(job_tx),
            threads,
            shared,
            backend,
            keys,
        }
    }

    /// Queues a blob (blocks while the pipeline is full). The caller deduplicates.
    pub fn add(&self, id: Id, kind: BlobKind, data: Vec<u8>) -> Result<(), PackerError> {
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

fn encode_loop(rx: &Receiver<Job>, tx: &Sender<Sealed>, keys: &Keys, level: i32, shared: &Mutex<Shared>) {
    for job in rx {
        match pack::seal_blob(keys, job.kind, &job.id, &job.data, level) {
            Ok(sealed) => {
                let raw_length = u32::try_from(job.data.len()).unwrap_or(u32::MAX);
                if tx
                    .send(Sealed {
                        id: job.id,
                        kind: job.kind,
                        raw_length,
                        sealed,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(source) => return fail(shared, PackerError::Blob { id: job.id, source }),
        }
    }
}

/// The data-pack buffers: `left` more may be allocated, the others come back from the
/// uploaders through `free`.
struct BufferPool {
    free: Receiver<Vec<u8>>,
    capacity: usize,
    left: usize,
}

impl BufferPool {
    /// A buffer for the next data pack; waits for an uploader to return one when all are in
    /// use. `None` when every uploader has stopped.
    fn take(&mut self) -> Option<Vec<u8>> {
        if let Ok(buffer) = self.free.try_recv() {
            return Some(buffer);
        }
        if self.left > 0 {
            self.left -= 1;
            // Room for a full pack plus one maximal blob, so the buffer never grows.
            return Some(Vec::with_capacity(self.capacity));
        }
        self.free.recv().ok()
    }
}

fn pack_loop(
    rx: &Receiver<Sealed>,
    tx: &Sender<FinishedPack>,
    keys: &Keys,
    pack_size: usize,
    mut pool: BufferPool,
    shared: &Mutex<Shared>,
) {
    let finish = |builder: PackBuilder| -> bool {
        match builder.finish(keys) {
            Ok(pack) => tx.send(pack).is_ok(),
            Err(source) => {
                fail(
                    shared,
                    PackerError::Blob {
                        id: Id([0; 32]),
                        source,
                    },
                );
                false
            }
        }
    };
    let Some(first) = pool.take() else { return };
    let mut data = PackBuilder::reusing(first);
    // Tree packs are rare and usually small: their buffer grows as needed.
    let mut trees = PackBuilder::default();
    for blob in rx {
        {
            let mut s = lock(shared);
            s.summary.blobs += 1;
            s.summary.raw_bytes += u64::from(blob.raw_length);
        }
        if blob.kind == BlobKind::Tree {
            trees.add(blob.id, blob.kind, blob.raw_length, &blob.sealed);
            if trees.len() >= pack_size && !finish(std::mem::take(&mut trees)) {
                return;
            }
            continue;
        }
        data.add(blob.id, blob.kind, blob.raw_length, &blob.sealed);
        drop(blob);
        if data.len() >= pack_size {
            let Some(buffer) = pool.take() else { return };
            if !finish(std::mem::replace(&mut data, PackBuilder::reusing(buffer))) {
                return;
            }
        }
    }
    if lock(shared).error.is_some() {
        return;
    }
    for builder in [data, trees] {
        if !builder.is_empty() && !finish(builder) {
            return;
        }
    }
}

fn upload_loop(
    rx: &Receiver<FinishedPack>,
    backend: &dyn Backend,
    keys: &Keys,
    shared: &Mutex<Shared>,
    free: &Sender<Vec<u8>>,
    min_capacity: usize,
) {
    for pack in rx {
        if let Err(source) = backend.write(FileKind::Pack, &pack.id.to_hex(), &pack.data) {
            fail(
                shared,
                PackerError::Backend {
                    what: format!("pack {}", pack.id),
                    source,
                },
            );
            // The packer may be waiting for this buffer while other uploaders live on.
            let _ = free.try_send(pack.data);
            return;
        }
        debug!(pack = %pack.id, bytes = pack.data.len(), blobs = pack.blobs.len(), "pack stored");
        let stored_bytes = pack.data.len() as u64;
        if pack.data.capacity() >= min_capacity {
            // Back to the packer (a full pool means the pipeline is ending: drop it).
            let _ = free.try_send(pack.data);
        }
        let entry = IndexPack {
            id: pack.id,
            blobs: pack.blobs,
        };
        let batch = {
            let mut s = lock(shared);
            s.summary.stored_bytes += stored_bytes;
            s.summary.packs.push(entry.clone());
            s.unindexed.push(entry);
            if s.unindexed.len() >= INDEX_EVERY {
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
