//! S3 Object Lock on a target: the retention headers of uploads, the retention check before
//! a delete, and the bucket's Object Lock configuration for `check`.
//!
//! With `object_lock` set, every upload of a [`FileKind::is_locked`] kind carries
//! `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date` (now plus the days), and
//! a CRC32 checksum (S3 requires Content-MD5 or a checksum with them). A delete of such a kind
//! first reads the object's retention (HEAD) and, while it runs, sends no DELETE and fails with
//! [`BackendError::Retained`]; once it has expired, in a versioned bucket it deletes every
//! version of the object by its id (see [`super::versions`]), so no copy stays behind.
//! Without `object_lock`, a DELETE that only made a delete marker (a versioned bucket) is
//! followed by the same, and a DELETE the server refuses is looked at like a HEAD: both for
//! buckets that lock objects by a default retention Hort was not told about.

use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::DateTime as AwsDateTime;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockEnabled, ObjectLockMode};
use chrono::{DateTime, Utc};
use hort_protocol::LockMode;

use super::{S3Backend, remote, status};
use crate::backend::{BackendError, FileKind};

/// An object's Object Lock state, from a HEAD request.
pub(super) struct Retention {
    /// When its retention ends, if that is in the future.
    pub until: Option<DateTime<Utc>>,
    /// The version the HEAD saw (versioned buckets).
    pub version: Option<String>,
    /// Whether the object exists.
    pub exists: bool,
    /// When the object (version) was written.
    pub modified: Option<DateTime<Utc>>,
}

impl S3Backend {
    /// The lock headers of an upload of `kind`: none unless the target locks that kind.
    pub(super) fn lock_for(&self, kind: FileKind) -> (Option<ObjectLockMode>, Option<AwsDateTime>) {
        match self.object_lock {
            Some(lock) if kind.is_locked() => {
                let mode = match lock.mode {
                    LockMode::Governance => ObjectLockMode::Governance,
                    LockMode::Compliance => ObjectLockMode::Compliance,
                };
                let until = Utc::now() + chrono::Duration::days(i64::from(lock.days));
                (Some(mode), Some(AwsDateTime::from_secs(until.timestamp())))
            }
            _ => (None, None),
        }
    }

    /// The checksum an upload of `kind` carries: CRC32 when it carries lock headers.
    pub(super) fn checksum(&self, kind: FileKind) -> Option<ChecksumAlgorithm> {
        (self.object_lock.is_some() && kind.is_locked()).then_some(ChecksumAlgorithm::Crc32)
    }

    /// The client settings of an upload of `kind`: with lock headers the SDK computes the
    /// checksum (the client's default computes only those an operation requires).
    pub(super) fn checksum_config(&self, kind: FileKind) -> aws_sdk_s3::config::Builder {
        let mut config = aws_sdk_s3::config::Builder::default();
        if self.checksum(kind).is_some() {
            config = config.request_checksum_calculation(RequestChecksumCalculation::WhenSupported);
        }
        config
    }

    /// The retention of the object or of one of its versions (HEAD).
    pub(super) fn retention(
        &self,
        kind: FileKind,
        name: &str,
        version: Option<&str>,
    ) -> Result<Retention, BackendError> {
        let location = self.location(kind, name);
        self.runtime.block_on(async {
            let head = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(self.key(kind, name))
                .set_version_id(version.map(str::to_owned))
                .send()
                .await;
            let head = match head {
                Ok(head) => head,
                Err(e) if status(&e) == Some(404) || e.code() == Some("NoSuchVersion") => {
                    return Ok(Retention {
                        until: None,
                        version: None,
                        exists: false,
                        modified: None,
                    });
                }
                Err(e) => return Err(remote(location, e)),
            };
            let until = head
                .object_lock_retain_until_date()
                .filter(|_| head.object_lock_mode().is_some())
                .and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
                .filter(|until| *until > Utc::now());
            Ok(Retention {
                until,
                version: head.version_id().map(str::to_owned),
                exists: true,
                modified: head
                    .last_modified()
                    .and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos())),
            })
        })
    }

    /// Deletes an object unless its retention still runs (see the module).
    pub(super) fn delete_unless_retained(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let location = self.location(kind, name);
        if self.object_lock.is_some() && kind.is_locked() {
            let retention = self.retention(kind, name, None)?;
            if let Some(until) = retention.until {
                return Err(BackendError::Retained { location, until });
            }
            if !retention.exists {
                return Ok(());
            }
            if let Some(seen) = retention.version.filter(|v| v != "null") {
                return self.delete_versions(kind, name, Some(&seen));
            }
        }
        match self.delete_current(kind, name) {
            Ok(true) => self.delete_versions(kind, name, None),
            Ok(false) => Ok(()),
            Err(BackendError::Refused { location, message }) => match self.refused_until(kind, name, None) {
                Ok(Some(until)) => Err(BackendError::Retained { location, until }),
                _ => Err(BackendError::Refused { location, message }),
            },
            Err(e) => Err(e),
        }
    }

    /// When the retention that made the server refuse to delete the object (or its
    /// `version`) ends, if it still runs: as its HEAD tells or, for a server that does not
    /// show a bucket's default retention on the object (Versity Gateway), the bucket's default
    /// counted from when the version was written.
    pub(super) fn refused_until(
        &self,
        kind: FileKind,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>, BackendError> {
        let retention = self.retention(kind, name, version)?;
        let (None, Some(modified)) = (retention.until, retention.modified) else {
            return Ok(retention.until);
        };
        let period = self.default_retention()?;
        Ok(period.map(|p| modified + p).filter(|until| *until > Utc::now()))
    }

    /// The bucket's default retention period, if it has one the keys may read.
    fn default_retention(&self) -> Result<Option<chrono::Duration>, BackendError> {
        let location = format!("s3://{}", self.bucket);
        self.runtime.block_on(async {
            let out = match self
                .client
                .get_object_lock_configuration()
                .bucket(&self.bucket)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if status(&e).is_some_and(|s| (400..500).contains(&s) || s == 501) => return Ok(None),
                Err(e) => return Err(remote(location, e)),
            };
            let default = out
                .object_lock_configuration()
                .and_then(|c| c.rule())
                .and_then(|r| r.default_retention());
            Ok(default.and_then(|d| {
                let days = d.days().map(i64::from).or(d.years().map(|y| 365 * i64::from(y)))?;
                Some(chrono::Duration::days(days))
            }))
        })
    }

    /// Whether the bucket has Object Lock enabled; `None` when the server does not implement
    /// the question.
    pub(super) fn lock_configuration(&self) -> Result<Option<bool>, BackendError> {
        let location = format!("s3://{}", self.bucket);
        self.runtime.block_on(async {
            match self
                .client
                .get_object_lock_configuration()
                .bucket(&self.bucket)
                .send()
                .await
            {
                Ok(out) => Ok(Some(
                    out.object_lock_configuration().and_then(|c| c.object_lock_enabled())
                        == Some(&ObjectLockEnabled::Enabled),
                )),
                Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Ok(Some(false)),
                Err(e) if status(&e) == Some(501) || e.code() == Some("NotImplemented") => Ok(None),
                Err(e) => Err(remote(location, e)),
            }
        })
    }
}
