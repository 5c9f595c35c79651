//! Snapshot manifests: what was backed up, when, from where, and the root of its content.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;

/// Associated data of sealed snapshot files.
pub const AAD: &[u8] = b"hort.v1.snapshot";

/// The snapshot format version this code writes: 2 adds [`Stream::content_lists`].
pub const SNAPSHOT_VERSION: u32 = 2;

/// A stream with more content blobs than this stores its list in content-list blobs.
pub const INLINE_CONTENT_MAX: usize = 16;

/// A content list ends after a blob id whose first byte is a multiple of this (so lists
/// average this many ids and are cut by content: an unchanged run of blobs gives the same
/// lists in the next backup and is stored once) ...
const LIST_CUT_DIVISOR: u8 = 8;
/// ... or when it holds this many ids.
const LIST_MAX_IDS: usize = 64;

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
    /// Content blobs, in order, when there are few of them (and in every version 1 snapshot).
    #[serde(default)]
    pub content: Vec<Id>,
    /// Content-list blobs (version 2), in order: each holds a run of the stream's content
    /// blob ids (see [`split_content`]); their concatenation is the content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_lists: Vec<Id>,
}

/// Builds a stream's content from its blob ids as they are stored: the ids themselves while
/// there are at most [`INLINE_CONTENT_MAX`], else runs cut by content (see
/// [`LIST_CUT_DIVISOR`]), each handed out as soon as it is complete, to be stored as one
/// content-list blob. Repeated dumps of a database with a few changed rows then store only
/// the runs around the changed blobs, not the whole list again; and a long stream's ids are
/// never all held in memory.
#[derive(Debug, Default)]
pub struct ContentBuilder {
    inline: Vec<Id>,
    run: Vec<Id>,
    listed: bool,
}

impl ContentBuilder {
    /// Adds the next content blob id; returns the runs it completes, in order.
    pub fn push(&mut self, id: Id) -> Vec<Vec<Id>> {
        if self.listed {
            return self.cut(id).into_iter().collect();
        }
        self.inline.push(id);
        if self.inline.len() <= INLINE_CONTENT_MAX {
            return Vec::new();
        }
        self.listed = true;
        let ids = std::mem::take(&mut self.inline);
        ids.into_iter().filter_map(|id| self.cut(id)).collect()
    }

    fn cut(&mut self, id: Id) -> Option<Vec<Id>> {
        self.run.push(id);
        let ends = id.0[0].is_multiple_of(LIST_CUT_DIVISOR) || self.run.len() == LIST_MAX_IDS;
        ends.then(|| std::mem::take(&mut self.run))
    }

    /// Ends the stream: its inline content (when it has at most [`INLINE_CONTENT_MAX`]
    /// blobs), or its last run (when it has content lists and one is left).
    pub fn finish(self) -> (Vec<Id>, Option<Vec<Id>>) {
        if self.listed {
            (Vec::new(), (!self.run.is_empty()).then_some(self.run))
        } else {
            (self.inline, None)
        }
    }
}

/// The runs [`ContentBuilder`] cuts a stream's content into when it has content lists.
pub fn split_content(content: &[Id]) -> Vec<Vec<Id>> {
    let mut builder = ContentBuilder {
        listed: true,
        ..ContentBuilder::default()
    };
    let mut runs: Vec<Vec<Id>> = content.iter().filter_map(|&id| builder.cut(id)).collect();
    runs.extend(builder.finish().1);
    runs
}

/// The bytes of a content-list blob: the ids' 32 bytes each, concatenated.
pub fn encode_content_list(ids: &[Id]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.0).collect()
}

/// A content-list blob whose length is not a non-empty multiple of 32 (a damaged repository).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a content list of {length} bytes is not a non-empty multiple of 32")]
pub struct ContentListError {
    /// The blob's length in bytes.
    pub length: usize,
}

/// Parses a content-list blob.
pub fn decode_content_list(bytes: &[u8]) -> Result<Vec<Id>, ContentListError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(32) {
        return Err(ContentListError { length: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| Id(c.try_into().expect("32-byte chunk")))
        .collect())
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
    /// Snapshot format version (1 or 2, see [`SNAPSHOT_VERSION`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, salt: &str) -> Vec<Id> {
        (0..n).map(|i| Id::of_file(format!("{salt}{i}").as_bytes())).collect()
    }

    #[test]
    fn content_lists_cover_the_content_in_order_and_round_trip() {
        let content = ids(5000, "blob");
        let runs = split_content(&content);
        assert_eq!(runs.concat(), content);
        assert!(runs.iter().all(|r| !r.is_empty() && r.len() <= LIST_MAX_IDS));
        let mean = content.len() as f64 / runs.len() as f64;
        assert!((4.0..16.0).contains(&mean), "mean run length {mean}");
        let decoded: Vec<Id> = runs
            .iter()
            .flat_map(|r| decode_content_list(&encode_content_list(r)).unwrap())
            .collect();
        assert_eq!(decoded, content);
        assert_eq!(decode_content_list(&[0; 33]), Err(ContentListError { length: 33 }));
        assert_eq!(decode_content_list(&[]), Err(ContentListError { length: 0 }));
    }

    #[test]
    fn one_changed_blob_changes_only_the_lists_around_it() {
        let before = ids(5000, "blob");
        let mut after = before.clone();
        after[2500] = Id::of_file(b"a changed row");
        after.insert(4000, Id::of_file(b"an inserted row"));
        let old: std::collections::HashSet<Vec<Id>> = split_content(&before).into_iter().collect();
        let new_runs = split_content(&after);
        let changed = new_runs.iter().filter(|r| !old.contains(*r)).count();
        assert!(changed <= 4, "{changed} of {} lists changed", new_runs.len());
    }

    #[test]
    fn the_builder_inlines_short_streams_and_lists_long_ones_as_they_arrive() {
        for n in [0, 1, INLINE_CONTENT_MAX, INLINE_CONTENT_MAX + 1, 1000] {
            let content = ids(n, "stream");
            let mut builder = ContentBuilder::default();
            let mut runs = Vec::new();
            let mut held_most = 0;
            for &id in &content {
                runs.extend(builder.push(id));
                held_most = held_most.max(builder.inline.len() + builder.run.len());
            }
            let (inline, last) = builder.finish();
            runs.extend(last);
            if n <= INLINE_CONTENT_MAX {
                assert_eq!((inline, runs.len()), (content.clone(), 0));
            } else {
                assert!(inline.is_empty());
                assert_eq!(runs, split_content(&content), "the same runs as split_content");
                assert_eq!(runs.concat(), content);
                assert!(
                    held_most <= LIST_MAX_IDS.max(INLINE_CONTENT_MAX + 1),
                    "held {held_most} ids"
                );
            }
        }
    }

    #[test]
    fn version_one_snapshots_without_lists_still_parse() {
        let json = r#"{"name":"db","size":3,"content":[]}"#;
        let stream: Stream = serde_json::from_str(json).unwrap();
        assert!(stream.content_lists.is_empty());
    }
}
