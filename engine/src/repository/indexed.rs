//! A repository with its index loaded ([`IndexedRepository`]): blob reads that check the AEAD
//! tag and the blob hash, in runs of adjacent blobs and in order with read-ahead.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::bounded;
use tracing::warn;

use crate::backend::FileKind;
use crate::id::Id;
use crate::index::{self, Index};
use crate::pack::{self, BlobKind};
use crate::snapshot::{self, Stream};
use crate::tree::Tree;

use super::{Repository, RepositoryError};

/// A repository with its index loaded: can read blobs.
pub struct IndexedRepository {
    pub(super) repo: Repository,
    pub(super) index: Index,
}

impl Deref for IndexedRepository {
    type Target = Repository;

    fn deref(&self) -> &Repository {
        &self.repo
    }
}

/// Blobs of one run lie at most this far apart in their pack (see
/// [`IndexedRepository::adjacent_runs`]).
pub(super) const RUN_GAP: u64 = 256 << 10;
/// Requests in flight ahead of the writer, per file or stream.
pub(super) const READ_AHEAD: usize = 4;
/// Blobs close together in one pack are fetched with one request of up to this many bytes read
/// and this many bytes of plaintext.
pub(super) const RUN_BYTES: u64 = 4 << 20;

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
                let ids = snapshot::decode_content_list(&bytes).map_err(|e| RepositoryError::Corrupt {
                    what: format!("content list {list} of stream `{}`", stream.name),
                    reason: e.to_string(),
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
