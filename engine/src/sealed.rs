//! Sealed metadata documents, the files of `index/`, `snapshots/` and `prune/`: JSON,
//! compressed, sealed with the repository's keys and named by the hash of the sealed bytes
//! (see FORMAT.md). This is the one place that makes and stores them ([`write`]: the repository,
//! the packer's index files and backup locks); `repository` reads them.

use serde::Serialize;

use crate::backend::{Backend, BackendError, FileKind};
use crate::codec::{self, CodecError};
use crate::crypto::{CryptoError, Keys};
use crate::id::Id;

/// zstd level of metadata documents.
const LEVEL: i32 = 3;

/// Why a document could not be sealed (a bug or a broken environment, never the user's input).
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The document did not serialize to JSON.
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
    /// Compressing failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Encrypting failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Why a sealed document was not stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// It could not be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The storage failed to store the file named `id`.
    #[error("{id}: {source}")]
    Backend {
        /// The file's name.
        id: Id,
        /// Why.
        source: BackendError,
    },
}

/// Seals `value` and stores it as a `kind` file named by the hash of the sealed bytes.
pub fn write<T: Serialize>(
    backend: &dyn Backend,
    keys: &Keys,
    kind: FileKind,
    aad: &[u8],
    value: &T,
) -> Result<Id, WriteError> {
    let (id, sealed) = seal(keys, aad, value)?;
    backend
        .write(kind, &id.to_hex(), &sealed)
        .map_err(|source| WriteError::Backend { id, source })?;
    Ok(id)
}

/// `value` as a sealed document, and its name.
pub fn seal<T: Serialize>(keys: &Keys, aad: &[u8], value: &T) -> Result<(Id, Vec<u8>), SealError> {
    let json = serde_json::to_vec(value)?;
    let encoded = codec::encode(LEVEL, &json)?;
    let sealed = keys.seal(aad, &encoded)?;
    Ok((Id::of_file(&sealed), sealed))
}
