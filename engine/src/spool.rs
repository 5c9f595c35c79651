//! Packs are written to spool files on local disk as they fill, not held in memory, so the
//! write pipeline's memory does not grow with the pack size (restic keeps its packs in
//! temporary files the same way). A finished spool file is stored by
//! [`Backend::write_file`](crate::backend::Backend::write_file): the filesystem backend
//! copies it in the kernel, the S3 backend streams it from disk.
//!
//! Spool files live in a directory of their own choosing (`--spool-dir`, default the system
//! temporary directory), are named `hort-pack-*` and are deleted when the pack is stored or
//! the pipeline fails. A process killed mid-backup can leave some behind; they hold only
//! sealed (encrypted) blobs.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::backend::LocalFile;
use crate::id::Id;

/// Bytes buffered before a write to the spool file.
const WRITE_BUFFER: usize = 256 * 1024;

/// Errors of a spool file. Each names the file.
#[derive(Debug, thiserror::Error)]
#[error(
    "spool file {path}: {source} (set --spool-dir / HORT_SPOOL_DIR to a writable directory with room for a few packs)"
)]
pub struct SpoolError {
    /// The file, or the directory it was to be created in.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// A spool file being written: every byte is hashed (plain BLAKE3) on the way, so the pack's
/// name is known when it is finished without reading it back.
pub struct SpoolWriter {
    out: BufWriter<NamedTempFile>,
    hasher: blake3::Hasher,
    len: u64,
}

impl SpoolWriter {
    /// Creates an empty spool file in `dir`.
    pub fn create(dir: &Path) -> Result<Self, SpoolError> {
        let file = tempfile::Builder::new()
            .prefix("hort-pack-")
            .tempfile_in(dir)
            .map_err(|source| SpoolError {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Self {
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: blake3::Hasher::new(),
            len: 0,
        })
    }

    /// Appends `data`.
    pub fn write(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        self.out.write_all(data).map_err(|source| SpoolError {
            path: self.out.get_ref().path().to_path_buf(),
            source,
        })?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.len
    }

    /// Flushes the file; returns its plain BLAKE3 hash (its [`Id::of_file`]) and the file.
    pub fn finish(self) -> Result<(Id, SpoolFile), SpoolError> {
        let path = self.out.get_ref().path().to_path_buf();
        let file = self.out.into_inner().map_err(|e| SpoolError {
            path: path.clone(),
            source: e.into_error(),
        })?;
        Ok((
            Id(*self.hasher.finalize().as_bytes()),
            SpoolFile { file, len: self.len },
        ))
    }
}

/// A finished spool file; deleted when dropped.
pub struct SpoolFile {
    file: NamedTempFile,
    len: u64,
}

impl SpoolFile {
    /// The file as the storage layer takes it ([`Backend::write_file`](crate::backend::Backend::write_file)).
    pub fn local(&self) -> LocalFile<'_> {
        LocalFile {
            path: self.path(),
            size: self.len,
        }
    }

    /// Where it is; open it anew for an independent read position.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// Opens it for reading from the start.
    pub fn open(&self) -> Result<File, SpoolError> {
        File::open(self.path()).map_err(|source| SpoolError {
            path: self.path().to_path_buf(),
            source,
        })
    }

    /// The whole content (for backends that keep files in memory).
    pub fn read_all(&self) -> Result<Vec<u8>, SpoolError> {
        let mut data = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.open()?.read_to_end(&mut data).map_err(|source| SpoolError {
            path: self.path().to_path_buf(),
            source,
        })?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_file_holds_what_was_written_and_is_named_by_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::create(dir.path()).unwrap();
        let mut expected = Vec::new();
        for i in 0..1000u32 {
            let piece = vec![(i % 251) as u8; (i as usize * 37) % 4096];
            writer.write(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        assert_eq!(writer.written(), expected.len() as u64);
        let (id, file) = writer.finish().unwrap();
        assert_eq!(id, Id::of_file(&expected));
        assert_eq!(file.size(), expected.len() as u64);
        assert_eq!(file.read_all().unwrap(), expected);
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists(), "the spool file is deleted when dropped");
    }

    #[test]
    fn an_unwritable_spool_directory_is_named_in_the_error() {
        let error = SpoolWriter::create(Path::new("/nonexistent/hort-spool")).err().unwrap();
        assert!(error.to_string().contains("/nonexistent/hort-spool"), "{error}");
        assert!(error.to_string().contains("--spool-dir"), "{error}");
    }
}
