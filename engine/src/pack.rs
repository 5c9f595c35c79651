//! Pack files: sealed blobs back to back, then a sealed trailer listing them, so the index
//! can be rebuilt from the packs alone.
//!
//! Layout: `blob_0 ‖ … ‖ blob_n-1 ‖ sealed trailer ‖ trailer length (u32 LE) ‖ "HPK1"`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::codec::{self, CodecError};
use crate::crypto::{CryptoError, Keys};
use crate::id::Id;
use crate::spool::{SpoolError, SpoolFile, SpoolWriter};

/// Magic bytes at the very end of every pack.
pub const MAGIC: &[u8; 4] = b"HPK1";
/// Associated data of a pack's sealed trailer.
const TRAILER_AAD: &[u8] = b"hort.v1.pack-trailer";
/// Length of the fixed footer: trailer length and magic.
pub const FOOTER_LEN: u64 = 8;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// File or stream content.
    Data,
    /// A serialized directory listing ([`crate::tree::Tree`]).
    Tree,
}

impl BlobKind {
    fn tag(self) -> u8 {
        match self {
            BlobKind::Data => b'd',
            BlobKind::Tree => b't',
        }
    }
}

/// Where a blob lies in its pack: one entry of a trailer or an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// Keyed BLAKE3 of the plaintext.
    pub id: Id,
    /// Data or tree.
    pub kind: BlobKind,
    /// Offset of the sealed blob in the pack.
    pub offset: u64,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    version: u32,
    blobs: Vec<BlobEntry>,
}

/// Why a blob or a pack trailer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Authentication failed: the bytes were changed, or belong to another blob or key.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// The decrypted plaintext could not be decompressed.
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// The plaintext does not hash to the blob's id.
    #[error("content does not match its id")]
    HashMismatch,
    /// The pack's footer or trailer is malformed.
    #[error("malformed pack trailer: {0}")]
    Trailer(String),
    /// A pack could not be written to its spool file.
    #[error("{0}")]
    Spool(#[from] SpoolError),
}

fn blob_aad(kind: BlobKind, id: &Id) -> Vec<u8> {
    let mut aad = Vec::with_capacity(13 + 1 + 32);
    aad.extend_from_slice(b"hort.v1.blob");
    aad.push(kind.tag());
    aad.extend_from_slice(&id.0);
    aad
}

/// Compresses (at `level`) and seals a blob, binding its kind and id.
pub fn seal_blob(keys: &Keys, kind: BlobKind, id: &Id, plaintext: &[u8], level: i32) -> Result<Vec<u8>, BlobError> {
    let mut sealed = Vec::with_capacity(crate::crypto::SEAL_OVERHEAD + 1 + plaintext.len());
    seal_blob_into(keys, kind, id, plaintext, level, &mut sealed)?;
    Ok(sealed)
}

/// Like [`seal_blob`], into `sealed` (cleared first), so a pipeline can reuse its buffers.
pub fn seal_blob_into(
    keys: &Keys,
    kind: BlobKind,
    id: &Id,
    plaintext: &[u8],
    level: i32,
    sealed: &mut Vec<u8>,
) -> Result<(), BlobError> {
    // One buffer: nonce placeholder, codec byte and body, sealed in place, then the tag.
    sealed.clear();
    sealed.resize(crate::crypto::NONCE_PREFIX, 0);
    codec::encode_into(level, plaintext, sealed)?;
    keys.seal_in_place(&blob_aad(kind, id), sealed)?;
    Ok(())
}

/// Opens a sealed blob and checks that its plaintext hashes to its id.
pub fn open_blob(keys: &Keys, entry: &BlobEntry, sealed: &[u8]) -> Result<Vec<u8>, BlobError> {
    let encoded = keys.open(&blob_aad(entry.kind, &entry.id), sealed)?;
    decode_blob(keys, entry, encoded)
}

/// Decodes an opened blob (`encoded`: codec byte and body) to at most `entry.raw_length`
/// bytes and checks that the plaintext hashes to `entry.id` and has exactly that length.
/// Never panics, whatever the bytes; this is the entry point the fuzz target `blob` drives.
pub fn decode_blob(keys: &Keys, entry: &BlobEntry, encoded: Vec<u8>) -> Result<Vec<u8>, BlobError> {
    let plaintext = codec::decode(encoded, Some(entry.raw_length as usize))?;
    if plaintext.len() != entry.raw_length as usize || keys.blob_id(&plaintext) != entry.id {
        return Err(BlobError::HashMismatch);
    }
    Ok(plaintext)
}

/// Seals a trailer listing `blobs` and appends the footer: the bytes that end a pack.
fn trailer_and_footer(keys: &Keys, blobs: &[BlobEntry]) -> Result<Vec<u8>, BlobError> {
    let trailer = serde_json::to_vec(&Trailer {
        version: 1,
        blobs: blobs.to_vec(),
    })
    .map_err(|e| BlobError::Trailer(e.to_string()))?;
    let mut end = keys.seal(TRAILER_AAD, &codec::encode(3, &trailer)?)?;
    let length = u32::try_from(end.len()).unwrap_or(u32::MAX);
    end.extend_from_slice(&length.to_le_bytes());
    end.extend_from_slice(MAGIC);
    Ok(end)
}

fn entry(id: Id, kind: BlobKind, raw_length: u32, offset: u64, sealed: &[u8]) -> BlobEntry {
    BlobEntry {
        id,
        kind,
        offset,
        length: u32::try_from(sealed.len()).unwrap_or(u32::MAX),
        raw_length,
    }
}

/// Accumulates sealed blobs into one pack in memory.
#[derive(Default)]
pub struct PackBuilder {
    data: Vec<u8>,
    blobs: Vec<BlobEntry>,
}

/// A finished pack in memory, ready to upload.
pub struct FinishedPack {
    /// The pack's name: plain BLAKE3 of `data`.
    pub id: Id,
    /// The whole file.
    pub data: Vec<u8>,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

impl PackBuilder {
    /// Appends a sealed blob.
    pub fn add(&mut self, id: Id, kind: BlobKind, raw_length: u32, sealed: &[u8]) {
        self.blobs
            .push(entry(id, kind, raw_length, self.data.len() as u64, sealed));
        self.data.extend_from_slice(sealed);
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Writes the trailer and footer.
    pub fn finish(mut self, keys: &Keys) -> Result<FinishedPack, BlobError> {
        let end = trailer_and_footer(keys, &self.blobs)?;
        self.data.extend_from_slice(&end);
        Ok(FinishedPack {
            id: Id::of_file(&self.data),
            data: self.data,
            blobs: self.blobs,
        })
    }
}

/// Accumulates sealed blobs into one pack in a spool file on disk, so a pack being filled
/// costs no memory beyond a small write buffer.
pub struct PackWriter {
    spool: SpoolWriter,
    blobs: Vec<BlobEntry>,
}

/// A finished pack in a spool file, ready to upload.
pub struct SpooledPack {
    /// The pack's name: plain BLAKE3 of the file.
    pub id: Id,
    /// The whole file (deleted when dropped).
    pub file: SpoolFile,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

impl PackWriter {
    /// Starts a pack in a new spool file in `dir`.
    pub fn create(dir: &Path) -> Result<Self, SpoolError> {
        Ok(Self {
            spool: SpoolWriter::create(dir)?,
            blobs: Vec::new(),
        })
    }

    /// Appends a sealed blob.
    pub fn add(&mut self, id: Id, kind: BlobKind, raw_length: u32, sealed: &[u8]) -> Result<(), SpoolError> {
        let offset = self.spool.written();
        self.spool.write(sealed)?;
        self.blobs.push(entry(id, kind, raw_length, offset, sealed));
        Ok(())
    }

    /// Bytes of blobs so far.
    pub fn written(&self) -> u64 {
        self.spool.written()
    }

    /// Writes the trailer and footer.
    pub fn finish(mut self, keys: &Keys) -> Result<SpooledPack, BlobError> {
        let end = trailer_and_footer(keys, &self.blobs)?;
        self.spool.write(&end)?;
        let (id, file) = self.spool.finish()?;
        Ok(SpooledPack {
            id,
            file,
            blobs: self.blobs,
        })
    }
}

/// The file kind a pack of `blobs` is written as: [`FileKind::TreePack`] when it holds tree
/// blobs (kept out of archive storage classes), else [`FileKind::Pack`].
pub fn file_kind(blobs: &[BlobEntry]) -> FileKind {
    if blobs.iter().any(|b| b.kind == BlobKind::Tree) {
        FileKind::TreePack
    } else {
        FileKind::Pack
    }
}

/// The file kind of the whole pack `data`, as [`file_kind`] chose it when the pack was
/// written; a pack whose trailer cannot be read counts as a [`FileKind::TreePack`], which no
/// storage class archives, so a copy never makes trees unreadable.
pub fn kind_of_pack(keys: &Keys, data: &[u8]) -> FileKind {
    match parse_trailer(keys, data, Some(data.len() as u64)) {
        Ok(blobs) => file_kind(&blobs),
        Err(_) => FileKind::TreePack,
    }
}

/// Reads the trailer length from a pack's last bytes (`tail`, at least the footer).
pub fn trailer_length(tail: &[u8]) -> Result<u64, BlobError> {
    if tail.len() < FOOTER_LEN as usize || &tail[tail.len() - 4..] != MAGIC {
        return Err(BlobError::Trailer(
            "missing pack magic (truncated or not a pack)".into(),
        ));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&tail[tail.len() - 8..tail.len() - 4]);
    Ok(u64::from(u32::from_le_bytes(len)))
}

/// Parses the trailer from a pack's tail holding at least the sealed trailer and the footer.
/// `pack_len`, when known, bounds the blob entries.
pub fn parse_trailer(keys: &Keys, tail: &[u8], pack_len: Option<u64>) -> Result<Vec<BlobEntry>, BlobError> {
    let length = trailer_length(tail)?;
    let end = tail.len() as u64 - FOOTER_LEN;
    if length > end {
        return Err(BlobError::Trailer(format!(
            "trailer length {length} exceeds the data read"
        )));
    }
    let sealed = &tail[(end - length) as usize..end as usize];
    decode_trailer(&keys.open(TRAILER_AAD, sealed)?, length, pack_len)
}

/// Parses an opened trailer (`plaintext`: codec byte and body) of a trailer that was
/// `sealed_length` bytes long in a pack of `pack_len` bytes (if known): decompresses it,
/// parses the JSON and checks that every blob lies inside the pack's blob area. Never
/// panics, whatever the bytes; this is the entry point the fuzz target `pack_trailer` drives.
pub fn decode_trailer(
    plaintext: &[u8],
    sealed_length: u64,
    pack_len: Option<u64>,
) -> Result<Vec<BlobEntry>, BlobError> {
    let json = codec::decode(plaintext.to_vec(), None)?;
    let trailer: Trailer = serde_json::from_slice(&json).map_err(|e| BlobError::Trailer(e.to_string()))?;
    if trailer.version != 1 {
        return Err(BlobError::Trailer(format!(
            "unsupported trailer version {}",
            trailer.version
        )));
    }
    if let Some(pack_len) = pack_len {
        let blobs_end = pack_len.saturating_sub(sealed_length.saturating_add(FOOTER_LEN));
        let outside = |b: &BlobEntry| {
            b.offset
                .checked_add(u64::from(b.length))
                .is_none_or(|end| end > blobs_end)
        };
        if trailer.blobs.iter().any(outside) {
            return Err(BlobError::Trailer("a blob lies outside the pack".into()));
        }
    }
    Ok(trailer.blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_corruption() {
        let keys = Keys::derive(&[3u8; crate::crypto::MASTER_KEY_LEN]);
        let mut builder = PackBuilder::default();
        let contents: Vec<Vec<u8>> = vec![b"first".to_vec(), vec![b'x'; 5000], Vec::new()];
        for c in &contents {
            let id = keys.blob_id(c);
            builder.add(
                id,
                BlobKind::Data,
                c.len() as u32,
                &seal_blob(&keys, BlobKind::Data, &id, c, 3).unwrap(),
            );
        }
        let pack = builder.finish(&keys).unwrap();
        let entries = parse_trailer(&keys, &pack.data, Some(pack.data.len() as u64)).unwrap();
        assert_eq!(entries, pack.blobs);
        for (entry, content) in entries.iter().zip(&contents) {
            let sealed = &pack.data[entry.offset as usize..(entry.offset + u64::from(entry.length)) as usize];
            assert_eq!(&open_blob(&keys, entry, sealed).unwrap(), content);
            let mut flipped = sealed.to_vec();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 0x10;
            assert!(open_blob(&keys, entry, &flipped).is_err());
            let mut other = *entry;
            other.kind = BlobKind::Tree;
            assert!(open_blob(&keys, &other, sealed).is_err(), "kind is bound");
        }
        assert!(parse_trailer(&keys, &pack.data[..pack.data.len() - 1], None).is_err());
    }

    /// Damaged packs (flipped bits, truncation, garbage) never panic the parsers and never
    /// yield a blob whose content differs from what was stored.
    #[test]
    fn damaged_packs_never_yield_wrong_bytes() {
        let keys = Keys::derive(&[5u8; crate::crypto::MASTER_KEY_LEN]);
        let content = b"the quick brown fox jumps over the lazy dog".repeat(50);
        let id = keys.blob_id(&content);
        let mut builder = PackBuilder::default();
        builder.add(
            id,
            BlobKind::Data,
            content.len() as u32,
            &seal_blob(&keys, BlobKind::Data, &id, &content, 3).unwrap(),
        );
        let pack = builder.finish(&keys).unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut damaged = pack.data.clone();
            let at = (state % damaged.len() as u64) as usize;
            match round % 3 {
                0 => damaged[at] ^= 1 << (state % 8),
                1 => damaged.truncate(at),
                _ => damaged[at] = (state >> 32) as u8,
            }
            if let Ok(entries) = parse_trailer(&keys, &damaged, Some(damaged.len() as u64)) {
                for entry in entries {
                    let end = entry.offset as usize + entry.length as usize;
                    if let Some(sealed) = damaged.get(entry.offset as usize..end)
                        && let Ok(plain) = open_blob(&keys, &entry, sealed)
                    {
                        assert_eq!(plain, content, "round {round}");
                    }
                }
            }
            let _ = trailer_length(&damaged);
        }
    }
}
