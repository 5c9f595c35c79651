//! Authenticated encryption of every stored object and the keys derived from the master key.
//!
//! Sealed form: `nonce (24 bytes) ‖ ciphertext ‖ Poly1305 tag (16 bytes)`, XChaCha20-Poly1305
//! with a fresh random nonce per object and a caller-chosen associated data string that binds
//! the object to its role (and, for blobs, to the blob id). See `FORMAT.md`, "Encryption".

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::id::Id;

/// Bytes added to every sealed object: nonce plus tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 24;
/// Bytes to leave in front of a plaintext for [`seal_in_place`] (the nonce's place).
pub const NONCE_PREFIX: usize = NONCE_LEN;
const TAG_LEN: usize = 16;

/// Length of the random master key stored (wrapped) in key files.
pub const MASTER_KEY_LEN: usize = 64;

/// Errors of sealing and opening objects.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The object is shorter than a nonce and a tag.
    #[error("sealed object too short ({len} bytes)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// The tag does not match: wrong key, or the bytes were changed.
    #[error("authentication failed (data corrupted or wrong key)")]
    Authentication,
    /// The system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
}

/// Fills `buf` with random bytes from the operating system.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

/// Seals `plaintext` under `key` with associated data `aad`.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), aad, (&mut out[NONCE_LEN..]).into())
        .map_err(|_| CryptoError::Authentication)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Seals in place: `buf` holds [`NONCE_PREFIX`] placeholder bytes followed by the plaintext;
/// on return it holds the sealed object (random nonce, ciphertext, tag), the same bytes
/// [`seal`] produces, without copying the plaintext.
pub fn seal_in_place(key: &[u8; 32], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
    if buf.len() < NONCE_LEN {
        return Err(CryptoError::Truncated { len: buf.len() });
    }
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), aad, (&mut buf[NONCE_LEN..]).into())
        .map_err(|_| CryptoError::Authentication)?;
    buf.extend_from_slice(&tag);
    Ok(())
}

/// Opens an object sealed by [`seal`], checking the tag against `aad`.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Truncated { len: sealed.len() });
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Authentication)?;
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| CryptoError::Authentication)?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let mut out = ciphertext.to_vec();
    cipher
        .decrypt_inout_detached(&XNonce::from(nonce), aad, out.as_mut_slice().into(), &Tag::from(tag))
        .map_err(|_| CryptoError::Authentication)?;
    Ok(out)
}

/// The keys of one repository, all derived from its random master key.
#[derive(Clone)]
pub struct Keys {
    encryption: [u8; 32],
    chunk_id: [u8; 32],
    chunker_seed: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Derives the keys from a master key (BLAKE3 `derive_key` with fixed contexts).
    pub fn derive(master: &[u8; MASTER_KEY_LEN]) -> Self {
        let seed = blake3::derive_key("hort v1 2026-11 chunker seed", master);
        let mut seed_bytes = [0u8; 8];
        seed_bytes.copy_from_slice(&seed[..8]);
        Self {
            encryption: blake3::derive_key("hort v1 2026-11 encryption key", master),
            chunk_id: blake3::derive_key("hort v1 2026-11 chunk id key", master),
            chunker_seed: u64::from_le_bytes(seed_bytes),
        }
    }

    /// The id of a blob: keyed BLAKE3 of its plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.chunk_id, plaintext).as_bytes())
    }

    /// The seed of the chunker's gear table, so chunk boundaries do not reveal content.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Seals an object with the repository's encryption key.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal(&self.encryption, aad, plaintext)
    }

    /// Seals in place with the repository's encryption key (see [`seal_in_place`]).
    pub fn seal_in_place(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        seal_in_place(&self.encryption, aad, buf)
    }

    /// Opens an object sealed with the repository's encryption key.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.encryption, aad, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(open(&key, b"aad", &sealed).unwrap(), b"hello");
        assert!(matches!(
            open(&key, b"other", &sealed),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            open(&[8u8; 32], b"aad", &sealed),
            Err(CryptoError::Authentication)
        ));
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(matches!(open(&key, b"aad", &flipped), Err(CryptoError::Authentication)));
        assert!(matches!(
            open(&key, b"aad", &sealed[..10]),
            Err(CryptoError::Truncated { .. })
        ));
        let mut in_place = vec![0u8; NONCE_PREFIX];
        in_place.extend_from_slice(b"hello");
        seal_in_place(&key, b"aad", &mut in_place).unwrap();
        assert_eq!(in_place.len(), sealed.len());
        assert_eq!(open(&key, b"aad", &in_place).unwrap(), b"hello");
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = Keys::derive(&[1u8; MASTER_KEY_LEN]);
        let b = Keys::derive(&[2u8; MASTER_KEY_LEN]);
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
    }
}
