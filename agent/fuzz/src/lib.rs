//! Helpers shared by the fuzz targets: the fixed test key and the two ways every sealed
//! document is fed to its parser.

use hort_engine::crypto::{Keys, MASTER_KEY_LEN};
use hort_engine::repository::open_sealed;
use serde::de::DeserializeOwned;

/// The keys every target uses (a fixed master key: the fuzzer explores the formats, not the
/// cipher).
pub fn keys() -> Keys {
    Keys::derive(&[7u8; MASTER_KEY_LEN])
}

/// Feeds `data` to the sealed-document parser twice: as the stored file (nonce, ciphertext,
/// tag: almost always an authentication failure, which must be an error, not a panic), and
/// sealed with the right key and `aad` so that the codec byte, zstd and the JSON parser see
/// the fuzzer's bytes as an authentic plaintext. Returns the parsed document, if any.
pub fn sealed_document<T: DeserializeOwned>(aad: &[u8], data: &[u8]) -> Option<T> {
    let keys = keys();
    let _ = open_sealed::<T>(&keys, aad, data, "fuzz input");
    let sealed = keys.seal(aad, data).ok()?;
    open_sealed::<T>(&keys, aad, &sealed, "fuzz input").ok()
}
