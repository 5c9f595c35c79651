//! Deletes in a versioned bucket (every S3 Object Lock bucket is one). A DELETE without a
//! version id only puts a delete marker on top: the object's versions stay, still billed, and
//! one under Object Lock retention stays in any case. So once a delete has made a marker (or
//! a HEAD saw a version), every version and marker of the key is deleted by its id. When a
//! version of the repository's content (pack, snapshot, key, config) is still under
//! retention, its markers go too, so it is listed again and a later run deletes it once the
//! retention has ended ([`BackendError::Retained`]). Files of normal work (index files,
//! prune markers, backup locks) stay hidden behind their marker instead: a lock that stayed
//! listed would hold back every prune sweep.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::{S3Backend, remote};
use crate::backend::{BackendError, FileKind};

/// One stored version or delete marker of a key.
struct Version {
    id: String,
    marker: bool,
}

/// What a DELETE of one version did.
enum Outcome {
    Deleted,
    /// Refused: under retention until then.
    Retained(DateTime<Utc>),
    /// Refused for another reason (logged).
    Left(BackendError),
}

impl S3Backend {
    /// Sends a DELETE without a version id; returns whether the server made a delete marker
    /// (a versioned bucket) instead of removing the object.
    pub(super) fn delete_current(&self, kind: FileKind, name: &str) -> Result<bool, BackendError> {
        self.runtime.block_on(async {
            let out = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.key(kind, name))
                .send()
                .await
                .map_err(|e| remote(self.location(kind, name), e))?;
            Ok(out.delete_marker() == Some(true))
        })
    }

    /// Deletes every version and delete marker of the file (see the module); `seen` is the
    /// version a HEAD saw, if any. A version under retention stays: a file of the repository's
    /// content ([`FileKind::is_locked`]) with no marker over it, [`BackendError::Retained`]
    /// with the latest retention date; any other file stays hidden behind its marker. If the
    /// keys may not list the versions, only `seen` is deleted and the rest is logged and left
    /// (behind a delete marker, as after a plain DELETE); a version refused for another reason
    /// is logged and stays behind its marker (an error if there is none).
    pub(super) fn delete_versions(&self, kind: FileKind, name: &str, seen: Option<&str>) -> Result<(), BackendError> {
        let location = self.location(kind, name);
        let versions = match self.versions(kind, name) {
            Ok(v) => v,
            Err(BackendError::Refused { message, .. }) => {
                warn!(%location, %message, "cannot list the object's versions (the keys need s3:ListBucketVersions); older versions and delete markers stay");
                let seen = seen.map(|id| Version {
                    id: id.to_owned(),
                    marker: false,
                });
                seen.into_iter().collect()
            }
            Err(e) => return Err(e),
        };
        let (markers, versions): (Vec<Version>, Vec<Version>) = versions.into_iter().partition(|v| v.marker);
        let mut retained: Option<DateTime<Utc>> = None;
        let mut left = None;
        for version in &versions {
            match self.delete_version(kind, name, version)? {
                Outcome::Deleted => {}
                Outcome::Retained(until) => retained = retained.max(Some(until)),
                Outcome::Left(e) => left = Some(e),
            }
        }
        // A version that stays for no known retention stays behind its marker, as after a
        // plain DELETE; so does a file of normal work (index, marker, lock): it must be gone
        // for the repository, and its retained version is only a stored copy.
        if !markers.is_empty() && (left.is_some() || retained.is_some() && !kind.is_locked()) {
            info!(%location, "a version stays behind a delete marker");
            return Ok(());
        }
        if let Some(e) = left {
            return Err(e);
        }
        for marker in &markers {
            if let Outcome::Left(e) = self.delete_version(kind, name, marker)? {
                return Err(e);
            }
        }
        match retained {
            Some(until) => Err(BackendError::Retained { location, until }),
            None => Ok(()),
        }
    }

    /// Every version and delete marker of exactly this file's key.
    fn versions(&self, kind: FileKind, name: &str) -> Result<Vec<Version>, BackendError> {
        let key = self.key(kind, name);
        self.runtime.block_on(async {
            let mut all = Vec::new();
            let (mut key_marker, mut version_marker) = (None, None);
            loop {
                let out = self
                    .client
                    .list_object_versions()
                    .bucket(&self.bucket)
                    .prefix(&key)
                    .set_key_marker(key_marker)
                    .set_version_id_marker(version_marker)
                    .send()
                    .await
                    .map_err(|e| remote(self.location(kind, name), e))?;
                let versions = out.versions().iter().map(|v| (v.key(), v.version_id(), false));
                let markers = out.delete_markers().iter().map(|m| (m.key(), m.version_id(), true));
                for (k, id, marker) in versions.chain(markers) {
                    if let (Some(k), Some(id)) = (k, id)
                        && k == key
                    {
                        all.push(Version {
                            id: id.to_owned(),
                            marker,
                        });
                    }
                }
                if out.is_truncated() != Some(true) {
                    return Ok(all);
                }
                key_marker = out.next_key_marker().map(str::to_owned);
                version_marker = out.next_version_id_marker().map(str::to_owned);
            }
        })
    }

    /// Deletes one version or marker.
    fn delete_version(&self, kind: FileKind, name: &str, version: &Version) -> Result<Outcome, BackendError> {
        let id = &version.id;
        let location = format!("{} (version {id})", self.location(kind, name));
        let sent = self.runtime.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.key(kind, name))
                .version_id(id)
                .send()
                .await
                .map_err(|e| remote(location.clone(), e))
        });
        match sent {
            Ok(_) => Ok(Outcome::Deleted),
            Err(BackendError::Refused { location, message }) => {
                if !version.marker
                    && let Some(until) = self.refused_until(kind, name, Some(id))?
                {
                    return Ok(Outcome::Retained(until));
                }
                warn!(%location, %message, "cannot delete a version of the object (do the keys have s3:DeleteObjectVersion?)");
                Ok(Outcome::Left(BackendError::Refused { location, message }))
            }
            Err(e) => Err(e),
        }
    }
}
