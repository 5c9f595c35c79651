//! Snapshot manifests: what was backed up, when, from where, and the root of its content.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;

/// Associated data of sealed snapshot files.
pub const AAD: &[u8] = b"hort.v1.snapshot";

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// A directory tree.
    Tree {
        /// Absolute path of the directory that was backed up.
        path: String,
    },
    /// Named streams (e.g. one database dump each).
    Streams,
}

/// One named stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// Its name, unique in the snapshot.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// Content blobs, in order.
    pub content: Vec<Id>,
}

/// Counters of one backup run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Files seen.
    pub files: u64,
    /// Directories seen.
    pub dirs: u64,
    /// Files whose content was reused from the parent snapshot without reading.
    pub files_unchanged: u64,
    /// Bytes of content seen (files and streams).
    pub bytes: u64,
    /// Blobs that were new to the repository.
    pub new_blobs: u64,
    /// Plaintext bytes of the new blobs.
    pub new_bytes: u64,
    /// Bytes written to the backend (sealed blobs plus pack trailers).
    pub stored_bytes: u64,
    /// Pack files written.
    pub packs: u64,
    /// Entries that could not be read (their paths are logged).
    pub errors: u64,
    /// Wall-clock seconds.
    pub duration_secs: f64,
}

/// The contents of a snapshot file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Snapshot format version (1).
    pub version: u32,
    /// When the backup started.
    pub time: DateTime<Utc>,
    /// Host that made it.
    pub hostname: String,
    /// What was backed up.
    pub source: Source,
    /// User-chosen labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Root tree blob (tree snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<Id>,
    /// The streams (stream snapshots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<Stream>,
    /// The snapshot this one was compared against, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Counters.
    pub stats: Stats,
}
