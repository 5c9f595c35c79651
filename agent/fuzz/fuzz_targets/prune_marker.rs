//! Prune markers: sealed JSON listing condemned packs.
#![no_main]

use hort_engine::prune::{self, PruneMarker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hort_agent_fuzz::sealed_document::<PruneMarker>(prune::AAD, data);
});
