//! Archive storage classes (`GLACIER`, `DEEP_ARCHIVE`): objects in them answer a GET with
//! `InvalidObjectState` until a restore (RestoreObject) has made a temporary copy readable,
//! which takes minutes to hours. Before a restore reads packs, [`S3Backend::restore_archived`]
//! looks at each (HEAD: storage class and `x-amz-restore`), requests the restore of those
//! still archived, and waits up to a bound for all of them.

use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, StorageClass, Tier};
use tracing::info;

use super::{S3Backend, remote, status};
use crate::backend::{Backend, BackendError, FileKind};

/// Days a restored copy stays readable: long enough for a restore that waited and then ran.
pub const RESTORE_DAYS: i32 = 7;

/// Whether objects of `class` must be restored before they can be read.
pub(super) fn is_archive_class(class: &StorageClass) -> bool {
    matches!(class, StorageClass::Glacier | StorageClass::DeepArchive)
}

/// Where one pack stands, from a HEAD request.
enum State {
    /// Not on this target.
    Absent,
    /// Readable now: in a readable class, or restored.
    Readable,
    /// Archived; `requested` when a restore is under way.
    Archived { class: StorageClass, requested: bool },
}

impl S3Backend {
    fn archive_state(&self, name: &str) -> Result<State, BackendError> {
        let location = self.location(FileKind::Pack, name);
        self.runtime.block_on(async {
            let head = match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(self.key(FileKind::Pack, name))
                .send()
                .await
            {
                Ok(head) => head,
                Err(e) if status(&e) == Some(404) => return Ok(State::Absent),
                Err(e) => return Err(remote(location, e)),
            };
            let Some(class) = head.storage_class().filter(|c| is_archive_class(c)).cloned() else {
                return Ok(State::Readable);
            };
            Ok(match head.restore() {
                Some(restore) if restore.contains("ongoing-request=\"false\"") => State::Readable,
                Some(_) => State::Archived { class, requested: true },
                None => State::Archived {
                    class,
                    requested: false,
                },
            })
        })
    }

    fn request_restore(&self, name: &str) -> Result<(), BackendError> {
        let location = self.location(FileKind::Pack, name);
        self.runtime.block_on(async {
            let request = RestoreRequest::builder()
                .days(RESTORE_DAYS)
                .glacier_job_parameters(
                    GlacierJobParameters::builder()
                        .tier(Tier::Standard)
                        .build()
                        .map_err(|e| BackendError::Config(e.to_string()))?,
                )
                .build();
            match self
                .client
                .restore_object()
                .bucket(&self.bucket)
                .key(self.key(FileKind::Pack, name))
                .restore_request(request)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some("RestoreAlreadyInProgress") => Ok(()),
                Err(e) => Err(remote(location, e)),
            }
        })
    }

    /// Requests the restore of every pack of `names` this target holds archived and waits up
    /// to `wait` until all are readable; returns the names it held archived.
    pub(super) fn restore_archived(&self, names: &[String], wait: Duration) -> Result<Vec<String>, BackendError> {
        let deadline = Instant::now() + wait;
        let mut archived = Vec::new();
        let mut pending = Vec::new();
        for name in names {
            match self.archive_state(name)? {
                State::Absent | State::Readable => {}
                State::Archived { class, requested } => {
                    if !requested {
                        self.request_restore(name)?;
                    }
                    archived.push(name.clone());
                    pending.push((name.clone(), class));
                }
            }
        }
        if !pending.is_empty() {
            info!(target_location = %self.describe(), packs = pending.len(), ?wait,
                  "restore from the archive requested; waiting");
        }
        let pause = (wait / 20).clamp(Duration::from_millis(200), Duration::from_secs(60));
        loop {
            let mut still = Vec::new();
            for (name, class) in pending {
                if matches!(self.archive_state(&name)?, State::Archived { .. }) {
                    still.push((name, class));
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(archived);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        }
        let shown: Vec<String> = pending
            .iter()
            .take(5)
            .map(|(n, _)| self.key(FileKind::Pack, n))
            .collect();
        let more = pending.len().saturating_sub(shown.len());
        Err(BackendError::Archived {
            location: format!(
                "s3://{}: {} packs ({}{}); their restore was requested (RestoreObject, {RESTORE_DAYS} days) \
                 and had not completed after waiting {}s: run the restore again once it has (archive restores \
                 take hours), or allow a longer wait",
                self.bucket,
                pending.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                wait.as_secs()
            ),
            class: pending[0].1.to_string(),
        })
    }
}
