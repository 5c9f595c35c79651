//! Sealed metadata documents, the files of `index/`, `snapshots/` and `prune/`: JSON,
//! compressed, sealed with the repository's keys and named by the hash of the sealed bytes
//! (see FORMAT.md). This is the one place that makes them; `repository` reads them.

use serde::Serialize;

use crate::codec;
use crate::crypto::Keys;
use crate::id::Id;

/// zstd level of metadata documents.
const LEVEL: i32 = 3;

/// `value` as a sealed document, and its name; the error says what failed.
pub fn seal<T: Serialize>(keys: &Keys, aad: &[u8], value: &T) -> Result<(Id, Vec<u8>), String> {
    let json = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    let encoded = codec::encode(LEVEL, &json).map_err(|e| e.to_string())?;
    let sealed = keys.seal(aad, &encoded).map_err(|e| e.to_string())?;
    Ok((Id::of_file(&sealed), sealed))
}
