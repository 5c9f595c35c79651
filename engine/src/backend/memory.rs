//! An in-memory backend for tests and for composing storage groups in unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, BackendError, FileKind};

/// Files kept in a map; optionally failing every call, to simulate an unreachable target.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    offline: std::sync::atomic::AtomicBool,
    range_reads: std::sync::atomic::AtomicUsize,
    free: Mutex<Option<u64>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call fail (or succeed again) as if the target were unreachable.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes [`Backend::free_bytes`] answer `free` (default: `None`, cannot tell).
    pub fn set_free_bytes(&self, free: Option<u64>) {
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) = free;
    }

    /// Number of `read_range` calls so far (what a remote backend answers one request each).
    pub fn range_reads(&self) -> usize {
        self.range_reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Number of stored files of `kind`.
    pub fn count(&self, kind: FileKind) -> usize {
        self.list(kind).map(|l| l.len()).unwrap_or(0)
    }

    fn check(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        if self.offline.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(BackendError::Remote {
                location: self.location(kind, name),
                message: "offline".into(),
            });
        }
        Ok(())
    }

    fn location(&self, kind: FileKind, name: &str) -> String {
        format!("memory:{}", kind.path(name))
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.files.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn free_bytes(&self) -> Option<u64> {
        *self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        self.check(kind, "")?;
        let prefix = if kind == FileKind::Config {
            "config".to_owned()
        } else {
            format!("{}/", kind.dir())
        };
        Ok(self
            .files()
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .filter_map(|k| k.rsplit('/').next().map(str::to_owned))
            .collect())
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.check(kind, name)?;
        self.files()
            .get(&kind.path(name))
            .cloned()
            .ok_or_else(|| BackendError::NotFound {
                location: self.location(kind, name),
            })
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        self.range_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let data = self.read(kind, name)?;
        let size = data.len() as u64;
        BackendError::check_range(|| self.location(kind, name), offset, length, size)?;
        Ok(data[offset as usize..(offset + length) as usize].to_vec())
    }

    fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError> {
        let data = self.read(kind, name)?;
        let start = data.len().saturating_sub(usize::try_from(length).unwrap_or(usize::MAX));
        Ok(data[start..].to_vec())
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.check(kind, name)?;
        self.files().insert(kind.path(name), data.to_vec());
        Ok(())
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.check(kind, name)?;
        self.files().remove(&kind.path(name));
        Ok(())
    }
}
