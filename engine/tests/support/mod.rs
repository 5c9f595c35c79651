//! What the engine's integration tests share: a repository in memory with cheap key
//! derivation, and deterministic data.

use std::sync::Arc;

use hort_engine::backend::memory::MemoryBackend;
use hort_engine::backup_lock::BackupLock;
use hort_engine::keyfile::KdfParams;
use hort_engine::repository::{IndexedRepository, Repository};

pub const PASSWORD: &[u8] = b"engine test password";

/// Cheap key derivation: these tests are about the engine, not Argon2's cost.
pub const KDF: KdfParams = KdfParams {
    memory_kib: 8,
    iterations: 1,
    parallelism: 1,
};

/// Deterministic incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A new repository in memory.
pub fn init() -> Arc<MemoryBackend> {
    let backend = Arc::new(MemoryBackend::new());
    Repository::init(backend.clone(), PASSWORD, KDF).unwrap();
    backend
}

/// Opens the repository on `backend` anew (nothing cached from the writer), takes a backup
/// lock and loads the index.
pub fn open(backend: &Arc<MemoryBackend>) -> (IndexedRepository, BackupLock) {
    let repo = Repository::open(backend.clone(), PASSWORD).unwrap();
    let lock = BackupLock::acquire(&repo).unwrap();
    (repo.load_index().unwrap(), lock)
}
