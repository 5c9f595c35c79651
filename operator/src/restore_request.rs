//! Reconciler of `RestoreRequest`: resolves which snapshot to restore, waits for the
//! StorageGroup, runs the restore in an agent pod and records the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;

use hort_crds::common::Phase;
use hort_crds::restore_request::{
    RestoreRequest, RestoreRequestStatus, RestoreTarget, TargetKind, VolumeRestoreTarget,
};
use hort_protocol::RestoreReport;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::agent::pod::{self, AgentPod};
use crate::agent::{api, outcome, restore};
use crate::backup_job::next_progress_read;
use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::references::{self, Resolver};
use crate::snapshot_source::{self, Resolved, SourceStatus};
use crate::status;

/// Name of the condition set when the restore succeeded.
pub const COMPLETE: &str = "Complete";
/// Name of the condition set when the restore failed.
pub const FAILED: &str = "Failed";

/// Reconciles one RestoreRequest: resolves the snapshot, waits for the StorageGroup, creates
/// the target claim when asked, runs one restore pod and records its outcome.
pub async fn reconcile(cached: Arc<RestoreRequest>, ctx: Arc<Context>) -> Result<Action> {
    let Some((namespace, request)) = status::refetch(&ctx.client, &*cached).await? else {
        return Ok(Action::await_change());
    };
    let mut status = request.status.clone().unwrap_or_default();
    if status.phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let generation = request.metadata.generation;
    let now = ctx.clock.now();
    status.observed_generation = generation;
    status.target_kind = target_kind(&request.spec.target);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);

    let mut action = Action::await_change();
    let state = match &status.agent_pod {
        Some(name) => match pods.get_opt(name).await? {
            Some(pod) if !outcome::finished(&pod) => RestoreState::Running(Box::new(pod)),
            Some(pod) if outcome::phase(&pod) == "Succeeded" => match outcome::decode_report::<RestoreReport>(&pod) {
                Ok(report) => RestoreState::Succeeded(report),
                Err(e) => RestoreState::Failed(e.to_string()),
            },
            Some(pod) => RestoreState::Failed(outcome::failure(&pod, 600)),
            None => RestoreState::Failed(format!("agent pod {name:?} disappeared")),
        },
        None => RestoreState::NotStarted,
    };
    let step = match decide(state) {
        RestoreStep::Start => match start(&ctx, &request, &mut status, now).await? {
            Start::Started => None,
            Start::Waiting => {
                action = Action::requeue(references::RECHECK_INTERVAL);
                None
            }
            Start::Refused(why) => Some(RestoreStep::Fail {
                reason: RestoreFailure::InvalidReference,
                why: format!("nothing was written: {why}"),
            }),
            Start::NotAllowed(why) => Some(RestoreStep::Fail {
                reason: RestoreFailure::NamespaceNotAllowed,
                why: format!("nothing was written: {why}"),
            }),
        },
        // Running: show its progress until the pod ends (the pod watch triggers a reconcile
        // then).
        RestoreStep::Follow(pod) => {
            // Also before the kubelet reports the pod Running (see the BackupJob's reconcile).
            status.progress = api::progress(&pods, &pod.name_any()).await.or(status.progress.take());
            action = Action::requeue(next_progress_read(status.progress.as_ref()));
            None
        }
        ended => Some(ended),
    };
    match step {
        Some(RestoreStep::Succeed(report)) => {
            status.phase = Phase::Succeeded;
            status.stats = Some(restore::stats(&report));
            let kind = match status.target_kind {
                Some(TargetKind::Postgres) => "postgres",
                Some(TargetKind::Mariadb) => "mariadb",
                _ => "volume",
            };
            ctx.metrics
                .restore_duration
                .with_label_values(&[&namespace, kind])
                .observe(report.duration_seconds);
            status.snapshot_id = Some(report.snapshot_id.clone());
            let (message, done) = succeeded(&report);
            status.message = Some(message);
            events::on_transition(&ctx, &request, None, &done).await;
            conditions::set(&mut status.conditions, done, generation, now);
        }
        Some(RestoreStep::Fail { reason, why }) => {
            status.phase = Phase::Failed;
            status.message = Some(format!("restore failed: {why}"));
            let failed = Observation {
                type_: FAILED,
                status: Status::True,
                reason: reason.as_str(),
                message: why,
            };
            let event = Observation {
                status: Status::False,
                ..failed.clone()
            };
            events::on_transition(&ctx, &request, None, &event).await;
            conditions::set(&mut status.conditions, failed, generation, now);
        }
        _ => {}
    }
    if status.phase.is_terminal() {
        status.completion_time = Some(Time(now));
        status.progress = None;
    }

    if request.status.as_ref() != Some(&status) {
        status::apply(&ctx.client, &request, &status).await?;
    }
    if status.phase.is_terminal() {
        let result = if status.phase == Phase::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        ctx.metrics.restores.with_label_values(&[&namespace, result]).inc();
    }
    Ok(action)
}

/// Why a restore failed: the reason of its `Failed` condition and Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreFailure {
    /// The restore ran and failed (or its pod vanished, or its report could not be read).
    RestoreFailed,
    /// A referenced Secret or claim cannot be used as it is.
    InvalidReference,
    /// The namespace may not use the ClusterStorageGroup the request names.
    NamespaceNotAllowed,
}

impl RestoreFailure {
    /// The condition and Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreFailure::RestoreFailed => "RestoreFailed",
            RestoreFailure::InvalidReference => "InvalidReference",
            RestoreFailure::NamespaceNotAllowed => crate::group_access::NAMESPACE_NOT_ALLOWED,
        }
    }
}

/// Where a restore stands, as the reconciler found it.
#[derive(Debug)]
pub enum RestoreState {
    /// No agent pod was started yet.
    NotStarted,
    /// The agent pod has not finished.
    Running(Box<Pod>),
    /// The agent pod succeeded with this report.
    Succeeded(RestoreReport),
    /// The agent pod failed, vanished, or left no readable report: why.
    Failed(String),
}

/// What the reconciler does next with a restore.
#[derive(Debug, PartialEq)]
pub enum RestoreStep {
    /// Resolve the snapshot and start the agent pod when everything is ready.
    Start,
    /// Follow the running pod's progress.
    Follow(Box<Pod>),
    /// The restore succeeded.
    Succeed(RestoreReport),
    /// The restore failed.
    Fail {
        /// Why, as a condition reason.
        reason: RestoreFailure,
        /// What went wrong.
        why: String,
    },
}

/// Decides the next step of a restore from where it stands.
pub fn decide(state: RestoreState) -> RestoreStep {
    match state {
        RestoreState::NotStarted => RestoreStep::Start,
        RestoreState::Running(pod) => RestoreStep::Follow(pod),
        RestoreState::Succeeded(report) => RestoreStep::Succeed(report),
        RestoreState::Failed(why) => RestoreStep::Fail {
            reason: RestoreFailure::RestoreFailed,
            why,
        },
    }
}

/// The status message and `Complete` condition of a restore that reported `report`.
pub fn succeeded(report: &RestoreReport) -> (String, Observation) {
    let kept = match report.skipped {
        0 => String::new(),
        n => format!("; {n} existing entries kept by spec.target.volume.overwrite"),
    };
    let message = format!("snapshot {} restored{kept}", report.snapshot_id);
    let done = Observation {
        type_: COMPLETE,
        status: Status::True,
        reason: "RestoreSucceeded",
        message: format!(
            "snapshot {} restored: {} files or streams, {} bytes, in {:.1}s{kept}",
            report.snapshot_id, report.files, report.bytes_restored, report.duration_seconds
        ),
    };
    (message, done)
}

/// What [`start`] did.
enum Start {
    /// The restore pod was created.
    Started,
    /// The restore waits (for the snapshot, the group, a Secret or the target claim).
    Waiting,
    /// A referenced Secret or claim cannot be used as it is (not marked usable, a key
    /// missing): the request fails, saying why.
    Refused(String),
    /// The namespace may not use the shared group: the request fails, saying why.
    NotAllowed(String),
}

/// Resolves the snapshot, the group and the referenced Secret; when all are ready (and the
/// target claim exists and is usable, or was created), starts the restore pod.
async fn start(
    ctx: &Context,
    request: &RestoreRequest,
    status: &mut RestoreRequestStatus,
    now: Timestamp,
) -> Result<Start> {
    let namespace = status::namespace_of(request)?;
    let source_status = SourceStatus {
        phase: &mut status.phase,
        snapshot_id: &mut status.snapshot_id,
        message: &mut status.message,
        conditions: &mut status.conditions,
    };
    let spec = &request.spec;
    let resolved = snapshot_source::resolve(
        ctx,
        request,
        &namespace,
        Some(&spec.source),
        &spec.storage_group_ref,
        source_status,
        now,
    );
    let group = match resolved.await? {
        Resolved::Ready(group) => group,
        Resolved::Waiting => return Ok(Start::Waiting),
        Resolved::Refused(why) => return Ok(Start::NotAllowed(why)),
    };
    let snapshot = status.snapshot_id.clone();
    let problems = Resolver::new(&ctx.client, &namespace)
        .check(&restore::references(&request.spec))
        .await?;
    if problems.iter().any(|p| !p.may_resolve_itself()) {
        return Ok(Start::Refused(references::describe(&problems)));
    }
    if !problems.is_empty() {
        status.message = Some(format!("waiting: {}", references::describe(&problems)));
        return Ok(Start::Waiting);
    }
    if let Some(volume) = &request.spec.target.volume {
        match ensure_claim(ctx, &namespace, volume, status).await? {
            Start::Started => {}
            waiting_or_refused => return Ok(waiting_or_refused),
        }
    }

    let mut access = group.access(None);
    // The API server admits only specs with one target (a CEL rule on spec.target).
    let command =
        restore::command(&request.spec, snapshot.as_deref(), &mut access).ok_or(Error::MissingObjectField {
            kind: "RestoreRequest",
            field: "spec.target (one of postgres, mariadb, volume)",
        })?;
    let name = format!("{}-restore", request.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let claim = request.spec.target.volume.as_ref().map(|v| v.claim_name.as_str());
    let node = api::node_mounting(&ctx.client, &namespace, claim).await?;
    let pod = pod::build(
        &ctx.agent,
        AgentPod {
            name: name.clone(),
            namespace: namespace.clone(),
            owner: request
                .controller_owner_ref(&())
                .expect("a stored object has a name and uid"),
            labels: BTreeMap::new(),
            command,
            repository: access,
            overrides: request.spec.agent.as_ref(),
            active_deadline_seconds: restore::deadline(&request.spec, ctx.agent.default_deadline_seconds),
            node,
        },
    );
    api::create(&pods, &pod).await?;
    status.phase = Phase::Running;
    status.agent_pod = Some(name.clone());
    status.start_time = Some(Time(now));
    status.message = Some(format!("agent pod {name:?} restores the snapshot"));
    Ok(Start::Started)
}

/// Makes sure the target claim exists and is marked usable, creating it (marked) from
/// `storageClassName` and `size` when given: `Started` when the restore may write to it,
/// `Waiting` (and why, in `status`) when it is missing and cannot be created, `Refused` when
/// its owner has not marked it usable.
async fn ensure_claim(
    ctx: &Context,
    namespace: &str,
    volume: &VolumeRestoreTarget,
    status: &mut RestoreRequestStatus,
) -> Result<Start> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let field = "spec.target.volume.claimName";
    match Resolver::new(&ctx.client, namespace)
        .claim(&volume.claim_name, field)
        .await?[..]
    {
        [] => return Ok(Start::Started),
        [ref problem] if !problem.may_resolve_itself() => return Ok(Start::Refused(problem.to_string())),
        _ => {}
    }
    let (Some(class), Some(size)) = (&volume.storage_class_name, &volume.size) else {
        status.message = Some(format!(
            "waiting: PersistentVolumeClaim {:?} ({field}) not found; set storageClassName and size to create it",
            volume.claim_name
        ));
        return Ok(Start::Waiting);
    };
    let labels = [
        ("app.kubernetes.io/created-by".to_string(), "hort-operator".to_string()),
        (references::USABLE_LABEL.to_string(), "true".to_string()),
    ];
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(volume.claim_name.clone()),
            labels: Some(labels.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), size.clone())].into()),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    match claims.create(&PostParams::default(), &claim).await {
        Ok(_) => Ok(Start::Started),
        // Created meanwhile by someone else: look again whether its owner marked it.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            status.message = Some(format!(
                "waiting: PersistentVolumeClaim {:?} ({field}) appeared",
                volume.claim_name
            ));
            Ok(Start::Waiting)
        }
        Err(e) => Err(e.into()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(skipped: u64) -> RestoreReport {
        RestoreReport {
            snapshot_id: "ab12cd34".into(),
            bytes_restored: 2048,
            files: 3,
            skipped,
            duration_seconds: 0.5,
            row_counts: BTreeMap::new(),
        }
    }

    #[test]
    fn decide_maps_each_state_to_its_step() {
        assert_eq!(decide(RestoreState::NotStarted), RestoreStep::Start);
        let pod = Box::new(Pod::default());
        assert_eq!(decide(RestoreState::Running(pod.clone())), RestoreStep::Follow(pod));
        assert_eq!(
            decide(RestoreState::Succeeded(report(0))),
            RestoreStep::Succeed(report(0))
        );
        assert_eq!(
            decide(RestoreState::Failed("exit 1".into())),
            RestoreStep::Fail {
                reason: RestoreFailure::RestoreFailed,
                why: "exit 1".into()
            }
        );
    }

    #[test]
    fn a_success_says_how_many_existing_entries_were_kept() {
        let (message, done) = succeeded(&report(0));
        assert_eq!(message, "snapshot ab12cd34 restored");
        assert_eq!((done.reason, done.status), ("RestoreSucceeded", Status::True));
        assert!(
            done.message.contains("3 files or streams, 2048 bytes"),
            "{}",
            done.message
        );
        let (message, done) = succeeded(&report(2));
        assert_eq!(
            message,
            "snapshot ab12cd34 restored; 2 existing entries kept by spec.target.volume.overwrite"
        );
        assert!(done.message.ends_with("kept by spec.target.volume.overwrite"));
    }
}
