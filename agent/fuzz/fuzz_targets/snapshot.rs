//! Snapshot manifests: sealed JSON.
#![no_main]

use hort_engine::snapshot::{self, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(snapshot) = hort_agent_fuzz::sealed_document::<Snapshot>(snapshot::AAD, data) {
        let _ = snapshot.streams.iter().map(|s| s.content.len()).sum::<usize>();
    }
});
