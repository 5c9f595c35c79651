//! Progress of long operations: counters the engine updates as it goes. The engine prints
//! nothing; whoever runs an operation reads the counters (the agent's reporter prints them).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the engine and the reporter.
#[derive(Debug, Default)]
pub struct Counters {
    /// Files (or streams) processed.
    pub files: AtomicU64,
    /// Bytes of content processed.
    pub bytes: AtomicU64,
    /// Plaintext bytes of new blobs.
    pub new_bytes: AtomicU64,
    /// Entries that failed.
    pub errors: AtomicU64,
    /// Bytes of content the operation will process in all, once known.
    pub bytes_total: OnceLock<u64>,
}

impl Counters {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
