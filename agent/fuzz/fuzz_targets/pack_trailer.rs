//! Pack footer and trailer: the stored tail of a pack, and an opened trailer plaintext.
#![no_main]

use hort_engine::pack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = hort_agent_fuzz::keys();
    let _ = pack::trailer_length(data);
    let _ = pack::parse_trailer(&keys, data, Some(data.len() as u64));
    let _ = pack::parse_trailer(&keys, data, None);
    // The bytes as an authentic trailer plaintext, in packs of several sizes.
    let len = data.len() as u64;
    for pack_len in [None, Some(len), Some(len.saturating_mul(1 << 20)), Some(u64::MAX)] {
        let _ = pack::decode_trailer(data, len, pack_len);
    }
});
