//! Reconciler of `Schedule`: creates BackupJobs on the cron schedule in its time zone, honours
//! `suspend`, `concurrencyPolicy` and `startingDeadlineSeconds`, keeps `historyLimit` finished
//! jobs, and reports last and next times; with `spec.verification`, also creates Verifications
//! on their own cron (`scheduled_verifications`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hort_crds::backup_job::BackupJob;
use hort_crds::common::{LocalObjectRef, Phase};
use hort_crds::schedule::{HistoryLimit, PruneResult, Retention, Schedule, ScheduleStatus};
use hort_protocol::ForgetReport;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::agent::pod::{self, AgentPod};
use crate::agent::{Role, api, outcome, retention};
use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::Result;
use crate::events;
use crate::group_access;
use crate::references::Resolver;
use crate::schedule_plan::{self, CronSchedule, Decision, Facts};
use crate::schedule_window::Windows;
use crate::status;
use crate::storage_group;
use crate::{scheduled_verifications, verification_plan};

/// Label on every BackupJob a Schedule creates: the Schedule's name.
pub const SCHEDULE_LABEL: &str = "hort.dev/schedule";
/// Annotation on every BackupJob a Schedule creates: the scheduled time (RFC 3339).
pub const SCHEDULED_TIME_ANNOTATION: &str = "hort.dev/scheduled-time";
/// Name of the condition that tells whether the schedule is valid and running.
pub const READY: &str = "Ready";

/// Reconciles one Schedule.
pub async fn reconcile(cached: Arc<Schedule>, ctx: Arc<Context>) -> Result<Action> {
    let name = cached.name_any();
    let Some((namespace, schedule)) = status::refetch(&ctx.client, &*cached).await? else {
        return Ok(Action::await_change());
    };
    let generation = schedule.metadata.generation;
    let now = ctx.clock.now();
    let mut status = schedule.status.clone().unwrap_or_default();
    status.observed_generation = generation;

    let time_zone = schedule.spec.time_zone.as_deref();
    let parsed = CronSchedule::parse(&schedule.spec.schedule, time_zone).and_then(|cron| {
        let verification = match &schedule.spec.verification {
            Some(policy) => Some((
                policy,
                verification_plan::parse(&policy.schedule, time_zone, "spec.timeZone")?,
            )),
            None => None,
        };
        let windows = Windows::parse(&schedule.spec.windows, cron.zone())?;
        Ok((cron, verification, windows))
    });
    let (cron, verification, windows) = match parsed {
        Ok(parsed) => parsed,
        Err(invalid) => {
            let observation = Observation {
                type_: READY,
                status: Status::False,
                reason: "InvalidSchedule",
                message: invalid.to_string(),
            };
            status.next_schedule_time = None;
            let before = conditions::find(&status.conditions, READY).cloned();
            events::on_transition(&ctx, &schedule, before.as_ref(), &observation).await;
            conditions::set(&mut status.conditions, observation, generation, now);
            write_status(&ctx, &schedule, status).await?;
            return Ok(Action::await_change());
        }
    };

    let jobs: Api<BackupJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned = owned_jobs(&jobs, &schedule, &name).await?;
    let (mut active, finished): (Vec<&BackupJob>, Vec<&BackupJob>) =
        owned.iter().partition(|j| !phase_of(j).is_terminal());
    prune_history(&jobs, &finished, &schedule).await?;
    let latest_success = finished
        .iter()
        .filter(|j| phase_of(j) == Phase::Succeeded)
        .filter_map(|j| j.status.as_ref()?.completion_time.clone())
        .max_by_key(|t| t.0);
    if let Some(latest) = latest_success
        && status.last_successful_time.as_ref().is_none_or(|t| t.0 < latest.0)
    {
        status.last_successful_time = Some(latest);
    }
    // Rebuilt from the object on every reconcile, so a restarted operator exports them too.
    let created = schedule.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let seconds = |t: Timestamp| t.as_millisecond() as f64 / 1000.0;
    ctx.metrics
        .schedule_created
        .with_label_values(&[&namespace, &name])
        .set(seconds(created));
    if let Some(success) = &status.last_successful_time {
        ctx.metrics.record_success(&namespace, &name, seconds(success.0));
    }

    // The jobs themselves also record their scheduled time, so a lost status write cannot
    // make a time run twice.
    let newest_job = owned.iter().filter_map(scheduled_time).max();
    let recorded = status.last_schedule_time.as_ref().map(|t| t.0);
    if let Some(newest) = newest_job.max(recorded) {
        status.last_schedule_time = Some(Time(newest));
    }
    // A run skipped outside every window is done with, as one that ran.
    let skipped = status.last_skipped_time.as_ref().map(|t| t.0);
    let last_scheduled = status
        .last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .max(skipped)
        .unwrap_or(created);
    let facts = Facts {
        now,
        last_scheduled,
        suspend: schedule.spec.suspend,
        starting_deadline_seconds: schedule.spec.starting_deadline_seconds,
        concurrency_policy: schedule.spec.concurrency_policy,
        active_jobs: active.len(),
        windows,
        outside_window: schedule.spec.outside_window,
    };
    let decision = schedule_plan::decide(&cron, &facts);
    let last_run = status.last_schedule_time.as_ref().map(|t| t.0);
    let mut new_job = None;
    let mut window_opens = None;
    let (reason, message) = match decision {
        Decision::Idle if schedule.spec.suspend => {
            ("Suspended", "suspended: no new BackupJobs are created".to_string())
        }
        // A skip stays in the message until the next run, not only until the next look.
        Decision::Idle => match skipped.filter(|&t| last_run.is_none_or(|r| t > r)) {
            Some(skipped) => (
                "Scheduled",
                format!(
                    "waiting for the next scheduled time; the run for {skipped} was skipped: every backup window (spec.windows) was closed and outsideWindow is Skip"
                ),
            ),
            None => ("Scheduled", "waiting for the next scheduled time".to_string()),
        },
        Decision::Run {
            scheduled,
            replace_active,
        } => {
            if replace_active {
                for job in active.drain(..) {
                    delete_in_background(&jobs, job).await?;
                }
            }
            let job = create_job(&jobs, &schedule, &name, scheduled).await?;
            status.last_schedule_time = Some(Time(scheduled));
            let message = format!("created BackupJob {:?} for {scheduled}", job.name_any());
            events::publish(&ctx, &schedule, EventType::Normal, "BackupJobCreated", message.clone()).await;
            new_job = Some(job);
            ("Scheduled", message)
        }
        Decision::WaitForActive { scheduled } => (
            "WaitingForActiveJob",
            format!(
                "the run for {scheduled} waits: concurrencyPolicy Forbid and BackupJob {:?} is still running",
                active.first().map(|j| j.name_any()).unwrap_or_default()
            ),
        ),
        Decision::WaitForWindow { scheduled, opens } => {
            window_opens = opens;
            (
                "WaitingForWindow",
                match opens {
                    Some(opens) => format!(
                        "the run for {scheduled} waits: every backup window (spec.windows) is closed; the next opens at {opens}"
                    ),
                    None => format!(
                        "the run for {scheduled} waits: every backup window (spec.windows) is closed, and none opens within a week"
                    ),
                },
            )
        }
        Decision::SkipOutsideWindow { scheduled } => {
            status.last_skipped_time = Some(Time(scheduled));
            let message = format!(
                "the run for {scheduled} was skipped: every backup window (spec.windows) was closed and outsideWindow is Skip"
            );
            events::publish(
                &ctx,
                &schedule,
                EventType::Warning,
                "SkippedOutsideWindow",
                message.clone(),
            )
            .await;
            ("SkippedOutsideWindow", message)
        }
        Decision::MissedDeadline { scheduled } => (
            "MissedStartingDeadline",
            format!(
                "the run for {scheduled} was skipped: it could not start within startingDeadlineSeconds ({}s)",
                schedule.spec.starting_deadline_seconds.unwrap_or_default()
            ),
        ),
    };
    tracing::debug!(schedule = %name, namespace = %namespace, ?decision, "schedule decision");

    status.active = active
        .iter()
        .copied()
        .chain(new_job.as_ref())
        .map(|j| LocalObjectRef { name: j.name_any() })
        .collect();
    // From the later of now and the last scheduled time (the creation time before the first
    // run), so that an operator clock behind the API server's never shows a time already past.
    let last = status.last_schedule_time.as_ref().map_or(last_scheduled, |t| t.0);
    let next = cron.next_after(now.max(last));
    status.next_schedule_time = next.filter(|_| !schedule.spec.suspend).map(Time);
    let observation = Observation {
        type_: READY,
        status: Status::True,
        reason,
        message,
    };
    let before = conditions::find(&status.conditions, READY).cloned();
    if reason != "Scheduled" && reason != "SkippedOutsideWindow" {
        events::on_transition(&ctx, &schedule, before.as_ref(), &observation).await;
    }
    conditions::set(&mut status.conditions, observation, generation, now);
    if let Some(retention) = &schedule.spec.retention {
        prune(&ctx, &schedule, &namespace, retention, &mut status).await?;
    }
    let next_verification = match &verification {
        Some((policy, cron)) => {
            scheduled_verifications::reconcile_schedule(
                &ctx,
                &schedule,
                &namespace,
                policy,
                cron,
                &finished,
                &mut status.verification_runs,
            )
            .await?
        }
        None => None,
    };
    write_status(&ctx, &schedule, status).await?;

    let next = [next, next_verification, window_opens].into_iter().flatten().min();
    Ok(match next {
        Some(next) if !schedule.spec.suspend => {
            let wait = now.duration_until(next).as_secs().max(1);
            Action::requeue(Duration::from_secs(wait.unsigned_abs()))
        }
        _ => Action::await_change(),
    })
}

fn phase_of(job: &BackupJob) -> Phase {
    job.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

async fn write_status(ctx: &Context, schedule: &Schedule, status: ScheduleStatus) -> Result<()> {
    if schedule.status.as_ref() != Some(&status) {
        status::apply(&ctx.client, schedule, &status).await?;
    }
    Ok(())
}

/// The BackupJobs this schedule created (by label, confirmed by owner reference).
async fn owned_jobs(jobs: &Api<BackupJob>, schedule: &Schedule, name: &str) -> Result<Vec<BackupJob>> {
    let uid = schedule.uid();
    let listed = jobs
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}")))
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter(|job| job.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
        .collect())
}

/// Deletes the oldest finished jobs beyond `historyLimit`.
async fn prune_history(jobs: &Api<BackupJob>, finished: &[&BackupJob], schedule: &Schedule) -> Result<()> {
    for job in beyond_history(finished, &schedule.spec.history_limit) {
        delete_in_background(jobs, job).await?;
    }
    Ok(())
}

/// The finished jobs beyond `limits`: of the succeeded and of the failed ones, all but the
/// newest `successful` and `failed` (newest by scheduled time; creation times have only
/// whole seconds).
fn beyond_history<'a>(finished: &[&'a BackupJob], limits: &HistoryLimit) -> Vec<&'a BackupJob> {
    let mut beyond = Vec::new();
    for (phase, keep) in [(Phase::Succeeded, limits.successful), (Phase::Failed, limits.failed)] {
        let mut of_phase: Vec<&BackupJob> = finished.iter().copied().filter(|j| phase_of(j) == phase).collect();
        of_phase.sort_by_key(|j| std::cmp::Reverse((scheduled_time(j), j.creation_timestamp().map(|t| t.0))));
        beyond.extend(of_phase.into_iter().skip(keep as usize));
    }
    beyond
}

/// Applies `retention` after each successful backup: records the newest finished prune pod's
/// result in `lastPrune`, and starts a prune pod when a backup succeeded after the last one
/// started.
async fn prune(
    ctx: &Context,
    schedule: &Schedule,
    namespace: &str,
    retention: &Retention,
    status: &mut ScheduleStatus,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let prunes = api::owned(&pods, schedule.uid().as_deref(), Role::Prune).await?;
    for old in prunes.iter().filter(|p| outcome::finished(p)).skip(1) {
        api::delete(&pods, old).await?;
    }
    if let Some(pod) = prunes.iter().find(|p| outcome::finished(p)) {
        let parsed = if outcome::phase(pod) == "Succeeded" {
            outcome::decode_report::<ForgetReport>(pod).map_err(|e| e.to_string())
        } else {
            Err(outcome::failure(pod, 600))
        };
        let result = match parsed {
            Ok(r) => PruneResult {
                time: Some(Time(outcome::finished_at(pod))),
                snapshots_kept: r.snapshots_kept,
                snapshots_removed: r.snapshots_removed,
                succeeded: true,
                message: None,
            },
            Err(why) => PruneResult {
                time: Some(Time(outcome::finished_at(pod))),
                succeeded: false,
                message: Some(why),
                ..PruneResult::default()
            },
        };
        if status.last_prune.as_ref() != Some(&result) {
            let (type_, reason, note) = if result.succeeded {
                (
                    EventType::Normal,
                    "Pruned",
                    format!(
                        "retention kept {} snapshots and removed {}",
                        result.snapshots_kept, result.snapshots_removed
                    ),
                )
            } else {
                let why = result.message.clone().unwrap_or_default();
                (
                    EventType::Warning,
                    "PruneFailed",
                    format!("pruning by retention failed: {why}"),
                )
            };
            events::publish(ctx, schedule, type_, reason, note).await;
            status.last_prune = Some(result);
        }
    }

    let running = prunes.iter().any(|p| !outcome::finished(p));
    let last_started = prunes.first().map(outcome::created);
    let due = status
        .last_successful_time
        .as_ref()
        .is_some_and(|success| last_started.is_none_or(|started| started < success.0));
    if !due || running {
        return Ok(());
    }
    let name = schedule.name_any();
    let command = match retention::command(retention, namespace, &name) {
        Ok(command) => command,
        // Recorded once per successful backup (its time), so reconciles do not repeat the event.
        Err(why) => {
            let result = PruneResult {
                time: status.last_successful_time.clone(),
                succeeded: false,
                message: Some(why.to_string()),
                ..PruneResult::default()
            };
            if status.last_prune.as_ref() != Some(&result) {
                let note = format!("pruning by retention failed: {why}");
                events::publish(ctx, schedule, EventType::Warning, "PruneFailed", note).await;
                status.last_prune = Some(result);
            }
            return Ok(());
        }
    };
    let template = &schedule.spec.job_template.spec;
    // A group not ready (or a namespace a shared group no longer allows) holds the prune
    // back; the group, or the next BackupJob, says why.
    let found = group_access::find(ctx, namespace, &template.storage_group_ref).await?;
    let Some(group) = found.ready else {
        return Ok(());
    };
    // The group's Secrets and claims may have been unmarked since the backup: then no pod
    // uses them, and the prune waits (the group says why it is not Ready).
    if let Some(local) = group.local() {
        let problems = Resolver::new(&ctx.client, namespace)
            .check(&storage_group::references(&local.spec))
            .await?;
        if !problems.is_empty() {
            return Ok(());
        }
    }
    let pod = pod::build(
        &ctx.agent,
        AgentPod {
            name: format!("{name}-prune-{}", ctx.clock.now().as_second()),
            namespace: namespace.into(),
            owner: schedule
                .controller_owner_ref(&())
                .expect("a stored object has a name and uid"),
            labels: [(SCHEDULE_LABEL.to_string(), name.clone())].into(),
            command,
            repository: group.access(None),
            overrides: template.agent.as_ref(),
            active_deadline_seconds: template.active_deadline_seconds,
            node: None,
        },
    );
    Ok(api::create(&pods, &pod).await?)
}

/// The scheduled time a job was created for, from its annotation.
fn scheduled_time(job: &BackupJob) -> Option<Timestamp> {
    job.annotations().get(SCHEDULED_TIME_ANNOTATION)?.parse().ok()
}

/// Deletes `obj` (a BackupJob or Verification beyond the history) with its dependents in the
/// background; one already gone is fine.
pub(crate) async fn delete_in_background<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(&obj.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the job for `scheduled`; if it exists already (a retry after a crash), returns it.
async fn create_job(jobs: &Api<BackupJob>, schedule: &Schedule, name: &str, scheduled: Timestamp) -> Result<BackupJob> {
    let template = &schedule.spec.job_template;
    let mut labels: BTreeMap<String, String> = template.metadata.as_ref().map(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(SCHEDULE_LABEL.into(), name.into());
    let mut annotations: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .map(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.insert(SCHEDULED_TIME_ANNOTATION.into(), scheduled.to_string());
    let job_name = schedule_plan::job_name(name, scheduled);
    let job = BackupJob {
        metadata: ObjectMeta {
            name: Some(job_name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: schedule.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    match jobs.create(&PostParams::default(), &job).await {
        Ok(job) => {
            tracing::info!(schedule = %name, job = %job_name, %scheduled, "created BackupJob");
            Ok(job)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(jobs.get(&job_name).await?),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, phase: &str, scheduled: &str) -> BackupJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
            "metadata": {"name": name, "annotations": {SCHEDULED_TIME_ANNOTATION: scheduled}},
            "spec": {"storageGroupRef": {"name": "g"}, "source": {"volume": {"claimName": "c"}}},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn history_keeps_the_newest_succeeded_and_failed_jobs_apart() {
        let jobs = [
            job("ok-1", "Succeeded", "2026-11-29T01:00:00Z"),
            job("bad-1", "Failed", "2026-11-29T02:00:00Z"),
            job("ok-2", "Succeeded", "2026-11-29T03:00:00Z"),
            job("bad-2", "Failed", "2026-11-29T04:00:00Z"),
            job("bad-3", "Failed", "2026-11-29T05:00:00Z"),
        ];
        let finished: Vec<&BackupJob> = jobs.iter().collect();
        let names = |limits: HistoryLimit| -> Vec<String> {
            beyond_history(&finished, &limits)
                .iter()
                .map(|j| j.name_any())
                .collect()
        };
        assert_eq!(
            names(HistoryLimit {
                successful: 1,
                failed: 1
            }),
            ["ok-1", "bad-2", "bad-1"]
        );
        assert_eq!(
            names(HistoryLimit {
                successful: 3,
                failed: 2
            }),
            ["bad-1"]
        );
        assert_eq!(
            names(HistoryLimit {
                successful: 0,
                failed: 3
            }),
            ["ok-2", "ok-1"]
        );
    }
}
