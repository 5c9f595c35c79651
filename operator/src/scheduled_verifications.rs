//! Verifications on a cron schedule of their own, for two owners: a Schedule
//! (`spec.verification`: its snapshots restored and checked) and a StorageGroup
//! (`spec.verification`: its repository read). Both create a Verification when one is due,
//! delete finished ones beyond the history, and record the newest in the owner's status.

use std::collections::BTreeMap;

use hort_crds::backup_job::BackupJob;
use hort_crds::common::Phase;
use hort_crds::schedule::{HistoryLimit, Schedule, VerificationPolicy, VerificationRuns};
use hort_crds::storage_group::{RepositoryVerificationPolicy, StorageGroup};
use hort_crds::verification::{Verification, VerificationSpec};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::schedule::{SCHEDULE_LABEL, SCHEDULED_TIME_ANNOTATION, delete_in_background};
use crate::schedule_plan::{CronSchedule, Decision};
use crate::storage_group::STORAGE_GROUP_LABEL;
use crate::verification_plan;

/// Runs the verification part of a Schedule's reconcile with `cron` (the parsed
/// `spec.verification.schedule`); `jobs` are the schedule's BackupJobs. Returns when the next
/// verification is due.
pub async fn reconcile_schedule(
    ctx: &Context,
    schedule: &Schedule,
    namespace: &str,
    policy: &VerificationPolicy,
    cron: &CronSchedule,
    jobs: &[&BackupJob],
    runs: &mut VerificationRuns,
) -> Result<Option<Timestamp>> {
    let name = schedule.name_any();
    let owner = Owner {
        object: schedule,
        label: SCHEDULE_LABEL,
        history: &policy.history_limit,
        suspend: schedule.spec.suspend,
    };
    let plan = || {
        let snapshots = verification_plan::snapshots_of(jobs);
        verification_plan::spec(&schedule.spec, policy, namespace, &name, &snapshots, random()?).ok_or(
            Error::MissingObjectField {
                kind: "Schedule",
                field: "spec.verification.volume (required for a volume source)",
            },
        )
    };
    let next = reconcile(ctx, owner, namespace, cron, runs, plan).await?;
    if let Some(success) = &runs.last_successful_verification_time {
        ctx.metrics.record_verified(namespace, &name, seconds(success.0));
    }
    Ok(next)
}

/// Runs the repository verifications of a StorageGroup with `cron` (the parsed
/// `spec.verification.schedule`). Returns when the next one is due.
pub async fn reconcile_group(
    ctx: &Context,
    group: &StorageGroup,
    namespace: &str,
    policy: &RepositoryVerificationPolicy,
    cron: &CronSchedule,
    runs: &mut VerificationRuns,
) -> Result<Option<Timestamp>> {
    let name = group.name_any();
    let owner = Owner {
        object: group,
        label: STORAGE_GROUP_LABEL,
        history: &policy.history_limit,
        suspend: false,
    };
    let plan = || Ok(verification_plan::repository_spec(&name, &group.spec, policy));
    let next = reconcile(ctx, owner, namespace, cron, runs, plan).await?;
    if let Some(success) = &runs.last_successful_verification_time {
        ctx.metrics
            .record_repository_verified(namespace, &name, seconds(success.0));
    }
    Ok(next)
}

/// The object that creates Verifications on its cron.
struct Owner<'a, K> {
    object: &'a K,
    /// The label naming the owner on its Verifications.
    label: &'static str,
    history: &'a HistoryLimit,
    /// No new Verification while true.
    suspend: bool,
}

/// Creates the Verification `plan` gives when one is due, deletes finished ones beyond the
/// history and records the newest in `runs` (the owner's status). Returns when the next one is due.
async fn reconcile<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    owner: Owner<'_, K>,
    namespace: &str,
    cron: &CronSchedule,
    runs: &mut VerificationRuns,
    plan: impl FnOnce() -> Result<VerificationSpec>,
) -> Result<Option<Timestamp>> {
    let name = owner.object.name_any();
    let now = ctx.clock.now();
    let api: Api<Verification> = Api::namespaced(ctx.client.clone(), namespace);
    let uid = owner.object.uid();
    let owned: Vec<Verification> = api
        .list(&ListParams::default().labels(&format!("{}={name}", owner.label)))
        .await?
        .items
        .into_iter()
        .filter(|v| v.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
        .collect();
    let is_finished = |v: &&Verification| v.status.as_ref().is_some_and(|s| s.phase.is_terminal());
    let (finished, active): (Vec<&Verification>, Vec<&Verification>) = owned.iter().partition(is_finished);
    for old in verification_plan::beyond_history(&finished, owner.history, scheduled_time) {
        delete_in_background(&api, old).await?;
    }

    // The newest by scheduled time, and the newest success, for status and the metric.
    if let Some(newest) = owned.iter().max_by_key(|v| scheduled_time(v)) {
        runs.last_verification = Some(verification_plan::record(newest));
    }
    let latest_success = finished
        .iter()
        .filter(|v| v.status.as_ref().is_some_and(|s| s.phase == Phase::Succeeded))
        .filter_map(|v| v.status.as_ref()?.completion_time.clone())
        .max_by_key(|t| t.0);
    if let Some(latest) = latest_success
        && runs
            .last_successful_verification_time
            .as_ref()
            .is_none_or(|t| t.0 < latest.0)
    {
        runs.last_successful_verification_time = Some(latest);
    }

    let created = owner.object.meta().creation_timestamp.as_ref().map_or(now, |t| t.0);
    let newest_scheduled = owned.iter().filter_map(scheduled_time).max();
    let recorded = runs.last_verification_schedule_time.as_ref().map(|t| t.0);
    let last_scheduled = newest_scheduled.max(recorded).unwrap_or(created);
    let decision = verification_plan::decide(cron, now, last_scheduled, owner.suspend, active.len());
    if let Decision::Run { scheduled, .. } = decision {
        let verification_name = verification_plan::name(&name, scheduled);
        let verification = Verification {
            metadata: ObjectMeta {
                name: Some(verification_name.clone()),
                labels: Some(BTreeMap::from([(owner.label.to_string(), name.clone())])),
                annotations: Some(BTreeMap::from([(
                    SCHEDULED_TIME_ANNOTATION.to_string(),
                    scheduled.to_string(),
                )])),
                owner_references: owner.object.controller_owner_ref(&()).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: plan()?,
            status: None,
        };
        match api.create(&PostParams::default(), &verification).await {
            Ok(created) => {
                runs.last_verification = Some(verification_plan::record(&created));
                let note = format!("created Verification {verification_name:?} for {scheduled}");
                events::publish(ctx, owner.object, EventType::Normal, "VerificationCreated", note).await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        runs.last_verification_schedule_time = Some(Time(scheduled));
    }
    let last = runs
        .last_verification_schedule_time
        .as_ref()
        .map_or(last_scheduled, |t| t.0);
    let next = cron.next_after(now.max(last)).filter(|_| !owner.suspend);
    runs.next_verification_time = next.map(Time);
    Ok(next)
}

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// The scheduled time a Verification was created for, from its annotation.
fn scheduled_time(v: &Verification) -> Option<Timestamp> {
    v.annotations().get(SCHEDULED_TIME_ANNOTATION)?.parse().ok()
}

/// A random number from the operating system's generator (which snapshot `Random` picks).
fn random() -> Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}
