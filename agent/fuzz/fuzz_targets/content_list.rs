//! Content-list blobs (snapshot version 2): concatenated 32-byte blob ids.
#![no_main]

use hort_engine::snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ids) = snapshot::decode_content_list(data) {
        assert_eq!(snapshot::encode_content_list(&ids), data, "a list re-encodes to its bytes");
        let runs = snapshot::split_content(&ids);
        assert_eq!(runs.concat(), ids, "the lists of a stream cover its blobs in order");
    }
});
