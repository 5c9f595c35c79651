//! A repository with its index loaded ([`IndexedRepository`]): blob reads that check the AEAD
//! tag and the blob hash, in runs of adjacent blobs and in order with read-ahead.

use std::collections::VecDeque;
use std::ops::Deref;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use tracing::warn;

use crate::backend::FileKind;
use crate::id::Id;
use crate::index::{self, Index};
use crate::memory_budget::MemoryBudget;
use crate::pack::{self, BlobKind};
use crate::snapshot::{self, Stream};
use crate::tree::Tree;

use super::{Repository, RepositoryError};

/// What a reader thread answers for one run: its blobs' plaintext, in order.
type RunResult = Result<Vec<Vec<u8>>, RepositoryError>;

/// One run of blobs for a reader thread, and where to send its result.
struct ReadJob {
    ids: Vec<Id>,
    kind: BlobKind,
    done: Sender<RunResult>,
}

/// Reader threads shared by several [`IndexedRepository::read_in_order_within`] calls (see
/// [`IndexedRepository::with_readers`]).
pub struct BlobReaders {
    jobs: Sender<ReadJob>,
}

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
/// Runs in flight ahead of the writer, per file or stream.
pub const READ_AHEAD: usize = 4;
/// The budget of [`IndexedRepository::read_in_order`] (callers that read several files at
/// once share one [`MemoryBudget`] instead).
pub(super) const READ_AHEAD_BYTES: u64 = 2 * READ_AHEAD as u64 * RUN_BYTES;
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

    /// Reads the blobs `ids` (of `kind`) in order and hands each checked plaintext to `sink`,
    /// with up to [`READ_AHEAD`] reader threads of its own, holding at most
    /// [`READ_AHEAD_BYTES`] of pack data at once (see
    /// [`read_in_order_within`](Self::read_in_order_within)).
    pub fn read_in_order<E>(
        &self,
        ids: &[Id],
        kind: BlobKind,
        sink: impl FnMut(Vec<u8>) -> Result<(), E>,
        from_repo: impl Fn(RepositoryError) -> E,
    ) -> Result<(), E> {
        let budget = MemoryBudget::new(READ_AHEAD_BYTES);
        self.with_readers(READ_AHEAD.min(ids.len()), |readers| {
            self.read_in_order_within(ids, kind, &budget, readers, sink, from_repo)
        })
    }

    /// Runs `work` with `threads` reader threads that
    /// [`read_in_order_within`](Self::read_in_order_within) hands runs of blobs to; they stop
    /// when `work` returns.
    /// Callers that read many files share one set: threads that live as long as the restore
    /// reuse their memory, where threads started per file left the allocator holding several
    /// times the data in flight.
    pub fn with_readers<R>(&self, threads: usize, work: impl FnOnce(&BlobReaders) -> R) -> R {
        let (jobs, todo) = unbounded::<ReadJob>();
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                let todo = todo.clone();
                scope.spawn(move || {
                    for job in todo {
                        // The caller may have stopped waiting (after an error): nothing to do.
                        let _ = job.done.send(self.read_blob_run(&job.ids, job.kind));
                    }
                });
            }
            drop(todo);
            let readers = BlobReaders { jobs };
            work(&readers)
        })
    }

    /// Reads the blobs `ids` (of `kind`) in order and hands each checked plaintext to `sink`.
    /// Blobs stored back to back are fetched together (one request per run: remote backends
    /// answer each request with a delay, whatever its size); a run spans at most
    /// [`RUN_BYTES`] of its pack and of plaintext, and at most an eighth of `budget`. The
    /// `readers` fetch, decrypt and check up to [`READ_AHEAD`] next runs while `sink` writes.
    /// Each run takes its bytes (read plus plaintext) from `budget` before it is fetched and
    /// gives them back once `sink` has taken its blobs, so callers that share one budget hold
    /// at most its capacity of pack data between them (one run larger than the budget goes
    /// alone). Only the run `sink` needs next waits for the budget, and then this call holds
    /// none of it: callers sharing a budget never wait for each other in a cycle. A file of
    /// one run is read on the calling thread.
    pub fn read_in_order_within<E>(
        &self,
        ids: &[Id],
        kind: BlobKind,
        budget: &MemoryBudget,
        readers: &BlobReaders,
        mut sink: impl FnMut(Vec<u8>) -> Result<(), E>,
        from_repo: impl Fn(RepositoryError) -> E,
    ) -> Result<(), E> {
        let max_run = (budget.capacity() / (2 * READ_AHEAD as u64)).clamp(1, RUN_BYTES);
        let runs = self.adjacent_runs(ids, max_run);
        let costs: Vec<u64> = runs
            .iter()
            .map(|run| budget.cost(self.run_bytes(&ids[run.clone()])))
            .collect();
        if runs.len() <= 1 {
            for (run, &cost) in runs.iter().zip(&costs) {
                budget.take(cost);
                let written = self
                    .read_blob_run(&ids[run.clone()], kind)
                    .map_err(&from_repo)
                    .and_then(|blobs| blobs.into_iter().try_for_each(&mut sink));
                budget.give_back(cost);
                written?;
            }
            return Ok(());
        }
        // The runs handed to the readers, in order, each with where its result arrives.
        let mut pending: VecDeque<Receiver<RunResult>> = VecDeque::new();
        let (mut sent, mut held) = (0, 0u64);
        let mut result = Ok(());
        for want in 0..runs.len() {
            // Hand out the next runs while the budget has room for them; wait for it only for
            // the run needed now, when every run before it is written and given back.
            while sent < runs.len() && sent < want + READ_AHEAD {
                let cost = costs[sent];
                if sent == want {
                    budget.take(cost);
                } else if !budget.try_take(cost) {
                    break;
                }
                held += cost;
                let (done, answer) = bounded(1);
                let job = ReadJob {
                    ids: ids[runs[sent].clone()].to_vec(),
                    kind,
                    done,
                };
                // If the readers stopped, the job is dropped and `recv` below reports it.
                let _ = readers.jobs.send(job);
                pending.push_back(answer);
                sent += 1;
            }
            let blobs = pending
                .pop_front()
                .and_then(|answer| answer.recv().ok())
                .unwrap_or_else(|| {
                    Err(RepositoryError::Corrupt {
                        what: format!("blob {}", ids[runs[want].start]),
                        reason: "the reader threads stopped".into(),
                    })
                });
            let written = blobs
                .map_err(&from_repo)
                .and_then(|blobs| blobs.into_iter().try_for_each(&mut sink));
            held -= costs[want];
            budget.give_back(costs[want]);
            if let Err(e) = written {
                result = Err(e);
                break;
            }
        }
        // After an error, runs handed out may still be read: their bytes stay held until the
        // readers are done with them.
        for answer in pending {
            let _ = answer.recv();
        }
        budget.give_back(held);
        result
    }

    /// Bytes a run of blobs costs while it is held: its span in the pack plus its plaintext.
    fn run_bytes(&self, ids: &[Id]) -> u64 {
        let located = || ids.iter().filter_map(|id| self.index.get(id));
        let start = located().map(|l| l.entry.offset).min().unwrap_or(0);
        let end = located()
            .map(|l| l.entry.offset + u64::from(l.entry.length))
            .max()
            .unwrap_or(0);
        let plaintext: u64 = located().map(|l| u64::from(l.entry.raw_length)).sum();
        end.saturating_sub(start) + plaintext
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
