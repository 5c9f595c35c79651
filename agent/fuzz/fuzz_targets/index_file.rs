//! Index files: sealed JSON, then loaded into the in-memory index.
#![no_main]

use hort_engine::index::{self, Index, IndexFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(file) = hort_agent_fuzz::sealed_document::<IndexFile>(index::AAD, data) {
        let mut index = Index::default();
        for pack in &file.packs {
            index.add_pack(pack);
            index.add_condemned_pack(pack);
        }
        let _ = index.locations().count();
    }
});
