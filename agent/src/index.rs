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
pub struct Location {
    /// Pack name.
    pub pack: Id,
    /// Offset, lengths, kind.
    pub entry: BlobEntry,
    /// The pack is condemned by a prune run: readable, but new backups must not use it.
    pub condemned: bool,
}

/// All known blobs.
#[derive(Debug, Default)]
pub struct Index {
    blobs: HashMap<Id, Location>,
    packs: HashMap<Id, usize>,
}

impl Index {
    /// Adds a pack's blobs (a blob already known keeps its first location).
    pub fn add_pack(&mut self, pack: &IndexPack) {
        *self.packs.entry(pack.id).or_default() += pack.blobs.len();
        for entry in &pack.blobs {
            self.blobs.entry(entry.id).or_insert(Location {
                pack: pack.id,
                entry: *entry,
                condemned: false,
            });
        }
    }

    /// Adds the blobs of a pack condemned by prune, for reading only, where no indexed
    /// pack has them (a backup that started before the mark may refer to them).
    pub fn add_condemned_pack(&mut self, pack: &IndexPack) {
        for entry in &pack.blobs {
            self.blobs.entry(entry.id).or_insert(Location {
                pack: pack.id,
                entry: *entry,
                condemned: true,
            });
        }
    }

    /// Where a blob is.
    pub fn get(&self, id: &Id) -> Option<&Location> {
        self.blobs.get(id)
    }

    /// Whether a blob of this kind is stored in a pack new backups may refer to.
    pub fn contains(&self, id: &Id, kind: BlobKind) -> bool {
        self.blobs.get(id).is_some_and(|l| l.entry.kind == kind && !l.condemned)
    }

    /// Names of all indexed packs (not the condemned ones).
    pub fn packs(&self) -> impl Iterator<Item = &Id> {
        self.packs.keys()
    }

    /// All blob locations.
    pub fn locations(&self) -> impl Iterator<Item = &Location> {
        self.blobs.values()
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
