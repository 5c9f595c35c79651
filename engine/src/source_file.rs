//! Opening a file a backup has just `lstat`ed, so that what is read is that file: opened
//! without following a symlink (`O_NOFOLLOW`) or waiting on a FIFO (`O_NONBLOCK`), then
//! checked with `fstat` to be the same regular file (device and inode). A file swapped for a
//! symlink between the two calls (say to `/proc/1/environ`) is refused, not read.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Opens `path` for reading if it is still the regular file `lstat` described as `seen`.
pub fn open_seen(path: &Path, seen: &Metadata) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::LOOP) => {
            return Err(io::Error::other("became a symlink after it was listed; not followed"));
        }
        Err(e) => return Err(e.into()),
    };
    let now = file.metadata()?;
    if !now.is_file() || now.dev() != seen.dev() || now.ino() != seen.ino() {
        return Err(io::Error::other(
            "replaced by another file after it was listed; not read",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_swapped_for_a_symlink_after_lstat_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"not for the snapshot").unwrap();
        let listed = dir.path().join("data");
        std::fs::write(&listed, b"data").unwrap();
        let seen = std::fs::symlink_metadata(&listed).unwrap();
        assert_eq!(
            io::Read::bytes(open_seen(&listed, &seen).unwrap()).count(),
            4,
            "the listed file opens"
        );

        std::fs::remove_file(&listed).unwrap();
        std::os::unix::fs::symlink(&secret, &listed).unwrap();
        let err = open_seen(&listed, &seen).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");

        std::fs::remove_file(&listed).unwrap();
        std::fs::write(&listed, b"another file").unwrap();
        let other = std::fs::metadata(&secret).unwrap();
        let err = open_seen(&listed, &other).unwrap_err().to_string();
        assert!(err.contains("replaced"), "{err}");
    }

    #[test]
    fn a_fifo_in_place_of_the_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let seen = std::fs::symlink_metadata(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = open_seen(&path, &seen).unwrap_err().to_string();
        assert!(err.contains("replaced"), "{err}");
    }
}
