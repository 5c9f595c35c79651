//! Key files: plain JSON with Argon2 parameters, and unwrapping the master key.
#![no_main]

use hort_engine::keyfile::KeyFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = KeyFile::parse(data) {
        // Unwrap only with cheap costs: the fuzzer explores the format, not Argon2's speed.
        if file.params.memory_kib <= 256 && file.params.iterations <= 2 && file.params.parallelism <= 2 {
            let _ = file.unlock(b"password");
        }
    }
});
