//! Prune markers (`prune/<id>`, FORMAT.md): the packs one garbage collection condemned, and
//! when. Written by [`crate::prune`]; read also by [`crate::repository`], which finds blobs in
//! condemned packs, so the format lives here and neither imports the other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::index::IndexPack;

/// Associated data of sealed prune markers.
pub const AAD: &[u8] = b"hort.v1.prune";

/// Contents of a `prune/<id>` marker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneMarker {
    /// Marker format version (1).
    pub version: u32,
    /// When the packs were condemned.
    pub time: DateTime<Utc>,
    /// The condemned packs with their index entries (empty for packs that were in no index).
    pub packs: Vec<IndexPack>,
}
