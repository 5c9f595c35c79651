//! The repository's `config` file: format version and the parameters every writer must share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::id::Id;

/// The repository format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Associated data of the sealed config file.
pub const AAD: &[u8] = b"hort.v1.config";

/// Contents of the (sealed) `config` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version.
    pub version: u32,
    /// Random repository id.
    pub id: Id,
    /// When the repository was created.
    pub created: DateTime<Utc>,
    /// Chunk sizes for file trees.
    pub chunker_files: ChunkerParams,
    /// Chunk sizes for named streams (database dumps).
    pub chunker_streams: ChunkerParams,
    /// A pack is closed once it holds at least this many bytes.
    pub pack_size: u32,
    /// Default zstd level (0 = no compression).
    pub compression_level: i32,
}

impl Config {
    /// A fresh configuration with the default parameters.
    pub fn new(id: Id) -> Self {
        Self {
            version: FORMAT_VERSION,
            id,
            created: Utc::now(),
            chunker_files: ChunkerParams::FILES,
            chunker_streams: ChunkerParams::STREAMS,
            pack_size: 16 * 1024 * 1024,
            compression_level: 3,
        }
    }
}
