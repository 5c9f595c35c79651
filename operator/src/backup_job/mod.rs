//! Reconciler of `BackupJob`: waits for the job's StorageGroup, runs the backup in agent
//! pods with retries, and records the snapshot, stats, conditions, events and metrics.

mod catalog;
mod decide;
mod slots;
mod snapshot_record;
mod start;

use std::sync::Arc;

use hort_crds::backup_job::{BackupJob, BackupJobStatus};
use hort_crds::common::{Phase, Progress};
use hort_crds::storage_group::StorageGroup;
use hort_protocol::BackupReport;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use crate::agent::{api, backup, outcome};
use crate::backup_hooks::{self, HookRun, HookStage, Outcome, has_hooks, run_key};
use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::hook_runs::Poll;
use crate::hooks::{self, AttemptFacts, HookStep, PodState};
use crate::references;
use crate::schedule;
use crate::status;
use crate::storage_group;
use decide::{AttemptState, Facts, FailureReason, Slot, Step};
use hort_protocol::units::Bytes;
pub use slots::GROUP_SLOT;
use snapshot_record::{record_snapshot, release_snapshot, temporary_claims};
use start::Begin;

/// Name of the condition that tells whether the job's StorageGroup accepts backups.
pub const STORAGE_GROUP_READY: &str = "StorageGroupReady";

/// Name of the condition set when the job succeeded.
pub const COMPLETE: &str = "Complete";
/// Name of the condition set when the job failed for good.
pub const FAILED: &str = "Failed";
/// How often a job whose hooks run in the background is looked at again.
pub const HOOK_POLL: std::time::Duration = std::time::Duration::from_secs(1);
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

    // Set when the attempt's prologue failed the job (in this reconcile).
    let mut prologue_failure = None;
    // An attempt whose prologue (pre hooks, then its pod) runs in the background: wait for
    // it, or take in how it ended (its pod may exist already: its creation triggers this).
    if let Some(name) = status.agent_pod.clone() {
        let key = run_key(&job, status.attempts, HookStage::Pre);
        let prologue = ctx.hook_runs.poll(&key);
        // A pod held back by a prologue that no longer runs (the operator stopped during the
        // pre hooks) or that ended without letting it go (a pre hook failed, the gate could
        // not be removed) never runs: deleted here, again on the next pass if that fails.
        if current.as_ref().is_some_and(api::is_gated)
            && decide::abandons_held_pod(&prologue)
            && let Some(pod) = current.take()
        {
            api::delete(&pods, &pod).await?;
        }
        match prologue {
            // Its pod does not exist yet, or is held back until the pre hooks pass.
            Poll::Running if current.as_ref().is_none_or(api::is_gated) => return Ok(Action::requeue(HOOK_POLL)),
            // Unknown: the attempt broke off; its post hooks run below.
            Poll::Unknown | Poll::Running => {}
            Poll::Done(run) => {
                publish_failures(&ctx, &job, &run).await;
                record_snapshot(&ctx, &job, &mut status, run.snapshot.as_ref(), now).await?;
                if run.outcome != Outcome::Done {
                    release_snapshot(&ctx, &namespace, status.volume_snapshot.as_ref()).await?;
                    let end = decide::prologue_ended(status.attempts, job.spec.backoff_limit, &run.outcome);
                    status.agent_pod = None;
                    status.post_hooks_attempt = Some(status.attempts);
                    if end.failed.is_some() {
                        status.phase = Phase::Failed;
                    }
                    status.message = Some(end.message);
                    prologue_failure = end.failed;
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

    let state = match (&status.agent_pod, &current) {
        (Some(_), Some(_)) if step == HookStep::Wait => AttemptState::Running,
        (Some(_), Some(pod)) if outcome::phase(pod) == "Succeeded" => match outcome::decode_report::<BackupReport>(pod)
        {
            Ok(report) => AttemptState::Succeeded(report),
            Err(e) => AttemptState::Failed {
                why: e.to_string(),
                finished_at: Some(outcome::finished_at(pod)),
            },
        },
        (Some(_), Some(pod)) => AttemptState::Failed {
            why: outcome::failure(pod, 600),
            finished_at: Some(outcome::finished_at(pod)),
        },
        // Deleted, evicted, its node lost, or never created (the reconcile that ran the pre
        // hooks broke off).
        (Some(name), None) => AttemptState::Failed {
            why: format!("agent pod {name:?} disappeared or was never created"),
            finished_at: None,
        },
        (None, _) => match prologue_failure {
            Some(reason) => AttemptState::PrologueFailed(reason),
            None => AttemptState::Idle,
        },
    };
    // The snapshot of an attempt that ended, deleted once the status that records how the
    // attempt ended is written (its agent pod goes with it, which the status must not need
    // any more).
    let ended_snapshot = match state {
        AttemptState::Succeeded(_) | AttemptState::Failed { .. } => status.volume_snapshot.clone(),
        _ => None,
    };
    // Before the first attempt: the job's slot in its group (`maxConcurrentJobs`), counted
    // under a lock held until this reconcile has recorded the start.
    let looked = match &state {
        AttemptState::Idle if status.attempts == 0 => Some(slots::look(&ctx.client, &namespace, &job).await?),
        _ => None,
    };
    let slot = looked.as_ref().map_or(Slot::Free, |l| l.slot.clone());
    let step = decide::decide(Facts {
        attempt: status.attempts,
        backoff_limit: job.spec.backoff_limit,
        state,
        post_hook_failure,
        retry_backoff: ctx.agent.retry_backoff,
        slot,
        now,
    });
    let mut action = Action::await_change();
    let mut finished: Option<Result<BackupReport, FailureReason>> = None;
    match step {
        Step::Follow => {
            let (Some(name), Some(pod)) = (&status.agent_pod, &current) else {
                unreachable!("a running attempt has its pod")
            };
            status.phase = Phase::Running;
            let attempt = status.attempts;
            status.message = Some(match outcome::waiting(pod) {
                Some(waiting) => format!("attempt {attempt}: agent pod {name:?} waits: {waiting}"),
                None => format!(
                    "attempt {attempt}: agent pod {name:?} {}",
                    outcome::phase(pod).to_lowercase()
                ),
            });
            // Read whether or not the kubelet has reported the pod Running yet: under load its
            // status can lag the agent by many seconds, and a log that is not there yet reads
            // as no progress.
            status.progress = api::progress(&pods, name).await.or(status.progress.take());
            action = Action::requeue(next_progress_read(status.progress.as_ref()));
        }
        Step::WaitForSlot(slot) => {
            status.phase = Phase::Pending;
            status.message = Some(slot.message());
            let waiting = Observation {
                type_: GROUP_SLOT,
                status: Status::False,
                reason: "WaitingForGroupSlot",
                message: slot.message(),
            };
            let before = conditions::find(&status.conditions, GROUP_SLOT).cloned();
            events::on_transition(&ctx, &job, before.as_ref(), &waiting).await;
            conditions::set(&mut status.conditions, waiting, generation, now);
            action = Action::requeue(slots::SLOT_POLL);
        }
        Step::Succeed(report) => finished = Some(Ok(report)),
        // The data is safe, but a post hook that must not fail did (e.g. resuming the
        // application): the job fails and keeps its snapshot.
        Step::FailKeepingSnapshot { report, why } => {
            status.phase = Phase::Failed;
            status.snapshot_id = Some(report.snapshot_id.clone());
            status.stats = Some(backup::stats(&report));
            status.progress = None;
            status.message = Some(format!("snapshot {} was written, but {why}", report.snapshot_id));
            finished = Some(Err(FailureReason::HookFailed));
        }
        Step::Retry { why, wait } if !wait.is_zero() => {
            status.phase = Phase::Running;
            status.message = Some(format!(
                "attempt {} failed: {why}; retrying in {}s",
                status.attempts,
                wait.as_secs().max(1)
            ));
            action = Action::requeue(wait);
        }
        // No attempt under way, or the last one failed and the next is due: refuse what
        // cannot be done as asked, else start one once the group is ready.
        Step::Start | Step::Retry { .. } => {
            if let Some(limit) = looked.as_ref().and_then(|l| l.limit) {
                let group = &job.spec.storage_group_ref.name;
                let granted = Observation {
                    type_: GROUP_SLOT,
                    status: Status::True,
                    reason: "GroupSlotTaken",
                    message: format!(
                        "took one of the {limit} slots of StorageGroup {group:?} (spec.maxConcurrentJobs)"
                    ),
                };
                let before = conditions::find(&status.conditions, GROUP_SLOT).cloned();
                events::on_transition(&ctx, &job, before.as_ref(), &granted).await;
                conditions::set(&mut status.conditions, granted, generation, now);
            }
            match start::attempt(&ctx, &mut job, &mut status, now).await? {
                Begin::Started => {}
                Begin::WaitingForGroup if job.spec.storage_group_ref.kind.is_storage_group() => {}
                // Jobs do not watch ClusterStorageGroups.
                Begin::WaitingForGroup => action = Action::requeue(references::RECHECK_INTERVAL),
                Begin::HooksRunning => action = Action::requeue(HOOK_POLL),
                Begin::WaitingForReference => action = Action::requeue(references::RECHECK_INTERVAL),
                Begin::Refused => finished = Some(Err(FailureReason::InvalidReference)),
                Begin::NotAllowed => finished = Some(Err(FailureReason::NamespaceNotAllowed)),
            }
        }
        Step::Fail { reason, message } => {
            status.phase = Phase::Failed;
            if let Some(message) = message {
                status.message = Some(message);
            }
            finished = Some(Err(reason));
        }
    }

    match &finished {
        Some(Ok(report)) => {
            status.phase = Phase::Succeeded;
            status.snapshot_id = Some(report.snapshot_id.clone());
            status.stats = Some(backup::stats(report));
            status.progress = None;
            status.completion_time = Some(Time(now));
            let behind = backup::targets_behind(report).unwrap_or_default();
            let catalog = backup::catalog_not_stored(report).unwrap_or_default();
            status.message = Some(format!("snapshot {} written{behind}{catalog}", report.snapshot_id));
            let done = Observation {
                type_: COMPLETE,
                status: Status::True,
                reason: "BackupSucceeded",
                message: format!(
                    "snapshot {} written: {} read, {} stored, in {:.1}s{behind}",
                    report.snapshot_id,
                    Bytes(report.bytes_read),
                    Bytes(report.bytes_stored),
                    report.duration_seconds
                ),
            };
            events::on_transition(&ctx, &job, None, &done).await;
            if !behind.is_empty() {
                let note = format!("snapshot {} written{behind}", report.snapshot_id);
                events::publish(&ctx, &job, EventType::Warning, "TargetsBehind", note).await;
            }
            if !catalog.is_empty() {
                let note = format!("snapshot {} written{catalog}", report.snapshot_id);
                events::publish(&ctx, &job, EventType::Warning, "CatalogNotStored", note).await;
            }
            conditions::set(&mut status.conditions, done, generation, now);
        }
        Some(Err(reason)) => {
            status.completion_time = Some(Time(now));
            let failed = Observation {
                type_: FAILED,
                status: Status::True,
                reason: reason.as_str(),
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
    // The start (or the wait) is recorded: the next job of the group may count the slots.
    drop(looked);
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

/// Publishes each hook failure of `run` as a Warning event.
async fn publish_failures(ctx: &Context, job: &BackupJob, run: &HookRun) {
    for failure in &run.failures {
        events::publish(ctx, job, EventType::Warning, "HookFailed", failure.clone()).await;
    }
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
