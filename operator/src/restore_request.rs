//! Reconciler of `RestoreRequest`: resolves which snapshot to restore and whether the
//! StorageGroup is ready, and keeps the request Pending until both hold.

use std::sync::Arc;

use hort_crds::backup_job::BackupJob;
use hort_crds::common::Phase;
use hort_crds::restore_request::{RestoreRequest, RestoreSource, RestoreTarget, TargetKind};
use hort_crds::storage_group::StorageGroup;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use crate::backup_job::group_readiness;
use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::Result;
use crate::events;
use crate::status;

/// Name of the condition that tells whether the snapshot to restore is known.
pub const SNAPSHOT_RESOLVED: &str = "SnapshotResolved";

/// Reconciles one RestoreRequest.
pub async fn reconcile(cached: Arc<RestoreRequest>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = status::namespace_of(&*cached)?;
    let Some(request) = status::fresh::<RestoreRequest>(&ctx.client, &namespace, &cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let mut status = request.status.clone().unwrap_or_default();
    if status.phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let generation = request.metadata.generation;
    let now = ctx.clock.now();

    let job = match &request.spec.source.backup_job_ref {
        Some(r) => {
            Api::<BackupJob>::namespaced(ctx.client.clone(), &namespace)
                .get_opt(&r.name)
                .await?
        }
        None => None,
    };
    let (snapshot, resolved) = resolve_snapshot(&request.spec.source, job.as_ref());
    let group_name = &request.spec.storage_group_ref.name;
    let group = Api::<StorageGroup>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(group_name)
        .await?;
    let group_ready = group_readiness(group_name, &namespace, group.as_ref());

    status.phase = Phase::Pending;
    status.observed_generation = generation;
    status.target_kind = target_kind(&request.spec.target);
    status.snapshot_id = snapshot;
    status.message = Some(if resolved.status == Status::True {
        group_ready.message.clone()
    } else {
        resolved.message.clone()
    });
    for observation in [resolved, group_ready] {
        let before = conditions::find(&status.conditions, observation.type_).cloned();
        events::on_transition(&ctx, &request, before.as_ref(), &observation).await;
        conditions::set(&mut status.conditions, observation, generation, now);
    }
    if request.status.as_ref() != Some(&status) {
        status::apply(&ctx.client, &request, &status).await?;
    }
    Ok(Action::await_change())
}

/// The kind of target the request writes to.
pub fn target_kind(target: &RestoreTarget) -> Option<TargetKind> {
    match (&target.postgres, &target.mariadb, &target.volume) {
        (Some(_), None, None) => Some(TargetKind::Postgres),
        (None, Some(_), None) => Some(TargetKind::Mariadb),
        (None, None, Some(_)) => Some(TargetKind::Volume),
        _ => None,
    }
}

/// The snapshot id, when known, and the `SnapshotResolved` condition. `job` is the BackupJob
/// named by `source.backupJobRef`, if it exists.
pub fn resolve_snapshot(source: &RestoreSource, job: Option<&BackupJob>) -> (Option<String>, Observation) {
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
