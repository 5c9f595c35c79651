//! Reconciler of `BackupJob`: waits for the job's StorageGroup, runs the backup in agent
//! pods with retries, and records the snapshot, stats, conditions, events and metrics.

use std::sync::Arc;

use hort_crds::backup_job::{BackupJob, BackupJobStatus, ClaimSnapshot, SnapshotMode, VolumeSnapshotRecord};
use hort_crds::common::{Phase, Progress};
use hort_crds::storage_group::StorageGroup;
use hort_protocol::BackupReport;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::agent::backup::SourceClaim;
use crate::agent::check::human_bytes;
use crate::agent::pod::{self, AgentPod};
use crate::agent::{api, backup, outcome};
use crate::backup_hooks::{self, AgentStart, HookRun, HookStage, Outcome, SnapshotOutcome, has_hooks, run_key};
use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::group_snapshot;
use crate::hook_runs::Poll;
use crate::hooks::{self, AttemptFacts, HookStep, PodState};
use crate::references::{self, Resolver};
use crate::schedule;
use crate::status;
use crate::storage_group;
use crate::volume_snapshot;

/// Name of the condition that tells whether the job's StorageGroup accepts backups.
pub const STORAGE_GROUP_READY: &str = "StorageGroupReady";

/// Name of the condition set when the job succeeded.
pub const COMPLETE: &str = "Complete";
/// Name of the condition set when the job failed for good.
pub const FAILED: &str = "Failed";
/// How often a job whose hooks run in the background is looked at again.
pub const HOOK_POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// What the message of a job whose pre hook failed says (no agent pod ran).
const PRE_HOOK_FAILED: &str = "a pre hook failed, no data was read: ";
/// What the message of a job says whose post hook failed right after its snapshot was taken.
const POST_HOOK_FAILED: &str = "a post hook failed after the snapshot was taken, no data was read: ";
/// What the message of a job whose last attempt's snapshot failed says.
const SNAPSHOT_FAILED: &str = "the volume snapshot failed, no data was read: ";
/// How often the progress of a running backup or restore is read from its agent's output.
pub const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// How often it is read until it first shows, so that a short run shows it too.
const FIRST_PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// When to read the progress of a running agent pod again: soon while none has shown, then
/// every [`PROGRESS_INTERVAL`].
pub fn next_progress_read(shown: Option<&Progress>) -> std::time::Duration {
    if shown.is_some() {
        PROGRESS_INTERVAL
    } else {
        FIRST_PROGRESS_INTERVAL
    }
}
/// Label on a BackupJob's agent pods: the job's name.
pub const JOB_LABEL: &str = "hort.dev/backup-job";

/// Reconciles one BackupJob: waits for its StorageGroup, runs agent pods (one per attempt,
/// retried with backoff up to `backoffLimit`), and records the outcome.
pub async fn reconcile(cached: Arc<BackupJob>, ctx: Arc<Context>) -> Result<Action> {
    let Some((namespace, mut job)) = status::refetch(&ctx.client, &*cached).await? else {
        return Ok(Action::await_change());
    };
    let mut status = job.status.clone().unwrap_or_default();
    if status.phase.is_terminal() {
        // What the last attempt's snapshot left (if deleting it failed when the job ended).
        release_snapshot(&ctx, &namespace, status.volume_snapshot.as_ref()).await?;
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let generation = job.metadata.generation;
    status.observed_generation = generation;
    status.source_kind = job.spec.source.kind();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut current = match &status.agent_pod {
        Some(name) => pods.get_opt(name).await?,
        None => None,
    };

    // An attempt whose prologue (pre hooks, then its pod) runs in the background: wait for
    // it, or take in how it ended (its pod may exist already: its creation triggers this).
    if let Some(name) = status.agent_pod.clone() {
        let key = run_key(&job, status.attempts, HookStage::Pre);
        match ctx.hook_runs.poll(&key) {
            Poll::Running if current.is_none() => return Ok(Action::requeue(HOOK_POLL)),
            Poll::Unknown | Poll::Running => {}
            Poll::Done(run) => {
                publish_failures(&ctx, &job, &run).await;
                record_snapshot(&ctx, &job, &mut status, run.snapshot.as_ref(), now).await?;
                if run.outcome != Outcome::Done {
                    release_snapshot(&ctx, &namespace, status.volume_snapshot.as_ref()).await?;
                    prologue_failed(&job, &mut status, run.outcome);
                    write(&ctx, &mut job, &status, OnConflict::Rebase).await?;
                } else {
                    if run.snapshot.is_some() {
                        write(&ctx, &mut job, &status, OnConflict::Rebase).await?;
                    }
                    if current.is_none() {
                        current = pods.get_opt(&name).await?;
                    }
                }
                ctx.hook_runs.forget(&key);
            }
        }
    }
    // An agent pod that reads the attempt's snapshot was created after the post hooks ran
    // (also when the operator restarted before it took in how the prologue ended).
    if let (Some(record), Some(pod)) = (&status.volume_snapshot, &current)
        && record.attempt == status.attempts
        && temporary_claims(record).any(|claim| outcome::reads_claim(pod, claim))
    {
        status.post_hooks_attempt = Some(status.attempts);
    }

    let step = hooks::next_step(AttemptFacts {
        attempt: status.attempts,
        started: status.agent_pod.is_some(),
        post_hooks_attempt: status.post_hooks_attempt,
        pod: match &current {
            None => PodState::Missing,
            Some(pod) if outcome::finished(pod) => PodState::Finished,
            Some(_) => PodState::Running,
        },
    });
    // Once an attempt has ended (its pod finished or vanished, or it broke off during its
    // prologue), its epilogue runs its post hooks, once: recorded as soon as it ended, so that
    // no later failure makes them run again.
    let mut post_hook_failure = None;
    if step == HookStep::RunPost {
        if has_hooks(&job, HookStage::Post) {
            let key = run_key(&job, status.attempts, HookStage::Post);
            match ctx.hook_runs.poll(&key) {
                Poll::Done(run) => {
                    publish_failures(&ctx, &job, &run).await;
                    if let Outcome::PostHookFailed(why) = run.outcome {
                        post_hook_failure = Some(why);
                    }
                    status.post_hooks_attempt = Some(status.attempts);
                    write(&ctx, &mut job, &status, OnConflict::Rebase).await?;
                    ctx.hook_runs.forget(&key);
                }
                poll => {
                    if poll == Poll::Unknown {
                        ctx.hook_runs
                            .start(key, &namespace, backup_hooks::epilogue(pods.clone(), &job));
                    }
                    status.message = Some(format!("attempt {}: running post hooks", status.attempts));
                    if job.status.as_ref() != Some(&status) {
                        write(&ctx, &mut job, &status, OnConflict::Fail).await?;
                    }
                    return Ok(Action::requeue(HOOK_POLL));
                }
            }
        } else {
            status.post_hooks_attempt = Some(status.attempts);
        }
    }

    let mut action = Action::await_change();
    let mut finished: Option<Result<BackupReport, &'static str>> = None;
    // The snapshot of an attempt that ended, deleted once the status that records how the
    // attempt ended is written (its agent pod goes with it, which the status must not need
    // any more).
    let mut ended_snapshot = None;
    match (&status.agent_pod, &current) {
        // An attempt is running: follow its progress until its pod ends (the pod watch
        // triggers a reconcile then).
        (Some(name), Some(pod)) if step == HookStep::Wait => {
            status.phase = Phase::Running;
            let attempt = status.attempts;
            status.message = Some(match outcome::waiting(pod) {
                Some(waiting) => format!("attempt {attempt}: agent pod {name:?} waits: {waiting}"),
                None => format!(
                    "attempt {attempt}: agent pod {name:?} {}",
                    outcome::phase(pod).to_lowercase()
                ),
            });
            if outcome::phase(pod) == "Running" {
                status.progress = api::progress(&pods, name).await.or(status.progress.take());
            }
            action = Action::requeue(next_progress_read(status.progress.as_ref()));
        }
        // The attempt succeeded.
        (Some(_), Some(pod)) if outcome::phase(pod) == "Succeeded" => {
            ended_snapshot = status.volume_snapshot.clone();
            match outcome::decode_report::<BackupReport>(pod) {
                Ok(report) => {
                    finished = Some(Ok(report));
                }
                Err(e) => action = attempt_failed(&ctx, &mut job, &mut status, Some(pod), e.to_string(), now).await?,
            }
        }
        // The attempt failed, or its pod vanished (deleted, node lost) or was never created
        // (the reconcile that ran the pre hooks broke off).
        (Some(name), pod) => {
            ended_snapshot = status.volume_snapshot.clone();
            let why = match pod {
                Some(pod) => outcome::failure(pod, 600),
                None => format!("agent pod {name:?} disappeared or was never created"),
            };
            action = attempt_failed(&ctx, &mut job, &mut status, pod.as_ref(), why, now).await?;
        }
        // No attempt yet: refuse what cannot be done as asked, else start one once the group
        // is ready.
        // A prologue that failed ended the job.
        (None, _) if status.phase == Phase::Failed => {}
        (None, _) => match start_attempt(&ctx, &mut job, &mut status, now).await? {
            Begin::Started | Begin::WaitingForGroup => {}
            Begin::HooksRunning => action = Action::requeue(HOOK_POLL),
            Begin::WaitingForReference => action = Action::requeue(references::RECHECK_INTERVAL),
            Begin::Refused => finished = Some(Err("InvalidReference")),
        },
    }
    if status.phase == Phase::Failed && finished.is_none() {
        let message = status.message.as_deref().unwrap_or_default();
        finished = Some(Err(
            if message.contains(PRE_HOOK_FAILED) || message.contains(POST_HOOK_FAILED) {
                "HookFailed"
            } else if message.contains(SNAPSHOT_FAILED) {
                "SnapshotFailed"
            } else {
                "BackoffLimitExceeded"
            },
        ));
    }
    // The data is safe, but a post hook that must not fail did (e.g. resuming the
    // application): the job fails and keeps its snapshot.
    if let (Some(Ok(report)), Some(why)) = (&finished, &post_hook_failure) {
        status.phase = Phase::Failed;
        status.snapshot_id = Some(report.snapshot_id.clone());
        status.stats = Some(backup::stats(report));
        status.progress = None;
        status.message = Some(format!("snapshot {} was written, but {why}", report.snapshot_id));
        finished = Some(Err("HookFailed"));
    }

    match &finished {
        Some(Ok(report)) => {
            status.phase = Phase::Succeeded;
            status.snapshot_id = Some(report.snapshot_id.clone());
            status.stats = Some(backup::stats(report));
            status.progress = None;
            status.completion_time = Some(Time(now));
            let behind = backup::targets_behind(report).unwrap_or_default();
            status.message = Some(format!("snapshot {} written{behind}", report.snapshot_id));
            let done = Observation {
                type_: COMPLETE,
                status: Status::True,
                reason: "BackupSucceeded",
                message: format!(
                    "snapshot {} written: {} read, {} stored, in {:.1}s{behind}",
                    report.snapshot_id,
                    human_bytes(report.bytes_read),
                    human_bytes(report.bytes_stored),
                    report.duration_seconds
                ),
            };
            events::on_transition(&ctx, &job, None, &done).await;
            if !behind.is_empty() {
                let note = format!("snapshot {} written{behind}", report.snapshot_id);
                events::publish(&ctx, &job, EventType::Warning, "TargetsBehind", note).await;
            }
            conditions::set(&mut status.conditions, done, generation, now);
        }
        Some(Err(reason)) => {
            status.completion_time = Some(Time(now));
            let failed = Observation {
                type_: FAILED,
                status: Status::True,
                reason,
                message: status.message.clone().unwrap_or_default(),
            };
            let event = Observation {
                status: Status::False,
                ..failed.clone()
            };
            events::on_transition(&ctx, &job, None, &event).await;
            conditions::set(&mut status.conditions, failed, generation, now);
        }
        None => {}
    }

    if job.status.as_ref() != Some(&status) {
        write(&ctx, &mut job, &status, OnConflict::Fail).await?;
    }
    release_snapshot(&ctx, &namespace, ended_snapshot.as_ref()).await?;
    if finished.is_some() {
        record_metrics(
            &ctx,
            &job,
            &namespace,
            finished.as_ref().and_then(|f| f.as_ref().ok()),
            now,
        );
    }
    Ok(action)
}

/// What a status write does when the job changed since it was read (409 Conflict).
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnConflict {
    /// Fails the reconcile, which starts again from a fresh read.
    Fail,
    /// Writes again onto the fresh object if its status is still the one this reconcile
    /// started from (only metadata or spec changed): it records hooks that ran, which must
    /// not run again.
    Rebase,
}

/// Writes `status` as the status of `job`, conditional on its resourceVersion like
/// [`status::apply`], and replaces `job` with the object written, so that a later write in the
/// same reconcile is conditional on this one.
async fn write(ctx: &Context, job: &mut BackupJob, status: &BackupJobStatus, on_conflict: OnConflict) -> Result<()> {
    // A conflict from a status change (another writer) is never rebased; the bound only stops
    // a loop against an object whose metadata or spec changes without end.
    let mut rebases_left = 4;
    loop {
        match status::apply(&ctx.client, &*job, status).await {
            Ok(written) => {
                *job = written;
                return Ok(());
            }
            Err(Error::Kube(kube::Error::Api(e)))
                if e.code == 409 && on_conflict == OnConflict::Rebase && rebases_left > 0 =>
            {
                rebases_left -= 1;
                let api: Api<BackupJob> = Api::namespaced(ctx.client.clone(), &status::namespace_of(&*job)?);
                match api.get_opt(&job.name_any()).await? {
                    Some(fresh) if fresh.status == job.status => *job = fresh,
                    _ => return Err(kube::Error::Api(e).into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Takes in how a prologue read the volume: the snapshot's cut time and the pause in the
/// job's record and its `VolumeSnapshot` condition; or, for a live read, the condition that
/// says why, after deleting the snapshot that could not be taken.
async fn record_snapshot(
    ctx: &Context,
    job: &BackupJob,
    status: &mut BackupJobStatus,
    snapshot: Option<&SnapshotOutcome>,
    now: Timestamp,
) -> Result<()> {
    let (Some(snapshot), Some(volume)) = (snapshot, &job.spec.source.volume) else {
        return Ok(());
    };
    let observation = match snapshot {
        SnapshotOutcome::Taken { cut, pause } => {
            let Some(record) = status.volume_snapshot.as_mut() else {
                return Ok(());
            };
            record.creation_time = cut.clone();
            record.hooks_pause_seconds = *pause;
            status.post_hooks_attempt = Some(status.attempts);
            let cut = cut.as_ref().map_or("an unknown time".to_string(), |t| t.0.to_string());
            backup::snapshot_taken(volume, &record.name, &cut, *pause)
        }
        SnapshotOutcome::ClaimsTaken { taken, pause } => {
            let Some(record) = status.volume_snapshot.as_mut() else {
                return Ok(());
            };
            record.creation_time = taken.cut.clone();
            record.hooks_pause_seconds = *pause;
            record.group = taken.group.clone();
            record.claims = taken.claims.clone();
            status.post_hooks_attempt = Some(status.attempts);
            let cut = taken
                .cut
                .as_ref()
                .map_or("an unknown time".to_string(), |t| t.0.to_string());
            backup::claims_taken(
                &taken.claims,
                taken.group.as_deref(),
                taken.fallback.as_deref(),
                &cut,
                *pause,
            )
        }
        SnapshotOutcome::ReadLive(why) => {
            // The live read's agent pod has the snapshot's name: only the snapshots go.
            if let Some(record) = status.volume_snapshot.take() {
                release_snapshots(ctx, &status::namespace_of(job)?, &record).await?;
            }
            backup::live_read(
                volume,
                &format!("snapshot is Auto and the cluster cannot snapshot it: {why}"),
            )
        }
    };
    let before = conditions::find(&status.conditions, backup::VOLUME_SNAPSHOT).cloned();
    events::on_transition(ctx, job, before.as_ref(), &observation).await;
    conditions::set(&mut status.conditions, observation, job.metadata.generation, now);
    Ok(())
}

/// Deletes what the attempt of `record` took: its VolumeSnapshot, the temporary claim and the
/// agent pod that read it (which would keep the claim).
async fn release_snapshot(ctx: &Context, namespace: &str, record: Option<&VolumeSnapshotRecord>) -> Result<()> {
    if let Some(record) = record {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        if let Some(pod) = pods.get_opt(&record.name).await? {
            api::delete(&pods, &pod).await?;
        }
        release_snapshots(ctx, namespace, record).await?;
    }
    Ok(())
}

/// Deletes the temporary claims and the snapshots of `record` (not its agent pod).
async fn release_snapshots(ctx: &Context, namespace: &str, record: &VolumeSnapshotRecord) -> Result<()> {
    if record.claims.is_empty() {
        volume_snapshot::release(&ctx.client, namespace, &record.name).await?;
    } else {
        group_snapshot::release(&ctx.client, namespace, &record.name, record.claims.len()).await?;
    }
    Ok(())
}

/// The temporary claims the agent pod of `record`'s attempt reads.
fn temporary_claims(record: &VolumeSnapshotRecord) -> impl Iterator<Item = &str> {
    std::iter::once(record.claim_name.as_str())
        .filter(|c| !c.is_empty())
        .chain(record.claims.iter().map(|c| c.temporary_claim.as_str()))
}

/// Publishes each hook failure of `run` as a Warning event.
async fn publish_failures(ctx: &Context, job: &BackupJob, run: &HookRun) {
    for failure in &run.failures {
        events::publish(ctx, job, EventType::Warning, "HookFailed", failure.clone()).await;
    }
}

/// Ends an attempt whose prologue failed (its post hooks ran): the job fails when a pre hook
/// failed, and retries or fails, by `backoffLimit`, when the agent pod could not be created.
fn prologue_failed(job: &BackupJob, status: &mut BackupJobStatus, outcome: Outcome) {
    let attempt = status.attempts;
    status.agent_pod = None;
    status.post_hooks_attempt = Some(attempt);
    match outcome {
        Outcome::PreHookFailed(why) => {
            status.phase = Phase::Failed;
            status.message = Some(format!("attempt {attempt}: {PRE_HOOK_FAILED}{why}"));
        }
        Outcome::PostHookFailed(why) => {
            status.phase = Phase::Failed;
            status.message = Some(format!("attempt {attempt}: {POST_HOOK_FAILED}{why}"));
        }
        Outcome::SnapshotFailed(why) if attempt > job.spec.backoff_limit => {
            status.phase = Phase::Failed;
            status.message = Some(format!(
                "attempt {attempt} of {}: {SNAPSHOT_FAILED}{why}",
                job.spec.backoff_limit + 1
            ));
        }
        Outcome::SnapshotFailed(why) => {
            status.message = Some(format!("attempt {attempt}: {SNAPSHOT_FAILED}{why}; retrying"));
        }
        Outcome::PodNotCreated(why) if attempt > job.spec.backoff_limit => {
            status.phase = Phase::Failed;
            status.message = Some(format!(
                "attempt {attempt} of {} failed: {why}",
                job.spec.backoff_limit + 1
            ));
        }
        Outcome::PodNotCreated(why) => {
            status.message = Some(format!("attempt {attempt} failed: {why}; retrying"));
        }
        Outcome::Done => {}
    }
}

/// What [`start_attempt`] did.
enum Begin {
    /// The attempt's agent pod was created.
    Started,
    /// The attempt was recorded and its prologue (pre hooks, then the pod) runs in the
    /// background: look again after [`HOOK_POLL`].
    HooksRunning,
    /// The StorageGroup is missing or not ready; its watch triggers the next look.
    WaitingForGroup,
    /// A referenced Secret or claim does not exist yet; nothing watches Secrets, so look again
    /// after [`references::RECHECK_INTERVAL`].
    WaitingForReference,
    /// A referenced Secret or claim cannot be used as it is (not marked usable, a key missing):
    /// the job failed before any data was read.
    Refused,
}

/// Starts the next attempt if the StorageGroup is ready and the Secret or claim of the source
/// is usable: creates the agent pod, or, when the job has pre hooks, records the attempt in
/// status and starts its prologue (see [`backup_hooks`]). Records the group's readiness as a
/// condition either way.
///
/// If the record cannot be written (e.g. the job changed since it was read), no hook runs.
async fn start_attempt(
    ctx: &Context,
    job: &mut BackupJob,
    status: &mut BackupJobStatus,
    now: Timestamp,
) -> Result<Begin> {
    let namespace = status::namespace_of(&*job)?;
    let groups: Api<StorageGroup> = Api::namespaced(ctx.client.clone(), &namespace);
    let group_name = &job.spec.storage_group_ref.name;
    let group = groups.get_opt(group_name).await?;
    let observation = group_readiness(group_name, &namespace, group.as_ref());
    let ready = observation.status == Status::True;
    let before = conditions::find(&status.conditions, STORAGE_GROUP_READY).cloned();
    events::on_transition(ctx, job, before.as_ref(), &observation).await;
    status.message = Some(observation.message.clone());
    conditions::set(&mut status.conditions, observation, job.metadata.generation, now);
    let Some(group) = group.filter(|_| ready) else {
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
    let agent_pod = |read: &[SourceClaim], node: Option<String>| -> Result<Pod> {
        let mut access = pod::repository_access(&group.spec);
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
    let start = match &job.spec.source.volume {
        // The claims of a selector read from snapshots: the prologue takes them (a group, or
        // one each), and tells how they were read; the record comes first, so that whatever it
        // leaves is found and deleted.
        Some(volume) if volume.snapshot != SnapshotMode::None && volume.claim_selector.is_some() => {
            let auto = volume.snapshot == SnapshotMode::Auto;
            let plan = group_snapshot::plan(
                &name,
                &namespace,
                volume.claim_selector.as_ref().expect("matched"),
                &selected,
                volume.volume_snapshot_class_name.as_deref(),
                volume.volume_group_snapshot_class_name.as_deref(),
                owner.clone(),
                auto,
            );
            let claims: Vec<ClaimSnapshot> = plan
                .sources
                .iter()
                .zip(&plan.each)
                .map(|(claim, each)| ClaimSnapshot {
                    claim_name: claim.clone(),
                    snapshot: String::new(),
                    temporary_claim: each.claim.name_any(),
                })
                .collect();
            let read: Vec<SourceClaim> = claims
                .iter()
                .map(|c| SourceClaim {
                    claim: c.claim_name.clone(),
                    read: c.temporary_claim.clone(),
                })
                .collect();
            status.volume_snapshot = Some(VolumeSnapshotRecord {
                attempt,
                name: name.clone(),
                claims,
                ..VolumeSnapshotRecord::default()
            });
            AgentStart::Claims {
                from_snapshot: Box::new(agent_pod(&read, None)?),
                live: if auto {
                    Some(Box::new(agent_pod(&live, node)?))
                } else {
                    None
                },
                plan: Box::new(plan),
            }
        }
        // A volume read from a snapshot: the prologue takes it, and tells how the volume was
        // read; the record comes first, so that whatever it leaves is found and deleted.
        Some(volume) if volume.snapshot != SnapshotMode::None => {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
            let source_name = volume.claim_name.clone().unwrap_or_default();
            let source = claims.get(&source_name).await?;
            let auto = volume.snapshot == SnapshotMode::Auto;
            let plan = volume_snapshot::plan(
                &name,
                &namespace,
                &source,
                volume.volume_snapshot_class_name.as_deref(),
                owner.clone(),
                auto,
            );
            status.volume_snapshot = Some(VolumeSnapshotRecord {
                attempt,
                name: name.clone(),
                claim_name: plan.claim.name_any(),
                ..VolumeSnapshotRecord::default()
            });
            let read = [SourceClaim {
                claim: source_name,
                read: plan.claim.name_any(),
            }];
            AgentStart::Snapshot {
                from_snapshot: Box::new(agent_pod(&read, None)?),
                live: if auto {
                    Some(Box::new(agent_pod(&live, node)?))
                } else {
                    None
                },
                plan: Box::new(plan),
            }
        }
        Some(volume) => {
            let observation = backup::live_read(volume, "snapshot is None");
            let before = conditions::find(&status.conditions, backup::VOLUME_SNAPSHOT).cloned();
            events::on_transition(ctx, job, before.as_ref(), &observation).await;
            conditions::set(&mut status.conditions, observation, job.metadata.generation, now);
            AgentStart::Pod(Box::new(agent_pod(&live, node)?))
        }
        None => AgentStart::Pod(Box::new(agent_pod(&[], node)?)),
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
            } else if matches!(start, AgentStart::Claims { .. }) {
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

/// Records a failed attempt: retries after the backoff, or fails the job after
/// `backoffLimit` retries. Returns when to look again.
async fn attempt_failed(
    ctx: &Context,
    job: &mut BackupJob,
    status: &mut BackupJobStatus,
    pod: Option<&Pod>,
    why: String,
    now: Timestamp,
) -> Result<Action> {
    let attempt = status.attempts;
    if attempt > job.spec.backoff_limit {
        status.phase = Phase::Failed;
        status.message = Some(format!(
            "attempt {attempt} of {} failed: {why}",
            job.spec.backoff_limit + 1
        ));
        return Ok(Action::await_change());
    }
    let remaining = match pod {
        Some(pod) => {
            let wait = backup::backoff(ctx.agent.retry_backoff, attempt + 1);
            wait.saturating_sub(now.duration_since(outcome::finished_at(pod)).unsigned_abs())
        }
        // A pod that vanished (deleted, evicted, its node lost) left no end time to count the
        // backoff from: the next attempt starts at once.
        None => std::time::Duration::ZERO,
    };
    if remaining.is_zero() {
        start_attempt(ctx, job, status, now).await?;
        return Ok(Action::await_change());
    }
    status.phase = Phase::Running;
    status.message = Some(format!(
        "attempt {attempt} failed: {why}; retrying in {}s",
        remaining.as_secs().max(1)
    ));
    Ok(Action::requeue(remaining))
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

fn record_metrics(ctx: &Context, job: &BackupJob, namespace: &str, report: Option<&BackupReport>, now: Timestamp) {
    let schedule = job.labels().get(schedule::SCHEDULE_LABEL).cloned().unwrap_or_default();
    let labels = [namespace, schedule.as_str()];
    let result = if report.is_some() { "succeeded" } else { "failed" };
    ctx.metrics
        .backups
        .with_label_values(&[namespace, &schedule, result])
        .inc();
    if let Some(report) = report {
        ctx.metrics
            .backup_duration
            .with_label_values(&labels)
            .observe(report.duration_seconds);
        for (kind, bytes) in [
            ("read", report.bytes_read),
            ("new", report.bytes_new),
            ("stored", report.bytes_stored),
        ] {
            ctx.metrics
                .backup_bytes
                .with_label_values(&[namespace, &schedule, kind])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        ctx.metrics
            .record_success(namespace, &schedule, now.as_millisecond() as f64 / 1000.0);
    }
}

/// The `StorageGroupReady` condition for a job whose group `name` is `group`.
pub fn group_readiness(name: &str, namespace: &str, group: Option<&StorageGroup>) -> Observation {
    let Some(group) = group else {
        return Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::False,
            reason: "StorageGroupNotFound",
            message: format!("StorageGroup {name:?} (spec.storageGroupRef) not found in namespace {namespace:?}"),
        };
    };
    let conditions = group
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    match conditions::find(conditions, storage_group::READY) {
        Some(ready) if ready.status == "True" => Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::True,
            reason: "StorageGroupReady",
            message: format!("StorageGroup {name:?} is Ready"),
        },
        Some(ready) => Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::False,
            reason: "StorageGroupNotReady",
            message: format!("waiting for StorageGroup {name:?} to become Ready: {}", ready.message),
        },
        None => Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::False,
            reason: "StorageGroupNotReady",
            message: format!("waiting for StorageGroup {name:?} to be checked"),
        },
    }
}
