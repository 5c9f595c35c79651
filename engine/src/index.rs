//! The index: which pack holds each blob. Stored as append-only, sealed index files; loaded
//! into one in-memory map.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::pack::{BlobEntry, BlobKind};

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

/// Where a blob is, as the index keeps it: the pack as a number into [`Index::pack_names`]
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

/// All known blobs.
#[derive(Debug, Default)]
pub struct Index {
    blobs: HashMap<Id, Slot>,
    /// Every pack a blob refers to (indexed or condemned), by number.
    pack_names: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    /// Indexed (not condemned) packs and how many blobs each lists.
    packs: HashMap<Id, usize>,
}

impl Index {
    /// Adds a pack's blobs (a blob already known keeps its first location).
    pub fn add_pack(&mut self, pack: &IndexPack) {
        *self.packs.entry(pack.id).or_default() += pack.blobs.len();
        self.add_blobs(pack, false);
    }

    /// Adds the blobs of a pack condemned by prune, for reading only, where no indexed
    /// pack has them (a backup that started before the mark may refer to them).
    pub fn add_condemned_pack(&mut self, pack: &IndexPack) {
        self.add_blobs(pack, true);
    }

    fn add_blobs(&mut self, pack: &IndexPack, condemned: bool) {
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
            self.blobs.entry(entry.id).or_insert(Slot {
                offset: entry.offset,
                pack: number,
                length: entry.length,
                raw_length: entry.raw_length,
                kind: entry.kind,
                condemned,
            });
        }
    }

    fn location(&self, id: &Id, slot: &Slot) -> BlobLocation {
        BlobLocation {
            pack: self.pack_names[slot.pack as usize],
            entry: BlobEntry {
                id: *id,
                kind: slot.kind,
                offset: slot.offset,
                length: slot.length,
                raw_length: slot.raw_length,
            },
            condemned: slot.condemned,
        }
    }

    /// Where a blob is.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.blobs.get(id).map(|slot| self.location(id, slot))
    }

    /// Whether a blob of this kind is stored in a pack new backups may refer to.
    pub fn contains(&self, id: &Id, kind: BlobKind) -> bool {
        self.blobs.get(id).is_some_and(|s| s.kind == kind && !s.condemned)
    }

    /// Names of all indexed packs (not the condemned ones).
    pub fn packs(&self) -> impl Iterator<Item = &Id> {
        self.packs.keys()
    }

    /// All blob locations.
    pub fn locations(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.blobs.iter().map(|(id, slot)| self.location(id, slot))
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}
