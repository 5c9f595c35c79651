//! The snapshot a RestoreRequest or a Verification reads, and its group: both looked up,
//! recorded as conditions (with an Event on each change), and handed back once usable.

use hort_crds::backup_job::BackupJob;
use hort_crds::common::{GroupRef, Phase};
use hort_crds::restore_request::RestoreSource;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, Resource};

use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::Result;
use crate::events;
use crate::group_access::{self, Group};

/// Name of the condition that tells whether the snapshot to read is known.
pub const SNAPSHOT_RESOLVED: &str = "SnapshotResolved";

/// What [`resolve`] found.
#[derive(Debug)]
pub enum Resolved {
    /// The group is ready and the snapshot known (or found by tags when the pod starts).
    Ready(Group),
    /// The snapshot or the group is missing or not ready yet.
    Waiting,
    /// The namespace may not use the group (the message says why): waiting would not help.
    Refused(String),
}

/// The fields of a restore's or verification's status that resolving its source writes.
pub struct SourceStatus<'a> {
    /// Set to Pending.
    pub phase: &'a mut Phase,
    /// The snapshot id, when known.
    pub snapshot_id: &'a mut Option<String>,
    /// Why it waits, or which snapshot it reads.
    pub message: &'a mut Option<String>,
    /// `SnapshotResolved` and `StorageGroupReady` are set here.
    pub conditions: &'a mut Vec<Condition>,
}

/// Looks up the snapshot `source` names (its BackupJob, when it names one; nothing for a
/// verification of the whole repository, which has no source) and the group `group_ref`
/// names for `namespace`, and records both in `status`, with an Event on `obj` for each
/// condition that changes.
pub async fn resolve<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    namespace: &str,
    source: Option<&RestoreSource>,
    group_ref: &GroupRef,
    status: SourceStatus<'_>,
    now: Timestamp,
) -> Result<Resolved> {
    let job = match source.and_then(|s| s.backup_job_ref.as_ref()) {
        Some(r) => {
            Api::<BackupJob>::namespaced(ctx.client.clone(), namespace)
                .get_opt(&r.name)
                .await?
        }
        None => None,
    };
    let (snapshot, resolved) = match source {
        Some(source) => {
            let (snapshot, resolved) = resolve_snapshot(source, job.as_ref());
            (snapshot, Some(resolved))
        }
        None => (None, None),
    };
    let found = group_access::find(ctx, namespace, group_ref).await?;
    let refused = found.refused().then(|| found.observation.message.clone());
    let unresolved = resolved.as_ref().filter(|r| r.status == Status::False);

    *status.phase = Phase::Pending;
    *status.snapshot_id = snapshot;
    *status.message = Some(unresolved.unwrap_or(&found.observation).message.clone());
    let can_start = unresolved.is_none();
    let generation = obj.meta().generation;
    for observation in resolved.into_iter().chain([found.observation]) {
        let before = conditions::find(status.conditions, observation.type_).cloned();
        events::on_transition(ctx, obj, before.as_ref(), &observation).await;
        conditions::set(status.conditions, observation, generation, now);
    }
    Ok(match (refused, found.ready) {
        (Some(why), _) => Resolved::Refused(why),
        (None, Some(group)) if can_start => Resolved::Ready(group),
        (None, _) => Resolved::Waiting,
    })
}

/// The snapshot id, when known, and the `SnapshotResolved` condition. `job` is the BackupJob
/// named by `source.backupJobRef`, if it exists.
fn resolve_snapshot(source: &RestoreSource, job: Option<&BackupJob>) -> (Option<String>, Observation) {
    let observation = |status, reason, message: String| Observation {
        type_: SNAPSHOT_RESOLVED,
        status,
        reason,
        message,
    };
    if let Some(id) = &source.snapshot_id {
        let message = format!("snapshot {id} (spec.source.snapshotId)");
        return (Some(id.clone()), observation(Status::True, "SnapshotId", message));
    }
    if let Some(r) = &source.backup_job_ref {
        let name = &r.name;
        let Some(job) = job else {
            let message = format!("BackupJob {name:?} (spec.source.backupJobRef) not found");
            return (None, observation(Status::False, "BackupJobNotFound", message));
        };
        let job_status = job.status.clone().unwrap_or_default();
        return match (job_status.phase, job_status.snapshot_id) {
            (Phase::Succeeded, Some(id)) => {
                let message = format!("snapshot {id} written by BackupJob {name:?}");
                (Some(id), observation(Status::True, "FromBackupJob", message))
            }
            (Phase::Failed, _) => {
                let message = format!("BackupJob {name:?} (spec.source.backupJobRef) failed and wrote no snapshot");
                (None, observation(Status::False, "BackupJobFailed", message))
            }
            (phase, _) => {
                let message = format!("waiting for BackupJob {name:?} to succeed (it is {phase:?})");
                (None, observation(Status::False, "BackupJobNotFinished", message))
            }
        };
    }
    let message = format!(
        "the newest snapshot tagged {:?} is looked up in the repository when the restore starts",
        source.tags
    );
    (None, observation(Status::Unknown, "ByTags", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hort_crds::backup_job::BackupJobStatus;
    use hort_crds::common::LocalObjectRef;

    fn by_job(name: &str) -> RestoreSource {
        RestoreSource {
            backup_job_ref: Some(LocalObjectRef { name: name.into() }),
            snapshot_id: None,
            tags: vec![],
        }
    }

    fn job(phase: Phase, snapshot: Option<&str>) -> BackupJob {
        let mut job: BackupJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
            "metadata": {"name": "nightly"},
            "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}}
        }))
        .unwrap();
        job.status = Some(BackupJobStatus {
            phase,
            snapshot_id: snapshot.map(Into::into),
            ..BackupJobStatus::default()
        });
        job
    }

    #[test]
    fn snapshot_of_a_succeeded_job() {
        let (id, c) = resolve_snapshot(&by_job("nightly"), Some(&job(Phase::Succeeded, Some("ab12cd34"))));
        assert_eq!(id.as_deref(), Some("ab12cd34"));
        assert_eq!(c.status, Status::True);
    }

    #[test]
    fn unfinished_failed_and_missing_jobs_are_named() {
        let (id, c) = resolve_snapshot(&by_job("nightly"), Some(&job(Phase::Running, None)));
        assert!(id.is_none());
        assert_eq!(c.reason, "BackupJobNotFinished");
        assert!(c.message.contains("\"nightly\"") && c.message.contains("Running"));
        let (_, c) = resolve_snapshot(&by_job("nightly"), Some(&job(Phase::Failed, None)));
        assert_eq!(c.reason, "BackupJobFailed");
        let (_, c) = resolve_snapshot(&by_job("gone"), None);
        assert_eq!(c.reason, "BackupJobNotFound");
        assert!(c.message.contains("spec.source.backupJobRef"));
    }

    #[test]
    fn explicit_id_needs_no_lookup() {
        let source = RestoreSource {
            backup_job_ref: None,
            snapshot_id: Some("0123abcd".into()),
            tags: vec![],
        };
        let (id, c) = resolve_snapshot(&source, None);
        assert_eq!(id.as_deref(), Some("0123abcd"));
        assert_eq!(c.status, Status::True);
    }
}
