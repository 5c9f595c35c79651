//! Directory listings (trees): one tree blob per directory, nodes sorted by name, with the
//! metadata needed to restore each entry and to recognise unchanged files.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde::{Deserialize, Serialize};

use crate::id::Id;

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    Chardev,
    /// Block device.
    Blockdev,
    /// Unix socket.
    Socket,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name (lossy if not UTF-8; then `name_bytes` holds the exact bytes).
    pub name: String,
    /// The exact name, hex, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_bytes: Option<String>,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits (including setuid, setgid, sticky).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Size in bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch (to detect changes only).
    #[serde(default)]
    pub ctime_ns: i64,
    /// Inode number (to detect changes only).
    #[serde(default)]
    pub inode: u64,
    /// Device number of device nodes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// Hard links of a regular file that has more than one (`st_nlink`), 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links: u64,
    /// The filesystem (`st_dev`) of a file with more than one hard link, 0 otherwise: with
    /// `inode` it names the file those links share, so that a restore links them again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device: u64,
    /// Content blobs, in order (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// Tree blob of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// Symlink target (lossy if not UTF-8; then `target_bytes` holds the exact bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The exact symlink target, hex, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_bytes: Option<String>,
    /// Extended attributes: name to hex value (names that are not UTF-8 are skipped).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn lossless(s: &OsStr) -> (String, Option<String>) {
    match s.to_str() {
        Some(utf8) => (utf8.to_owned(), None),
        None => (s.to_string_lossy().into_owned(), Some(hex::encode(s.as_bytes()))),
    }
}

fn exact(lossy: &str, bytes: Option<&String>) -> OsString {
    bytes
        .and_then(|h| hex::decode(h).ok())
        .map(OsString::from_vec)
        .unwrap_or_else(|| OsString::from(lossy))
}

impl Node {
    /// A node from a directory entry's name and `lstat` metadata (no content yet).
    pub fn from_metadata(name: &OsStr, meta: &Metadata) -> Self {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_symlink() {
            NodeKind::Symlink
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else if ft.is_char_device() {
            NodeKind::Chardev
        } else if ft.is_block_device() {
            NodeKind::Blockdev
        } else if ft.is_socket() {
            NodeKind::Socket
        } else {
            NodeKind::File
        };
        let (name, name_bytes) = lossless(name);
        Self {
            name,
            name_bytes,
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if kind == NodeKind::File { meta.size() } else { 0 },
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
            rdev: if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
                meta.rdev()
            } else {
                0
            },
            links: if kind == NodeKind::File && meta.nlink() > 1 {
                meta.nlink()
            } else {
                0
            },
            device: if kind == NodeKind::File && meta.nlink() > 1 {
                meta.dev()
            } else {
                0
            },
            content: Vec::new(),
            subtree: None,
            target: None,
            target_bytes: None,
            xattrs: BTreeMap::new(),
        }
    }

    /// Reads the extended attributes of `path` (not following symlinks); a filesystem
    /// without them yields none.
    pub fn read_xattrs(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let names = match xattr::list(path) {
            Ok(names) => names,
            Err(e) if e.raw_os_error() == Some(95) => return Ok(()), // EOPNOTSUPP
            Err(e) => return Err(e),
        };
        for name in names {
            let Some(utf8) = name.to_str() else { continue };
            if let Some(value) = xattr::get(path, &name)? {
                self.xattrs.insert(utf8.to_owned(), hex::encode(value));
            }
        }
        Ok(())
    }

    /// Sets the recorded extended attributes on `path` (not following symlinks).
    pub fn write_xattrs(&self, path: &std::path::Path) -> std::io::Result<()> {
        for (name, value) in &self.xattrs {
            let value = hex::decode(value).map_err(std::io::Error::other)?;
            xattr::set(path, name, &value)?;
        }
        Ok(())
    }

    /// Sets the symlink target.
    pub fn set_target(&mut self, target: &OsStr) {
        let (lossy, bytes) = lossless(target);
        self.target = Some(lossy);
        self.target_bytes = bytes;
    }

    /// The file's identity among the hard links of one snapshot (device and inode), for a
    /// regular file recorded with more than one link.
    pub fn hard_link_key(&self) -> Option<(u64, u64)> {
        (self.kind == NodeKind::File && self.links > 1).then_some((self.device, self.inode))
    }

    /// The exact file name.
    pub fn os_name(&self) -> OsString {
        exact(&self.name, self.name_bytes.as_ref())
    }

    /// The exact symlink target.
    pub fn os_target(&self) -> Option<OsString> {
        self.target.as_deref().map(|t| exact(t, self.target_bytes.as_ref()))
    }

    /// Whether a file looks unchanged since `previous` was recorded (size, times, inode), so
    /// its content list can be reused without reading it.
    pub fn unchanged_since(&self, previous: &Node) -> bool {
        self.kind == NodeKind::File
            && previous.kind == NodeKind::File
            && self.size == previous.size
            && self.mtime_ns == previous.mtime_ns
            && self.ctime_ns == previous.ctime_ns
            && self.inode == previous.inode
            && (self.size == 0 || !previous.content.is_empty())
    }
}

/// A directory's entries, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries.
    pub nodes: Vec<Node>,
}

/// Why a tree blob's plaintext is not a valid directory listing.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Not JSON of the tree's shape.
    #[error("malformed tree: {0}")]
    Malformed(String),
    /// An entry's name could escape or alias the directory on restore (`..`, `/`, …).
    #[error("invalid entry name {0:?}")]
    InvalidName(String),
    /// A `name_bytes` or `target_bytes` field is not hex.
    #[error("entry {0:?}: exact bytes are not hex")]
    InvalidBytes(String),
    /// Two entries have the same name (e.g. a symlink and a directory a restore would then
    /// write through).
    #[error("entry name {0:?} appears twice")]
    DuplicateName(String),
}

impl Tree {
    /// Parses a tree blob's plaintext and checks every entry name: a name must be one path
    /// component (not empty, `.` or `..`, without `/` or NUL), so a damaged or hostile tree
    /// cannot make a restore write outside its target, and no name may appear twice. Never
    /// panics, whatever the bytes; this is the entry point the fuzz target `tree` drives.
    pub fn parse(bytes: &[u8]) -> Result<Self, TreeError> {
        let tree: Self = serde_json::from_slice(bytes).map_err(|e| TreeError::Malformed(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for node in &tree.nodes {
            for exact in [&node.name_bytes, &node.target_bytes].into_iter().flatten() {
                if hex::decode(exact).is_err() {
                    return Err(TreeError::InvalidBytes(node.name.clone()));
                }
            }
            let name = node.os_name();
            let bytes = name.as_bytes();
            if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.iter().any(|&b| b == b'/' || b == 0) {
                return Err(TreeError::InvalidName(node.name.clone()));
            }
            if !seen.insert(name.clone()) {
                return Err(TreeError::DuplicateName(node.name.clone()));
            }
        }
        Ok(tree)
    }

    /// The entry called `name`.
    pub fn find(&self, name: &OsStr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.os_name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_or_repeat_are_refused() {
        let tree = |names: &[&str]| {
            let nodes: Vec<serde_json::Value> = names
                .iter()
                .map(|n| serde_json::json!({"name": n, "type": "file", "mode": 420, "uid": 0, "gid": 0, "mtime_ns": 0}))
                .collect();
            Tree::parse(serde_json::json!({ "nodes": nodes }).to_string().as_bytes())
        };
        assert_eq!(tree(&["a", "b"]).unwrap().nodes.len(), 2);
        assert!(matches!(tree(&[".."]), Err(TreeError::InvalidName(_))));
        assert!(matches!(tree(&["a/b"]), Err(TreeError::InvalidName(_))));
        assert!(matches!(tree(&["link", "link"]), Err(TreeError::DuplicateName(n)) if n == "link"));
    }
}
