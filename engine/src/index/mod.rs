//! The index: which pack holds each blob. Stored as append-only, sealed index files; loaded
//! into one in-memory map, or, for a repository with more blobs than [`MEMORY_BLOBS`], into a
//! sorted file in the spool directory ([`sorted`]), so that opening a repository of any size
//! needs bounded memory.

mod record;
pub mod sorted;

use std::collections::HashMap;
use std::path::Path;

use tracing::error;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::pack::{BlobEntry, BlobKind};
use record::Record;
use sorted::{SortedBlobs, Sorter};

/// Associated data of sealed index files.
pub const AAD: &[u8] = b"hort.v1.index";

/// One pack in an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack's name.
    pub id: Id,
    /// Its blobs (as in its trailer).
    pub blobs: Vec<BlobEntry>,
}

/// Contents of an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index file format version (1).
    pub version: u32,
    /// Packs described by this file.
    pub packs: Vec<IndexPack>,
}

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Pack name.
    pub pack: Id,
    /// Offset, lengths, kind.
    pub entry: BlobEntry,
    /// The pack is condemned by a prune run: readable, but new backups must not use it.
    pub condemned: bool,
}

/// Most blobs an index keeps in memory: with more, it sorts them into a file. About 35 MiB of
/// records while they are gathered.
pub const MEMORY_BLOBS: usize = 1 << 19;

/// Where a blob is, as the in-memory index keeps it: the pack as a number into the pack names
/// and no second copy of the blob's id, so an indexed blob costs 56 bytes of map entry
/// instead of the 128 a [`BlobLocation`] would.
#[derive(Debug, Clone, Copy)]
struct Slot {
    offset: u64,
    pack: u32,
    length: u32,
    raw_length: u32,
    kind: BlobKind,
    condemned: bool,
}

impl From<&Record> for Slot {
    fn from(r: &Record) -> Self {
        Slot {
            offset: r.entry.offset,
            pack: r.pack,
            length: r.entry.length,
            raw_length: r.entry.raw_length,
            kind: r.entry.kind,
            condemned: r.condemned,
        }
    }
}

/// The blobs of an index: in memory, or sorted into a file.
#[derive(Debug)]
enum Blobs {
    Memory(HashMap<Id, Slot>),
    Sorted(SortedBlobs),
}

/// All known blobs. Made by an [`IndexBuilder`].
#[derive(Debug)]
pub struct Index {
    blobs: Blobs,
    /// Every pack a blob refers to (indexed or condemned), by number.
    pack_names: Vec<Id>,
    /// Indexed (not condemned) packs and how many blobs each lists.
    packs: HashMap<Id, usize>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            blobs: Blobs::Memory(HashMap::new()),
            pack_names: Vec::new(),
            packs: HashMap::new(),
        }
    }
}

impl Index {
    fn location(&self, record: &Record) -> BlobLocation {
        BlobLocation {
            pack: self.pack_names[record.pack as usize],
            entry: record.entry,
            condemned: record.condemned,
        }
    }

    /// The record of a blob. A read error of the sorted file is logged and the blob reported
    /// absent: a backup then stores it again, a restore fails naming it.
    fn record(&self, id: &Id) -> Option<Record> {
        match &self.blobs {
            Blobs::Memory(map) => map.get(id).map(|slot| Record {
                entry: BlobEntry {
                    id: *id,
                    kind: slot.kind,
                    offset: slot.offset,
                    length: slot.length,
                    raw_length: slot.raw_length,
                },
                pack: slot.pack,
                condemned: slot.condemned,
            }),
            Blobs::Sorted(sorted) => sorted.get(id).unwrap_or_else(|e| {
                error!(blob = %id, error = %e, "cannot read the index's sorted file in the spool directory");
                None
            }),
        }
    }

    /// Where a blob is.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.record(id).map(|r| self.location(&r))
    }

    /// Whether a blob of this kind is stored in a pack new backups may refer to.
    pub fn contains(&self, id: &Id, kind: BlobKind) -> bool {
        self.record(id).is_some_and(|r| r.entry.kind == kind && !r.condemned)
    }

    /// Names of all indexed packs (not the condemned ones).
    pub fn packs(&self) -> impl Iterator<Item = &Id> {
        self.packs.keys()
    }

    /// All blob locations (of a sorted index, in id order; a read error is logged and ends
    /// the listing).
    pub fn locations(&self) -> Box<dyn Iterator<Item = BlobLocation> + '_> {
        match &self.blobs {
            Blobs::Memory(map) => Box::new(map.keys().filter_map(|id| self.get(id))),
            Blobs::Sorted(sorted) => Box::new(sorted.iter().map_while(|r| match r {
                Ok(r) => Some(self.location(&r)),
                Err(e) => {
                    error!(error = %e, "cannot read the index's sorted file in the spool directory");
                    None
                }
            })),
        }
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        match &self.blobs {
            Blobs::Memory(map) => map.len(),
            Blobs::Sorted(sorted) => usize::try_from(sorted.blobs()).expect("fewer blobs than the address space"),
        }
    }

    /// Whether no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the blobs are in a sorted file rather than in memory.
    pub fn is_sorted_file(&self) -> bool {
        matches!(self.blobs, Blobs::Sorted(_))
    }
}

/// Gathers the packs of index files and prune markers into an [`Index`], in memory up to
/// [`MEMORY_BLOBS`] blobs and sorted into files in a spool directory beyond.
pub struct IndexBuilder {
    sorter: Sorter,
    pack_names: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    packs: HashMap<Id, usize>,
}

impl IndexBuilder {
    /// A builder whose files (if the index outgrows memory) go to `spool_dir`.
    pub fn new(spool_dir: &Path) -> Self {
        Self::with_memory_blobs(spool_dir, MEMORY_BLOBS)
    }

    /// A builder that keeps at most `memory_blobs` blobs in memory.
    pub fn with_memory_blobs(spool_dir: &Path, memory_blobs: usize) -> Self {
        Self {
            sorter: Sorter::new(spool_dir, memory_blobs),
            pack_names: Vec::new(),
            pack_numbers: HashMap::new(),
            packs: HashMap::new(),
        }
    }

    /// Adds a pack's blobs (a blob already known keeps its first location).
    pub fn add_pack(&mut self, pack: &IndexPack) -> std::io::Result<()> {
        *self.packs.entry(pack.id).or_default() += pack.blobs.len();
        self.add_blobs(pack, false)
    }

    /// Adds the blobs of a pack condemned by prune, for reading only, where no indexed
    /// pack has them (a backup that started before the mark may refer to them). Call after
    /// every [`IndexBuilder::add_pack`].
    pub fn add_condemned_pack(&mut self, pack: &IndexPack) -> std::io::Result<()> {
        self.add_blobs(pack, true)
    }

    fn add_blobs(&mut self, pack: &IndexPack, condemned: bool) -> std::io::Result<()> {
        let number = match self.pack_numbers.get(&pack.id) {
            Some(&number) => number,
            None => {
                let number = u32::try_from(self.pack_names.len()).expect("fewer than 2^32 packs");
                self.pack_names.push(pack.id);
                self.pack_numbers.insert(pack.id, number);
                number
            }
        };
        for entry in &pack.blobs {
            self.sorter.push(Record {
                entry: *entry,
                pack: number,
                condemned,
            })?;
        }
        Ok(())
    }

    /// The index: in memory if every blob fit, else merged into one sorted file.
    pub fn finish(self) -> std::io::Result<Index> {
        let blobs = if self.sorter.in_memory() {
            let records = self.sorter.into_buffer();
            let mut map = HashMap::with_capacity(records.len());
            for record in &records {
                map.entry(record.entry.id).or_insert_with(|| Slot::from(record));
            }
            Blobs::Memory(map)
        } else {
            Blobs::Sorted(self.sorter.finish()?)
        };
        Ok(Index {
            blobs,
            pack_names: self.pack_names,
            packs: self.packs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(name: u8, blobs: std::ops::Range<u8>) -> IndexPack {
        IndexPack {
            id: Id([name; 32]),
            blobs: blobs
                .map(|b| BlobEntry {
                    id: Id(*blake3::hash(&[b]).as_bytes()),
                    kind: if b % 2 == 0 { BlobKind::Data } else { BlobKind::Tree },
                    offset: u64::from(b) * 100,
                    length: 10 + u32::from(b),
                    raw_length: 20 + u32::from(b),
                })
                .collect(),
        }
    }

    /// The same packs, in memory and sorted into a file, answer the same.
    #[test]
    fn a_sorted_index_answers_like_the_in_memory_one() {
        let dir = tempfile::tempdir().unwrap();
        let build = |memory_blobs| {
            let mut builder = IndexBuilder::with_memory_blobs(dir.path(), memory_blobs);
            builder.add_pack(&pack(1, 0..100)).unwrap();
            builder.add_pack(&pack(2, 50..150)).unwrap();
            builder.add_condemned_pack(&pack(3, 140..200)).unwrap();
            builder.finish().unwrap()
        };
        let (memory, sorted) = (build(MEMORY_BLOBS), build(16));
        assert!(!memory.is_sorted_file() && sorted.is_sorted_file());
        for index in [&memory, &sorted] {
            assert_eq!(index.len(), 200);
            assert_eq!(index.packs().count(), 2, "condemned packs are not indexed packs");
            let mut locations: Vec<_> = index.locations().collect();
            locations.sort_by_key(|l| l.entry.id);
            assert_eq!(locations.len(), 200);
        }
        for b in 0..=255u8 {
            let id = Id(*blake3::hash(&[b]).as_bytes());
            assert_eq!(memory.get(&id), sorted.get(&id), "blob {b}");
            for kind in [BlobKind::Data, BlobKind::Tree] {
                assert_eq!(memory.contains(&id, kind), sorted.contains(&id, kind), "blob {b}");
            }
        }
        let at = |b: u8| sorted.get(&Id(*blake3::hash(&[b]).as_bytes())).unwrap();
        assert_eq!(at(60).pack, Id([1; 32]), "the first listing wins");
        assert_eq!(at(145).pack, Id([2; 32]), "an indexed pack wins over a condemned one");
        assert!(at(170).condemned);
        assert!(!sorted.contains(&Id(*blake3::hash(&[170]).as_bytes()), BlobKind::Data));
        assert_eq!(sorted.get(&Id(*blake3::hash(&[200]).as_bytes())), None);
    }

    /// A backup deduplicates against, and a restore reads through, an index sorted into a
    /// file as they do with one in memory.
    #[test]
    fn backups_and_restores_work_through_a_sorted_index() {
        use crate::archiver::{BackupOptions, backup_tree};
        use crate::backup_lock::BackupLock;
        use crate::restorer::{RestoreOptions, restore_tree};

        let source = tempfile::tempdir().unwrap();
        for i in 0..200u32 {
            let text: String = (0..400).map(|n| format!("file {i} line {n}\n")).collect();
            std::fs::write(source.path().join(format!("f{i}")), text).unwrap();
        }
        let (repo, backend) = crate::repository::in_memory();
        let first = {
            let lock = BackupLock::acquire(&repo).unwrap();
            let repo = repo.load_index().unwrap();
            backup_tree(
                &repo,
                &lock,
                source.path(),
                &BackupOptions::default(),
                Default::default(),
            )
            .unwrap()
        };
        let open = || crate::repository::Repository::open(backend.clone(), b"unit-test password").unwrap();
        let sorted = open().load_index_within(8).unwrap();
        assert!(sorted.index().is_sorted_file());
        assert!(sorted.index().len() > 200, "{} blobs", sorted.index().len());
        let lock = BackupLock::acquire(&open()).unwrap();
        let options = BackupOptions {
            force: true, // read every file again: only the index can tell it is stored
            ..BackupOptions::default()
        };
        let (_, again) = backup_tree(&sorted, &lock, source.path(), &options, Default::default()).unwrap();
        assert_eq!(again.stats.new_bytes, 0, "every chunk found in the sorted index");
        assert_eq!(again.stats.packs, 0);
        drop(lock);

        let target = tempfile::tempdir().unwrap();
        let (id, snapshot) = first;
        let report = restore_tree(
            &sorted,
            &snapshot,
            &id,
            target.path(),
            &RestoreOptions::default(),
            Default::default(),
        )
        .unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.files, 200);
        for i in [0, 77, 199] {
            let name = format!("f{i}");
            assert_eq!(
                std::fs::read(target.path().join(&name)).unwrap(),
                std::fs::read(source.path().join(&name)).unwrap()
            );
        }
    }
}
