//! The HTTP interface between [`super::HttpBackend`] and the repository proxy `hort-store`,
//! in one place for both sides:
//!
//! - `GET {PREFIX}/GROUP/KIND` lists (`?every=true`: [`crate::backend::Backend::list_every_target`]),
//!   answering a JSON array of names;
//! - `GET {PREFIX}/GROUP/KIND/NAME` reads the whole file, `?offset=O&length=L` a range,
//!   `?tail=L` the last bytes;
//! - `PUT {PREFIX}/GROUP/KIND/NAME` writes the request body; `DELETE` deletes;
//! - `GET {PREFIX}/GROUP/KIND/NAME/retention` answers the file's S3 Object Lock retention
//!   ([`Retention`]);
//! - `GET {PREFIX}/GROUP` answers what the group's targets do ([`GroupFacts`]);
//! - `POST {PREFIX}/GROUP/readable` makes archived packs readable ([`ReadableRequest`],
//!   answered by [`ReadableAnswer`]), waiting at most [`MAX_READABLE_WAIT`] per request;
//! - every request carries `Authorization: Bearer TOKEN`; every failure answers a status and a
//!   [`WireError`] as JSON, which the client turns back into the [`BackendError`] it stands for.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, FileKind};

/// The path every request starts with (the interface's version).
pub const PREFIX: &str = "/v1";

/// Bytes a written file may have at most. Packs are 16 MiB by default (a repository's
/// `pack_size`, plus at most one chunk); the proxy spools bodies to disk, so the limit bounds
/// its disk, not its memory.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Each kind's path segment.
const KINDS: [(FileKind, &str); 9] = [
    (FileKind::Config, "config"),
    (FileKind::Key, "key"),
    (FileKind::Pack, "pack"),
    (FileKind::TreePack, "tree-pack"),
    (FileKind::Index, "index"),
    (FileKind::Snapshot, "snapshot"),
    (FileKind::Prune, "prune"),
    (FileKind::Lock, "lock"),
    (FileKind::Probe, "probe"),
];

/// The path segment of `kind`.
pub fn kind_segment(kind: FileKind) -> &'static str {
    KINDS.iter().find(|(k, _)| *k == kind).map_or("probe", |(_, s)| s)
}

/// The kind a path segment names, if any.
pub fn parse_kind(segment: &str) -> Option<FileKind> {
    KINDS.iter().find(|(_, s)| *s == segment).map(|(k, _)| *k)
}

/// Seconds one `readable` request waits at most for restores from the archive (the client
/// asks again for a longer wait), well inside the client's time for an answer.
pub const MAX_READABLE_WAIT: Duration = Duration::from_secs(30);

/// Pack names one `readable` request carries at most. The proxy looks at each (S3 HEAD) before
/// and after requesting restores, and again while it waits: at 100 ms a HEAD, 100 names keep
/// a request that waits [`MAX_READABLE_WAIT`] well inside the client's two minutes.
pub const MAX_READABLE_NAMES: usize = 100;

/// The answer about a group: what its targets do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupFacts {
    /// Packs may be in an archive storage class ([`crate::backend::Backend::archives`]).
    pub archives: bool,
}

/// The answer about one file's S3 Object Lock retention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// When it ends, while the file is under one
    /// ([`crate::backend::Backend::retained_until`]).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// A request to make archived packs readable
/// ([`crate::backend::Backend::make_readable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadableRequest {
    /// The packs, at most [`MAX_READABLE_NAMES`].
    pub names: Vec<String>,
    /// Seconds to wait for their restores, at most [`MAX_READABLE_WAIT`].
    pub wait_seconds: u64,
}

/// The packs a `readable` request found archived, now readable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadableAnswer {
    /// Their names.
    pub archived: Vec<String>,
}

/// The query of a list request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ListQuery {
    /// Fail unless every target of the proxy's group answers.
    #[serde(default)]
    pub every: bool,
}

/// The query of a read request: nothing for the whole file, `offset` and `length` for a
/// range, `tail` for the last bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ReadQuery {
    /// Start of a range.
    pub offset: Option<u64>,
    /// Length of a range.
    pub length: Option<u64>,
    /// Length of a tail.
    pub tail: Option<u64>,
}

/// A failure as the proxy sends it. Messages never name the proxy's own storage (its paths,
/// buckets or errors stay in its log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum WireError {
    /// The file does not exist.
    #[error("not found")]
    NotFound,
    /// The file is shorter than the range asked for.
    #[error("truncated (wanted {wanted} bytes at offset {offset}, file has {size})")]
    Truncated {
        /// Start of the range.
        offset: u64,
        /// Its length.
        wanted: u64,
        /// The file's size.
        size: u64,
    },
    /// The file is under Object Lock retention.
    #[error("under S3 Object Lock retention until {until}")]
    Retained {
        /// When the retention ends.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The file is in an archive storage class.
    #[error("in storage class {class}, not readable until restored from the archive")]
    Archived {
        /// The storage class.
        class: String,
    },
    /// The request was refused (a bad name, bytes that do not match the name, a second
    /// config, a token that is not accepted): trying again cannot help.
    #[error("{message}")]
    Refused {
        /// Why, naming the namespace, kind and name.
        message: String,
    },
    /// The proxy or its storage failed for now: the request may be tried again.
    #[error("{message}")]
    Unavailable {
        /// What failed.
        message: String,
    },
}

impl WireError {
    /// The HTTP status the proxy answers with (a [`WireError::Refused`] has the status its
    /// cause chose).
    pub fn status(&self) -> u16 {
        match self {
            WireError::NotFound => 404,
            WireError::Truncated { .. } => 416,
            WireError::Retained { .. } => 423,
            WireError::Archived { .. } => 409,
            WireError::Refused { .. } => 403,
            WireError::Unavailable { .. } => 503,
        }
    }

    /// What the proxy tells a client about its storage's failure `error`.
    pub fn from_backend(error: &BackendError) -> Self {
        match error {
            BackendError::NotFound { .. } => WireError::NotFound,
            &BackendError::Truncated {
                offset, wanted, size, ..
            } => WireError::Truncated { offset, wanted, size },
            BackendError::Retained { until, .. } => WireError::Retained { until: *until },
            BackendError::Archived { class, .. } => WireError::Archived { class: class.clone() },
            BackendError::Refused { .. } | BackendError::Config(_) => WireError::Refused {
                message: "the storage refused the request (hort-store's log says why)".into(),
            },
            BackendError::Io { .. } | BackendError::Remote { .. } => WireError::Unavailable {
                message: "the storage failed (hort-store's log says why)".into(),
            },
        }
    }

    /// The [`BackendError`] this stands for, about the file at `location`.
    pub fn into_backend(self, location: String) -> BackendError {
        match self {
            WireError::NotFound => BackendError::NotFound { location },
            WireError::Truncated { offset, wanted, size } => BackendError::Truncated {
                location,
                offset,
                wanted,
                size,
            },
            WireError::Retained { until } => BackendError::Retained { location, until },
            WireError::Archived { class } => BackendError::Archived { location, class },
            WireError::Refused { message } => BackendError::Refused { location, message },
            WireError::Unavailable { message } => BackendError::Remote { location, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_segment() {
        for (kind, segment) in KINDS {
            assert_eq!(kind_segment(kind), segment);
            assert_eq!(parse_kind(segment), Some(kind));
        }
        assert_eq!(parse_kind(".."), None);
        assert_eq!(parse_kind("Pack"), None);
    }

    #[test]
    fn errors_cross_the_wire_as_the_kind_they_are_and_hide_the_storage() {
        let until = chrono::DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let cases = [
            (
                BackendError::NotFound {
                    location: "/srv/tenants/a/x".into(),
                },
                404,
            ),
            (
                BackendError::Truncated {
                    location: "/srv/x".into(),
                    offset: 1,
                    wanted: 2,
                    size: 3,
                },
                416,
            ),
            (
                BackendError::Retained {
                    location: "s3://bucket/x".into(),
                    until,
                },
                423,
            ),
            (
                BackendError::Refused {
                    location: "s3://secret-bucket/x".into(),
                    message: "AccessDenied".into(),
                },
                403,
            ),
            (
                BackendError::Remote {
                    location: "s3://secret-bucket/x".into(),
                    message: "timeout".into(),
                },
                503,
            ),
        ];
        for (error, status) in cases {
            let wire = WireError::from_backend(&error);
            assert_eq!(wire.status(), status, "{error}");
            let json = serde_json::to_string(&wire).unwrap();
            assert!(!json.contains("secret-bucket") && !json.contains("/srv"), "{json}");
            let back: WireError = serde_json::from_str(&json).unwrap();
            let client = back.into_backend("hort+http://h:1/g pack x".into());
            assert_eq!(
                std::mem::discriminant(&client),
                std::mem::discriminant(&error),
                "{error}"
            );
        }
    }
}
