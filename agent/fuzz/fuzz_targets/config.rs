//! The repository config: sealed JSON and its chunker parameter checks.
#![no_main]

use hort_engine::config::{self, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(config) = hort_agent_fuzz::sealed_document::<Config>(config::AAD, data) {
        let _ = config.chunker_files.validate();
        let _ = config.chunker_streams.validate();
    }
});
