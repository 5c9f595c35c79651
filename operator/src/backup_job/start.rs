//! Starting a BackupJob's attempt: checks the group and the references, builds the
//! agent pod (and, for snapshots, what the prologue takes), and creates the pod or starts the
//! prologue.

use hort_crds::backup_job::{BackupJob, BackupJobStatus, ClaimSnapshot, SnapshotMode, VolumeSnapshotRecord};
use hort_crds::common::Phase;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Resource, ResourceExt};

use super::{JOB_LABEL, OnConflict, STORAGE_GROUP_READY, write};
use crate::agent::backup::SourceClaim;
use crate::agent::pod::{self, AgentPod};
use crate::agent::{api, backup};
use crate::backup_hooks::{self, AgentStart, HookStage, SnapshotsPlan, has_hooks, run_key};
use crate::conditions;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::group_access;
use crate::group_snapshot;
use crate::references::{self, Resolver};
use crate::schedule;
use crate::status;
use crate::volume_snapshot;

/// What [`attempt`] did.
pub(super) enum Begin {
    /// The attempt's agent pod was created.
    Started,
    /// The attempt was recorded and its prologue (see [`backup_hooks`]: the pod if it is known
    /// before the pre hooks, the pre hooks, the snapshots if any, then the pod) runs in the
    /// background: look again after [`HOOK_POLL`](super::HOOK_POLL).
    HooksRunning,
    /// The group is missing or not ready; a StorageGroup's watch triggers the next look, a
    /// ClusterStorageGroup is looked at again after [`references::RECHECK_INTERVAL`].
    WaitingForGroup,
    /// A referenced Secret or claim does not exist yet; nothing watches Secrets, so look again
    /// after [`references::RECHECK_INTERVAL`].
    WaitingForReference,
    /// The namespace may not use the shared group (reason `NamespaceNotAllowed`): the job
    /// failed before any data was read.
    NotAllowed,
    /// A referenced Secret or claim cannot be used as it is (not marked usable, a key missing):
    /// the job failed before any data was read.
    Refused,
}

/// Starts the next attempt if the group is ready and the Secret or claim of the source
/// is usable: creates the agent pod, or, when the job has pre hooks, records the attempt in
/// status and starts its prologue (see [`backup_hooks`]). Records the group's readiness as a
/// condition either way.
///
/// If the record cannot be written (e.g. the job changed since it was read), no hook runs.
pub(super) async fn attempt(
    ctx: &Context,
    job: &mut BackupJob,
    status: &mut BackupJobStatus,
    now: Timestamp,
) -> Result<Begin> {
    let namespace = status::namespace_of(&*job)?;
    let found = group_access::find(ctx, &namespace, &job.spec.storage_group_ref).await?;
    let refused = found.refused();
    let observation = found.observation;
    let before = conditions::find(&status.conditions, STORAGE_GROUP_READY).cloned();
    events::on_transition(ctx, job, before.as_ref(), &observation).await;
    status.message = Some(observation.message.clone());
    conditions::set(&mut status.conditions, observation, job.metadata.generation, now);
    if refused {
        status.phase = Phase::Failed;
        return Ok(Begin::NotAllowed);
    }
    let Some(group) = found.ready else {
        status.phase = Phase::Pending;
        return Ok(Begin::WaitingForGroup);
    };
    let problems = Resolver::new(&ctx.client, &namespace)
        .check(&backup::references(&job.spec))
        .await?;
    if problems.iter().any(|p| !p.may_resolve_itself()) {
        status.phase = Phase::Failed;
        status.message = Some(format!("no data was read: {}", references::describe(&problems)));
        return Ok(Begin::Refused);
    }
    if !problems.is_empty() {
        status.phase = Phase::Pending;
        status.message = Some(format!("waiting: {}", references::describe(&problems)));
        return Ok(Begin::WaitingForReference);
    }
    status.start_time.get_or_insert(Time(now));

    let attempt = status.attempts + 1;
    let name = format!("{}-{attempt}", job.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let tags = snapshot_tags(job, &namespace);
    let owner = job
        .controller_owner_ref(&())
        .expect("a stored object has a name and uid");
    // The namespace's catalog, which the agent stores after a successful backup.
    let catalog = super::catalog::variable(ctx, &namespace, job, now).await?;
    let agent_pod = |read: &[SourceClaim], node: Option<String>| -> Result<Pod> {
        let mut access = group.access(job.spec.bandwidth.as_ref());
        access.env.extend(catalog.clone());
        // The API server admits only specs with one source (a CEL rule on spec.source).
        let command =
            backup::command(&job.spec, &namespace, &tags, &mut access, read).ok_or(Error::MissingObjectField {
                kind: "BackupJob",
                field: "spec.source (one of postgres, mariadb, volume)",
            })?;
        Ok(pod::build(
            &ctx.agent,
            AgentPod {
                name: name.clone(),
                namespace: namespace.clone(),
                owner: owner.clone(),
                labels: [(JOB_LABEL.to_string(), job.name_any())].into(),
                command,
                repository: access,
                overrides: job.spec.agent.as_ref(),
                active_deadline_seconds: job.spec.active_deadline_seconds,
                node,
            },
        ))
    };
    // The claims of a selector, sorted by name (the references check found them usable).
    let selected: Vec<PersistentVolumeClaim> =
        match job.spec.source.volume.as_ref().and_then(|v| v.claim_selector.as_ref()) {
            Some(labels) => {
                let (selected, problems) = Resolver::new(&ctx.client, &namespace)
                    .selected_claims(labels, "spec.source.volume.claimSelector")
                    .await?;
                // The claims changed since the check above: the next look checks them again.
                if !problems.is_empty() {
                    status.phase = Phase::Pending;
                    status.message = Some(format!("waiting: {}", references::describe(&problems)));
                    return Ok(Begin::WaitingForReference);
                }
                selected
            }
            None => vec![],
        };
    let live: Vec<SourceClaim> = selected.iter().map(|c| SourceClaim::live(&c.name_any())).collect();
    let mut node = None;
    let named = job.spec.source.volume.as_ref().and_then(|v| v.claim_name.clone());
    for claim in named.iter().chain(live.iter().map(|c| &c.claim)) {
        node = api::node_mounting(&ctx.client, &namespace, Some(claim)).await?;
        if node.is_some() {
            break;
        }
    }
    // A volume read from snapshots (a selector's claims: a group, or one each): the prologue
    // takes them, and tells how the volume was read; the record comes first, so that whatever
    // it leaves is found and deleted.
    let snapshots = match &job.spec.source.volume {
        Some(volume) if volume.snapshot != SnapshotMode::None => {
            let auto = volume.snapshot == SnapshotMode::Auto;
            let mut record = VolumeSnapshotRecord {
                attempt,
                name: name.clone(),
                ..VolumeSnapshotRecord::default()
            };
            let (plan, read) = match &volume.claim_selector {
                Some(labels) => {
                    let plan = group_snapshot::plan(
                        &name,
                        &namespace,
                        labels,
                        &selected,
                        volume.volume_snapshot_class_name.as_deref(),
                        volume.volume_group_snapshot_class_name.as_deref(),
                        owner.clone(),
                        auto,
                    );
                    record.claims = plan
                        .sources
                        .iter()
                        .zip(&plan.each)
                        .map(|(claim, each)| ClaimSnapshot {
                            claim_name: claim.clone(),
                            snapshot: String::new(),
                            temporary_claim: each.claim.name_any(),
                        })
                        .collect();
                    let read: Vec<SourceClaim> = record
                        .claims
                        .iter()
                        .map(|c| SourceClaim {
                            claim: c.claim_name.clone(),
                            read: c.temporary_claim.clone(),
                        })
                        .collect();
                    (SnapshotsPlan::Claims(Box::new(plan)), read)
                }
                None => {
                    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
                    let source_name = volume.claim_name.clone().unwrap_or_default();
                    let source = claims.get(&source_name).await?;
                    let plan = volume_snapshot::plan(
                        &name,
                        &namespace,
                        &source,
                        volume.volume_snapshot_class_name.as_deref(),
                        owner.clone(),
                        auto,
                    );
                    record.claim_name = plan.claim.name_any();
                    let read = vec![SourceClaim {
                        claim: source_name,
                        read: plan.claim.name_any(),
                    }];
                    (SnapshotsPlan::One(Box::new(plan)), read)
                }
            };
            status.volume_snapshot = Some(record);
            Some((plan, read, auto))
        }
        _ => None,
    };
    let start = match (&job.spec.source.volume, snapshots) {
        (_, Some((plan, read, auto))) => AgentStart::Snapshots {
            from_snapshot: Box::new(agent_pod(&read, None)?),
            live: if auto {
                Some(Box::new(agent_pod(&live, node)?))
            } else {
                None
            },
            plan,
        },
        (Some(volume), None) => {
            let observation = backup::live_read(volume, "snapshot is None");
            let before = conditions::find(&status.conditions, backup::VOLUME_SNAPSHOT).cloned();
            events::on_transition(ctx, job, before.as_ref(), &observation).await;
            conditions::set(&mut status.conditions, observation, job.metadata.generation, now);
            AgentStart::Pod(Box::new(agent_pod(&live, node)?))
        }
        (None, None) => AgentStart::Pod(Box::new(agent_pod(&[], node)?)),
    };
    let pod = match start {
        AgentStart::Pod(pod) if !has_hooks(job, HookStage::Pre) => *pod,
        start => {
            // The record comes first: a reconcile that reads it never starts this attempt's
            // prologue again, and runs its post hooks if the prologue breaks off (the operator
            // stopped) before the pod exists.
            status.attempts = attempt;
            status.agent_pod = Some(name.clone());
            status.phase = Phase::Running;
            status.message = Some(if has_hooks(job, HookStage::Pre) {
                format!("attempt {attempt}: running pre hooks")
            } else if matches!(
                start,
                AgentStart::Snapshots {
                    plan: SnapshotsPlan::Claims(_),
                    ..
                }
            ) {
                format!("attempt {attempt}: taking the snapshots of the selected claims")
            } else {
                format!("attempt {attempt}: taking VolumeSnapshot {name:?}")
            });
            write(ctx, job, status, OnConflict::Fail).await?;
            let key = run_key(job, attempt, HookStage::Pre);
            ctx.hook_runs
                .start(key, &namespace, backup_hooks::prologue(pods, job, start));
            return Ok(Begin::HooksRunning);
        }
    };
    // Without pre hooks there is nothing to undo if the pod cannot be created: the reconcile
    // fails and is retried.
    api::create(&pods, &pod).await?;
    status.attempts = attempt;
    status.agent_pod = Some(name.clone());
    status.phase = Phase::Running;
    status.message = Some(format!("attempt {attempt}: agent pod {name:?} started"));
    Ok(Begin::Started)
}

/// Tags stored with the snapshot: the user's, and where it came from.
fn snapshot_tags(job: &BackupJob, namespace: &str) -> Vec<String> {
    let mut tags = job.spec.tags.clone();
    tags.push(format!("hort.dev/namespace={namespace}"));
    tags.push(format!("hort.dev/backup-job={}", job.name_any()));
    if let Some(schedule) = job.labels().get(schedule::SCHEDULE_LABEL) {
        tags.push(format!("hort.dev/schedule={schedule}"));
    }
    tags
}
