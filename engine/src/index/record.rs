//! One indexed blob as a fixed-size record, the unit of the sorted index file
//! ([`super::sorted`]): the blob's id, where it lies and whether its pack is condemned.

use crate::id::Id;
use crate::pack::{BlobEntry, BlobKind};

/// Bytes of one encoded record.
pub const SIZE: usize = 56;

/// One blob: its entry and its pack as a number into the index's pack names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Where the blob lies in its pack.
    pub entry: BlobEntry,
    /// The pack, as a number into the index's pack names.
    pub pack: u32,
    /// The pack is condemned by a prune run.
    pub condemned: bool,
}

impl Record {
    /// The record as bytes: id (32), offset (8), pack (4), length (4), raw length (4), kind
    /// (1), condemned (1), two zero bytes; numbers little-endian.
    pub fn encode(&self) -> [u8; SIZE] {
        let mut out = [0u8; SIZE];
        out[..32].copy_from_slice(&self.entry.id.0);
        out[32..40].copy_from_slice(&self.entry.offset.to_le_bytes());
        out[40..44].copy_from_slice(&self.pack.to_le_bytes());
        out[44..48].copy_from_slice(&self.entry.length.to_le_bytes());
        out[48..52].copy_from_slice(&self.entry.raw_length.to_le_bytes());
        out[52] = match self.entry.kind {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        };
        out[53] = u8::from(self.condemned);
        out
    }

    /// A record from the bytes [`Record::encode`] wrote.
    pub fn decode(bytes: &[u8; SIZE]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        Self {
            entry: BlobEntry {
                id: Self::id_of(bytes),
                kind: if bytes[52] == 1 { BlobKind::Tree } else { BlobKind::Data },
                offset: u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")),
                length: u32_at(44),
                raw_length: u32_at(48),
            },
            pack: u32_at(40),
            condemned: bytes[53] == 1,
        }
    }

    /// The id of an encoded record.
    pub fn id_of(bytes: &[u8]) -> Id {
        Id(bytes[..32].try_into().expect("a record starts with 32 bytes of id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_encoding() {
        for (kind, condemned) in [(BlobKind::Data, false), (BlobKind::Tree, true)] {
            let record = Record {
                entry: BlobEntry {
                    id: Id([7; 32]),
                    kind,
                    offset: u64::MAX - 3,
                    length: 123_456,
                    raw_length: u32::MAX,
                },
                pack: 99_999,
                condemned,
            };
            assert_eq!(Record::decode(&record.encode()), record);
        }
    }
}
