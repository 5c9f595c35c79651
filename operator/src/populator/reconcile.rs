//! The populator's reconcile of one claim: reads what [`decide`](super::decide) needs, and
//! carries out the step it chose. What a user should see is an Event on the claim; the
//! VolumeRestoreSource's conditions say whether its snapshot and group can be used and how the
//! last population went.

use std::sync::Arc;
use std::time::Duration;

use hort_crds::VolumeRestoreSource;
use hort_crds::common::Phase;
use hort_crds::volume_restore_source::VolumeRestoreSourceStatus;
use hort_protocol::RestoreReport;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::build::{self, RestorePod};
use super::decide::{self, Facts, PodFacts, Step};
use super::{ATTEMPT_LABEL, CLAIM_LABEL, POPULATED_FROM, SELECTED_NODE, source_name};
use crate::agent::{api, outcome};
use crate::backup_job::STORAGE_GROUP_READY;
use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::references::RECHECK_INTERVAL;
use crate::snapshot_source::{self, Resolved, SourceStatus};
use crate::status;

/// Annotation on a failed restore pod whose failure was reported.
const FAILURE_REPORTED: &str = "hort.dev/failure-reported";

/// The VolumeRestoreSource condition that says how the last population went.
pub const POPULATED: &str = "Populated";

/// Reconciles one claim: nothing unless it names a VolumeRestoreSource; otherwise the next
/// step of its population.
pub async fn reconcile(cached: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action> {
    let Some((namespace, claim)) = status::refetch(&ctx.client, &*cached).await? else {
        return Ok(Action::await_change());
    };
    let Some(source) = source_name(&claim).map(str::to_owned) else {
        return Ok(Action::await_change());
    };
    if claim.metadata.deletion_timestamp.is_some() {
        // The prime claim and pod are owned by the claim and go with it.
        return Ok(Action::await_change());
    }
    let uid = claim.metadata.uid.clone().ok_or(Error::MissingObjectField {
        kind: "PersistentVolumeClaim",
        field: "metadata.uid",
    })?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let (facts, pod) = facts(&ctx, &claim, &uid, &claims, &pods).await?;
    match decide::decide(facts) {
        Step::Done | Step::WaitForNode | Step::Follow => Ok(Action::await_change()),
        // The PV controller's work: its changes to the claims trigger a reconcile, and a slow
        // or missed one is looked at again.
        Step::WaitForPrimeVolume | Step::WaitForBind => Ok(Action::requeue(RECHECK_INTERVAL)),
        Step::Unsupported => {
            let note = format!(
                "claim {:?} has volumeMode Block, and VolumeRestoreSource {source:?} restores files: \
                 create the claim with volumeMode Filesystem",
                claim.name_any()
            );
            events::publish(&ctx, &claim, EventType::Warning, "PopulateFailed", note).await;
            Ok(Action::await_change())
        }
        Step::CreatePrime { node } => {
            let owner = claim
                .controller_owner_ref(&())
                .expect("a stored claim has a name and uid");
            let prime = build::prime_claim(&claim, owner, node.as_deref());
            match claims.create(&PostParams::default(), &prime).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Action::await_change()),
                Err(e) => Err(e.into()),
            }
        }
        Step::StartPod { attempt, node } => Ok(start(&ctx, &claim, &source, attempt, node).await?.action()),
        Step::Retry { attempt, node } => {
            // The failed pod stays until the next one starts: its attempt counts the backoff.
            let started = start(&ctx, &claim, &source, attempt, node).await?;
            if let (Start::Started, Some(failed)) = (&started, &pod) {
                api::delete(&pods, failed).await?;
            }
            Ok(started.action())
        }
        Step::BackOff { wait } => Ok(Action::requeue(wait)),
        Step::ReportFailure { why, attempt, wait } => {
            let pod_name = pod.as_ref().map(|p| p.name_any()).unwrap_or_default();
            let note = format!(
                "restore pod {pod_name:?} (attempt {attempt}) from VolumeRestoreSource {source:?} failed: {why}; \
                 the next attempt starts in {}s",
                wait.as_secs()
            );
            events::publish(&ctx, &claim, EventType::Warning, "PopulateFailed", note.clone()).await;
            let failed = Observation {
                type_: POPULATED,
                status: Status::False,
                reason: "PopulateFailed",
                message: format!("claim {:?}: {note}", claim.name_any()),
            };
            set_source_condition(&ctx, &namespace, &source, failed).await?;
            // Marked, so that the failure is reported once; the pod's change brings the next step.
            let mark = json!({"metadata": {"annotations": {FAILURE_REPORTED: "true"}}});
            pods.patch(&pod_name, &PatchParams::default(), &Patch::Merge(&mark))
                .await?;
            Ok(Action::requeue(wait.max(Duration::from_millis(100))))
        }
        Step::Rebind { volume } => {
            rebind(&ctx, &claim, &namespace, &source, &volume).await?;
            Ok(Action::await_change())
        }
        Step::Bypassed { volume } => {
            let note = format!(
                "claim {:?} was bound to volume {volume:?}, which Hort did not fill: it does not hold the \
                 snapshot of VolumeRestoreSource {source:?}. The provisioner of its StorageClass provisioned \
                 it although the claim names a data source it does not know (CSI's external-provisioner \
                 leaves such claims to their populator; Rancher's local-path provisioner does not): \
                 delete the claim and create it with a StorageClass of a CSI driver",
                claim.name_any()
            );
            events::publish(&ctx, &claim, EventType::Warning, "PopulateBypassed", note.clone()).await;
            let bypassed = Observation {
                type_: POPULATED,
                status: Status::False,
                reason: "PopulateBypassed",
                message: note,
            };
            set_source_condition(&ctx, &namespace, &source, bypassed).await?;
            clean_up(&claims, &pods, &uid).await?;
            Ok(Action::await_change())
        }
        Step::CleanUp { report } => {
            if let Some(report) = report {
                populated(&ctx, &claim, &namespace, &source, &report).await?;
            }
            clean_up(&claims, &pods, &uid).await?;
            Ok(Action::await_change())
        }
    }
}

/// Deletes the restore pods and the prime claim of the claim with `uid`.
async fn clean_up(claims: &Api<PersistentVolumeClaim>, pods: &Api<Pod>, uid: &str) -> Result<()> {
    for pod in pods.list(&by_claim(uid)).await? {
        api::delete(pods, &pod).await?;
    }
    match claims.delete(&build::prime_name(uid), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The objects of the claim with `uid`: its prime claim and restore pods.
fn by_claim(uid: &str) -> ListParams {
    ListParams::default().labels(&format!("{CLAIM_LABEL}={uid}"))
}

/// Reads the facts of `claim`, and its newest restore pod.
async fn facts(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    uid: &str,
    claims: &Api<PersistentVolumeClaim>,
    pods: &Api<Pod>,
) -> Result<(Facts, Option<Pod>)> {
    let spec = claim.spec.clone().unwrap_or_default();
    let claim_volume = spec.volume_name.filter(|v| !v.is_empty());
    let claim_volume_populated = match &claim_volume {
        Some(volume) => Api::<PersistentVolume>::all(ctx.client.clone())
            .get_opt(volume)
            .await?
            .is_some_and(|pv| pv.annotations().contains_key(POPULATED_FROM)),
        None => false,
    };
    let wait_for_first_consumer = match (&claim_volume, &spec.storage_class_name) {
        (None, Some(class)) => Api::<StorageClass>::all(ctx.client.clone())
            .get_opt(class)
            .await?
            .and_then(|c| c.volume_binding_mode)
            .is_some_and(|m| m == "WaitForFirstConsumer"),
        _ => false,
    };
    let prime = claims
        .get_opt(&build::prime_name(uid))
        .await?
        .map(|p| p.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty()));
    let pod = pods
        .list(&by_claim(uid))
        .await?
        .items
        .into_iter()
        .max_by_key(attempt_of);
    let pod_facts = pod.as_ref().map(|p| {
        if !outcome::finished(p) {
            return PodFacts::Running;
        }
        let failed = |why| PodFacts::Failed {
            why,
            attempt: attempt_of(p),
            finished_at: outcome::finished_at(p),
            reported: p.annotations().contains_key(FAILURE_REPORTED),
        };
        if outcome::phase(p) != "Succeeded" {
            return failed(outcome::failure(p, 600));
        }
        match outcome::decode_report::<RestoreReport>(p) {
            Ok(report) => PodFacts::Succeeded(report),
            Err(e) => failed(e.to_string()),
        }
    });
    let volume_claim_uid = match (&prime, &pod_facts) {
        (Some(Some(volume)), Some(PodFacts::Succeeded(_))) => Api::<PersistentVolume>::all(ctx.client.clone())
            .get_opt(volume)
            .await?
            .and_then(|pv| pv.spec?.claim_ref?.uid),
        _ => None,
    };
    let facts = Facts {
        claim_volume,
        claim_volume_populated,
        block: claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block"),
        claim_bound: claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"),
        wait_for_first_consumer,
        selected_node: claim.annotations().get(SELECTED_NODE).cloned(),
        prime,
        pod: pod_facts,
        volume_claim_uid,
        claim_uid: uid.into(),
        retry_backoff: ctx.agent.retry_backoff,
        now: ctx.clock.now(),
    };
    Ok((facts, pod))
}

/// The attempt a restore pod is (0 when its label is missing).
fn attempt_of(pod: &Pod) -> u32 {
    pod.labels()
        .get(ATTEMPT_LABEL)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// What [`start`] did.
enum Start {
    /// The restore pod was created.
    Started,
    /// Something it needs is missing or not ready (an Event on the claim says what).
    Waiting,
}

impl Start {
    /// When to look at the claim again: at its pod's changes, or after [`RECHECK_INTERVAL`]
    /// (the operator watches no Secrets, and a source's group is not watched for claims).
    fn action(&self) -> Action {
        match self {
            Start::Started => Action::await_change(),
            Start::Waiting => Action::requeue(RECHECK_INTERVAL),
        }
    }
}

/// Resolves the source's snapshot and group (recording both on the VolumeRestoreSource) and,
/// when both can be used, starts attempt `attempt` of the restore pod. While something is
/// missing, a Warning Event on the claim names it.
async fn start(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    source_name: &str,
    attempt: u32,
    node: Option<String>,
) -> Result<Start> {
    let namespace = status::namespace_of(claim)?;
    let claim_name = claim.name_any();
    let sources: Api<VolumeRestoreSource> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(source) = sources.get_opt(source_name).await? else {
        let note = format!(
            "VolumeRestoreSource {source_name:?} (spec.dataSourceRef of claim {claim_name:?}) not found in namespace \
             {namespace:?}: create it, or name an existing one in the claim's dataSourceRef"
        );
        events::publish(ctx, claim, EventType::Warning, "SourceNotFound", note).await;
        return Ok(Start::Waiting);
    };
    let mut status = source.status.clone().unwrap_or_default();
    let mut phase = Phase::Pending;
    let resolved = snapshot_source::resolve(
        ctx,
        &source,
        &namespace,
        Some(&source.spec.source),
        &source.spec.storage_group_ref,
        SourceStatus {
            phase: &mut phase,
            snapshot_id: &mut status.snapshot_id,
            message: &mut status.message,
            conditions: &mut status.conditions,
        },
        ctx.clock.now(),
    )
    .await?;
    if source.status.as_ref() != Some(&status) {
        status::apply(&ctx.client, &source, &status).await?;
    }
    // Also a namespace the shared group does not select waits: its labels may change.
    let Resolved::Ready(group) = resolved else {
        let (reason, why) = waiting_for(&status);
        let note = format!("VolumeRestoreSource {source_name:?} cannot be restored yet: {why}");
        events::publish(ctx, claim, EventType::Warning, &reason, note).await;
        return Ok(Start::Waiting);
    };
    let pod = build::restore_pod(
        &ctx.agent,
        RestorePod {
            source: &source.spec,
            access: group.access(None),
            snapshot: status.snapshot_id.as_deref(),
            owner: claim
                .controller_owner_ref(&())
                .expect("a stored claim has a name and uid"),
            namespace: namespace.clone(),
            attempt,
            node,
        },
    );
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    api::create(&pods, &pod).await?;
    let snapshot = status
        .snapshot_id
        .as_deref()
        .unwrap_or("the newest with the source's tags");
    let note = format!(
        "restore pod {:?} (attempt {attempt}) restores snapshot {snapshot} of {} {:?} from \
         VolumeRestoreSource {source_name:?}",
        pod.name_any(),
        if source.spec.storage_group_ref.kind.is_storage_group() {
            "StorageGroup"
        } else {
            "ClusterStorageGroup"
        },
        source.spec.storage_group_ref.name
    );
    events::publish(ctx, claim, EventType::Normal, "PopulateStarted", note).await;
    Ok(Start::Started)
}

/// The reason and message of the first condition of `status` (snapshot, then group) that
/// holds the restore back, e.g. `BackupJobNotFound` or `StorageGroupNotReady`.
fn waiting_for(status: &VolumeRestoreSourceStatus) -> (String, String) {
    let blocking = [snapshot_source::SNAPSHOT_RESOLVED, STORAGE_GROUP_READY]
        .into_iter()
        .filter_map(|type_| conditions::find(&status.conditions, type_))
        .find(|c| c.status == "False");
    match blocking {
        Some(c) => (c.reason.clone(), c.message.clone()),
        None => ("SourceNotReady".into(), status.message.clone().unwrap_or_default()),
    }
}

/// Points volume `volume` (the prime claim's, now holding the restored files) at `claim`, so
/// that the PV controller binds it there. The volume stays bound throughout: its reclaim policy
/// never applies.
async fn rebind(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    namespace: &str,
    source: &str,
    volume: &str,
) -> Result<()> {
    let patch = json!({
        "metadata": {"annotations": {POPULATED_FROM: format!("{namespace}/{source}")}},
        "spec": {"claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": namespace,
            "name": claim.name_any(),
            "uid": claim.metadata.uid,
            "resourceVersion": claim.metadata.resource_version,
        }}
    });
    Api::<PersistentVolume>::all(ctx.client.clone())
        .patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Reports a finished population: the `Populated` Event on the claim and the condition on the
/// source.
async fn populated(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    namespace: &str,
    source: &str,
    report: &RestoreReport,
) -> Result<()> {
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let note = format!(
        "snapshot {} of VolumeRestoreSource {source:?} restored into volume {volume:?}: {} files, {} bytes, in {:.1}s",
        report.snapshot_id, report.files, report.bytes_restored, report.duration_seconds
    );
    events::publish(ctx, claim, EventType::Normal, "Populated", note.clone()).await;
    let done = Observation {
        type_: POPULATED,
        status: Status::True,
        reason: "Populated",
        message: format!("claim {:?}: {note}", claim.name_any()),
    };
    set_source_condition(ctx, namespace, source, done).await
}

/// Sets `observation` on VolumeRestoreSource `name`, if it still exists.
async fn set_source_condition(ctx: &Context, namespace: &str, name: &str, observation: Observation) -> Result<()> {
    let Some(source) = status::fresh::<VolumeRestoreSource>(&ctx.client, namespace, name).await? else {
        return Ok(());
    };
    let mut status = source.status.clone().unwrap_or_default();
    let generation = source.meta().generation;
    conditions::set(&mut status.conditions, observation, generation, ctx.clock.now());
    if source.status.as_ref() != Some(&status) {
        status::apply(&ctx.client, &source, &status).await?;
    }
    Ok(())
}
