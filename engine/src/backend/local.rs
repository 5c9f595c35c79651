//! The filesystem backend: one directory per repository, writes through a temporary file,
//! `fsync` and an atomic rename, so a crash never leaves a partial file under a real name.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hort_protocol::RepositoryOwner;

use super::{Backend, BackendError, FileKind, LocalFile};

/// Open pack files kept for range reads (a restore reads many blobs from each pack).
const OPEN_PACKS: usize = 32;

/// Recently read packs, oldest first: name, open file, size.
type OpenPacks = VecDeque<(String, Arc<File>, u64)>;

/// A repository in a local directory (or a mounted volume).
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
    /// Recently read packs: name, open file, size. Packs never change once written, so a
    /// handle stays valid (a deleted pack's handle still reads its old, correct bytes).
    open_packs: Arc<Mutex<OpenPacks>>,
    /// Who every file and directory this backend creates is handed to (`None`: whoever
    /// creates it keeps it).
    owner: Option<RepositoryOwner>,
}

/// Whether this process runs as root (and so may hand files to another user).
pub(crate) fn process_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Hands directory `path`, just created, to `owner` (never following a symlink put there since).
fn chown_dir(path: &Path, owner: RepositoryOwner) -> std::io::Result<()> {
    let (uid, gid) = ids(owner);
    let flags = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
    Ok(rustix::fs::chownat(rustix::fs::CWD, path, Some(uid), Some(gid), flags)?)
}

fn ids(owner: RepositoryOwner) -> (rustix::fs::Uid, rustix::fs::Gid) {
    (
        rustix::fs::Uid::from_raw(owner.uid),
        rustix::fs::Gid::from_raw(owner.gid),
    )
}

impl LocalBackend {
    /// A backend rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            open_packs: Arc::default(),
            owner: None,
        }
    }

    /// Hands every file and directory the backend creates to `owner` (which needs root, or
    /// `CHOWN`): agents running as root keep a repository writable for agents running as that
    /// user.
    pub fn with_owner(mut self, owner: RepositoryOwner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Creates `dir` and its missing parents, each handed to the owner if there is one.
    fn create_dirs(&self, dir: &Path) -> std::io::Result<()> {
        let Some(owner) = self.owner else {
            return fs::create_dir_all(dir);
        };
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.is_dir()).collect();
        for d in missing.into_iter().rev() {
            match fs::create_dir(d) {
                Ok(()) => chown_dir(d, owner)?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn open_packs(&self) -> std::sync::MutexGuard<'_, OpenPacks> {
        self.open_packs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An open handle and the size of a file to read ranges from; pack handles are reused.
    fn handle(&self, kind: FileKind, name: &str) -> Result<(Arc<File>, u64), BackendError> {
        if kind != FileKind::Pack {
            let (file, size) = self.open(kind, name)?;
            return Ok((Arc::new(file), size));
        }
        if let Some((_, file, size)) = self.open_packs().iter().find(|(n, _, _)| n == name) {
            return Ok((file.clone(), *size));
        }
        let (file, size) = self.open(kind, name)?;
        let file = Arc::new(file);
        let mut open = self.open_packs();
        open.push_back((name.to_owned(), file.clone(), size));
        if open.len() > OPEN_PACKS {
            open.pop_front();
        }
        Ok((file, size))
    }

    fn full(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.path(name))
    }

    fn location(&self, kind: FileKind, name: &str) -> String {
        self.full(kind, name).display().to_string()
    }

    fn err(&self, kind: FileKind, name: &str, source: std::io::Error) -> BackendError {
        if source.kind() == ErrorKind::NotFound {
            BackendError::NotFound {
                location: self.location(kind, name),
            }
        } else {
            BackendError::Io {
                location: self.location(kind, name),
                source,
            }
        }
    }

    fn open(&self, kind: FileKind, name: &str) -> Result<(File, u64), BackendError> {
        let file = File::open(self.full(kind, name)).map_err(|e| self.err(kind, name, e))?;
        let size = file.metadata().map_err(|e| self.err(kind, name, e))?.len();
        Ok((file, size))
    }

    /// Writes a file through a temporary file in the same directory, `fsync` and an atomic
    /// rename; `fill` writes the content.
    fn store(
        &self,
        kind: FileKind,
        name: &str,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<(), BackendError> {
        let path = self.full(kind, name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let err = |e| self.err(kind, name, e);
        self.create_dirs(&dir).map_err(err)?;
        let mut suffix = [0u8; 8];
        crate::crypto::random_bytes(&mut suffix).map_err(|e| BackendError::Io {
            location: self.location(kind, name),
            source: std::io::Error::other(e),
        })?;
        let tmp = dir.join(format!(".tmp-{name}-{}", hex::encode(suffix)));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            if let Some(owner) = self.owner {
                let (uid, gid) = ids(owner);
                rustix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
            fill(&mut file)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(err)
    }
}

fn list_dir(dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            out.push(name);
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn free_bytes(&self) -> Option<u64> {
        // The root may not exist yet: ask the file system of its nearest existing ancestor.
        let dir = self.root.ancestors().find(|d| d.is_dir())?;
        let fs = rustix::fs::statvfs(dir).ok()?;
        Some(fs.f_bavail.saturating_mul(fs.f_frsize))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        let mut out = Vec::new();
        let io = |e| BackendError::Io {
            location: self.root.join(kind.dir()).display().to_string(),
            source: e,
        };
        match kind {
            // Only "no such file" means there is none: a root that cannot be read is an error.
            FileKind::Config => match fs::metadata(self.full(kind, "config")) {
                Ok(meta) if meta.is_file() => out.push("config".to_owned()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            },
            FileKind::Pack => {
                let data = self.root.join(kind.dir());
                let subdirs = match fs::read_dir(&data) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(io(e)),
                };
                for sub in subdirs {
                    let sub = sub.map_err(io)?;
                    if sub.file_type().map_err(io)?.is_dir() {
                        list_dir(&sub.path(), &mut out).map_err(io)?;
                    }
                }
            }
            _ => list_dir(&self.root.join(kind.dir()), &mut out).map_err(io)?,
        }
        Ok(out)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        fs::read(self.full(kind, name)).map_err(|e| self.err(kind, name, e))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        let (file, size) = self.handle(kind, name)?;
        BackendError::check_range(|| self.location(kind, name), offset, length, size)?;
        let mut buf = vec![0u8; usize::try_from(length).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| self.err(kind, name, e))?;
        Ok(buf)
    }

    fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError> {
        let (mut file, size) = self.open(kind, name)?;
        let start = size.saturating_sub(length);
        file.seek(SeekFrom::Start(start)).map_err(|e| self.err(kind, name, e))?;
        let mut buf = Vec::with_capacity(usize::try_from(size - start).unwrap_or(0));
        file.read_to_end(&mut buf).map_err(|e| self.err(kind, name, e))?;
        Ok(buf)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.store(kind, name, |file| file.write_all(data))
    }

    fn write_file(&self, kind: FileKind, name: &str, source: LocalFile<'_>) -> Result<(), BackendError> {
        let mut from = source.open()?;
        // File to file: the standard library copies in the kernel (copy_file_range).
        self.store(kind, name, |file| std::io::copy(&mut from, file).map(drop))
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        if kind == FileKind::Pack {
            // Close it, so its space is freed now rather than when the process ends.
            self.open_packs().retain(|(n, _, _)| n != name);
        }
        match fs::remove_file(self.full(kind, name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(kind, name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let name = "ab".repeat(32);
        backend.write(FileKind::Pack, &name, b"0123456789").unwrap();
        assert!(dir.path().join("data/ab").join(&name).is_file());
        assert_eq!(backend.list(FileKind::Pack).unwrap(), vec![name.clone()]);
        assert_eq!(backend.read_range(FileKind::Pack, &name, 2, 3).unwrap(), b"234");
        assert_eq!(backend.read_tail(FileKind::Pack, &name, 4).unwrap(), b"6789");
        assert_eq!(backend.read_tail(FileKind::Pack, &name, 40).unwrap(), b"0123456789");
        assert!(matches!(
            backend.read_range(FileKind::Pack, &name, 8, 3),
            Err(BackendError::Truncated { size: 10, .. })
        ));
        backend.delete(FileKind::Pack, &name).unwrap();
        assert!(backend.read(FileKind::Pack, &name).unwrap_err().is_not_found());
        assert!(backend.list(FileKind::Index).unwrap().is_empty());
    }

    #[test]
    fn an_owner_gets_every_file_and_directory_the_backend_creates() {
        use std::os::unix::fs::MetadataExt;
        assert!(
            process_is_root(),
            "the test hands files to another user, which needs root"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("made/repo");
        let owner = RepositoryOwner { uid: 65532, gid: 65533 };
        let backend = LocalBackend::new(&root).with_owner(owner);
        let name = "cd".repeat(32);
        backend.write(FileKind::Pack, &name, b"pack").unwrap();
        backend.write(FileKind::Config, "config", b"config").unwrap();
        let owned = |p: &Path| {
            let m = fs::metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        for path in [
            dir.path().join("made"),
            root.clone(),
            root.join("data"),
            root.join("data/cd"),
            root.join("data/cd").join(&name),
            root.join("config"),
        ] {
            assert_eq!(owned(&path), (65532, 65533), "{}", path.display());
        }
        // Without an owner, files stay with the process (root here).
        let plain = LocalBackend::new(dir.path().join("plain"));
        plain.write(FileKind::Pack, &name, b"pack").unwrap();
        assert_eq!(owned(&dir.path().join("plain/data/cd").join(&name)), (0, 0));
    }
}
