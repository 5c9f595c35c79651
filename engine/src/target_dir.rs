//! A restore target opened as a directory handle: every path below it is reached one
//! component at a time with `O_NOFOLLOW`, and files are created, renamed and linked relative to
//! their parent's handle. A symlink in the snapshot, or one an application puts into the
//! target while a restore runs, therefore can never make a restore write outside the target:
//! the walk fails on it instead.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, Mode, OFlags};

/// Permissions of directories a restore creates before their own metadata is applied.
const NEW_DIR_MODE: u32 = 0o700;

/// The opened restore target.
pub struct TargetDir {
    root: OwnedFd,
}

fn no_symlink(e: rustix::io::Errno, what: &Path) -> io::Error {
    if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
        io::Error::other(format!(
            "{}: a symlink or a file where a directory should be; not followed",
            what.display()
        ))
    } else {
        io::Error::from(e)
    }
}

impl TargetDir {
    /// Opens `target`, an existing directory (the one path that is followed as given).
    pub fn open(target: &Path) -> io::Result<Self> {
        let root = rustix::fs::open(
            target,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { root })
    }

    /// The directory `rel` below the target (`""` is the target), refusing any component that
    /// is a symlink; with `create`, missing components are made (mode 0700 until the restore
    /// applies the snapshot's).
    pub fn dir(&self, rel: &Path, create: bool) -> io::Result<OwnedFd> {
        let mut fd = rustix::io::dup(&self.root)?;
        for component in rel.components() {
            let Component::Normal(name) = component else {
                return Err(io::Error::other(format!(
                    "{}: not a plain relative path",
                    rel.display()
                )));
            };
            fd = self.step(&fd, name, create, rel)?;
        }
        Ok(fd)
    }

    fn step(&self, parent: &OwnedFd, name: &OsStr, create: bool, rel: &Path) -> io::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(parent, name, flags, Mode::empty()) {
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(NEW_DIR_MODE)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(|e| no_symlink(e, rel))
            }
            other => other.map_err(|e| no_symlink(e, rel)),
        }
    }
}

/// Creates `name` in `dir` as a new file for writing (replacing a leftover of that name, and
/// never following a symlink there).
pub fn create_file(dir: &OwnedFd, name: &OsStr) -> io::Result<File> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    Ok(File::from(fd))
}

/// Renames `from` to `to`, both in `dir`.
pub fn rename(dir: &OwnedFd, from: &OsStr, to: &OsStr) -> io::Result<()> {
    Ok(rustix::fs::renameat(dir, from, dir, to)?)
}

/// Makes `name` in `to_dir` another hard link of `from_name` in `from_dir` (neither followed
/// if a symlink), replacing what `name` was; `tmp_name` is used on the way, so `name` is
/// never missing.
pub fn hard_link(
    (from_dir, from_name): (&OwnedFd, &OsStr),
    (to_dir, name): (&OwnedFd, &OsStr),
    tmp_name: &OsStr,
) -> io::Result<()> {
    match rustix::fs::unlinkat(to_dir, tmp_name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::fs::linkat(from_dir, from_name, to_dir, tmp_name, AtFlags::empty())?;
    rustix::fs::renameat(to_dir, tmp_name, to_dir, name).inspect_err(|_| {
        let _ = rustix::fs::unlinkat(to_dir, tmp_name, AtFlags::empty());
    })?;
    Ok(())
}

/// Makes `name` in `dir` a symlink to `target`, replacing a file or symlink of that name;
/// with `owner`, gives the link itself that owner.
pub fn symlink(dir: &OwnedFd, name: &OsStr, target: &OsStr, owner: Option<(u32, u32)>) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::fs::symlinkat(target, dir, name)?;
    if let Some((uid, gid)) = owner {
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_below_the_target_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), target.path().join("link")).unwrap();
        let dir = TargetDir::open(target.path()).unwrap();
        let err = dir.dir(Path::new("link/sub"), true).unwrap_err().to_string();
        assert!(err.contains("not followed"), "{err}");
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "nothing made outside"
        );

        let made = dir.dir(Path::new("a/b"), true).unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), target.path().join("a/b/f")).unwrap();
        let mut file = create_file(&made, OsStr::new("f")).unwrap();
        std::io::Write::write_all(&mut file, b"data").unwrap();
        assert!(
            !outside.path().join("victim").exists(),
            "the symlink was replaced, not followed"
        );
        assert_eq!(std::fs::read(target.path().join("a/b/f")).unwrap(), b"data");
        assert!(dir.dir(Path::new("../x"), true).is_err());
    }
}
