//! Blob decryption and decoding: `kind byte ‖ raw_length (u32 LE) ‖ bytes`, where the bytes
//! are tried as a sealed blob and as an opened one (codec byte, raw or zstd body).
#![no_main]

use hort_engine::pack::{self, BlobEntry, BlobKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Some((raw_length, body)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let keys = hort_agent_fuzz::keys();
    let kind = if kind & 1 == 0 { BlobKind::Data } else { BlobKind::Tree };
    let raw_length = u32::from_le_bytes(*raw_length);
    // Ids: of the body itself, and of the body without its codec byte (an authentic raw blob).
    let ids = [keys.blob_id(body), keys.blob_id(body.get(1..).unwrap_or_default())];
    for id in ids {
        let entry = BlobEntry {
            id,
            kind,
            offset: 0,
            length: body.len() as u32,
            raw_length,
        };
        let _ = pack::open_blob(&keys, &entry, body);
        if let Ok(plain) = pack::decode_blob(&keys, &entry, body.to_vec()) {
            assert_eq!(keys.blob_id(&plain), id, "a decoded blob always matches its id");
            assert_eq!(plain.len(), raw_length as usize);
        }
    }
});
