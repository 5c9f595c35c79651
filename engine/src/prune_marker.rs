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
    /// When the run that condemned them had replaced the index; a backup that started later
    /// cannot have seen them. Absent in the first of the two markers a run writes (and in
    /// the marker an interrupted run leaves): then no time is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_replaced: Option<DateTime<Utc>>,
    /// The condemned packs with their index entries (empty for packs that were in no index).
    pub packs: Vec<IndexPack>,
}
