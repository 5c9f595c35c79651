//! A Schedule's verifications (`spec.verification`): creates a Verification when one is due,
//! deletes finished ones beyond the history, and records the newest in the Schedule's status.

use std::collections::BTreeMap;

use hort_crds::backup_job::BackupJob;
use hort_crds::schedule::{Schedule, ScheduleStatus, VerificationPolicy};
use hort_crds::verification::Verification;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::schedule::{SCHEDULE_LABEL, SCHEDULED_TIME_ANNOTATION};
use crate::schedule_plan::{CronSchedule, Decision};
use crate::verification_plan;

/// Runs the verification part of a Schedule's reconcile with `cron` (the parsed
/// `spec.verification.schedule`); `jobs` are the schedule's BackupJobs. Returns when the next
/// verification is due.
pub async fn reconcile(
    ctx: &Context,
    schedule: &Schedule,
    namespace: &str,
    policy: &VerificationPolicy,
    cron: &CronSchedule,
    jobs: &[&BackupJob],
    status: &mut ScheduleStatus,
) -> Result<Option<Timestamp>> {
    let name = schedule.name_any();
    let now = ctx.clock.now();
    let api: Api<Verification> = Api::namespaced(ctx.client.clone(), namespace);
    let uid = schedule.uid();
    let owned: Vec<Verification> = api
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}")))
        .await?
        .items
        .into_iter()
        .filter(|v| v.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
        .collect();
    let is_finished = |v: &&Verification| v.status.as_ref().is_some_and(|s| s.phase.is_terminal());
    let (finished, active): (Vec<&Verification>, Vec<&Verification>) = owned.iter().partition(is_finished);
    for old in verification_plan::beyond_history(&finished, &policy.history_limit, scheduled_time) {
        delete(&api, old).await?;
    }

    // The newest by scheduled time, and the newest success, for status and the metric.
    if let Some(newest) = owned.iter().max_by_key(|v| scheduled_time(v)) {
        status.last_verification = Some(verification_plan::record(newest));
    }
    let latest_success = finished
        .iter()
        .filter(|v| {
            v.status
                .as_ref()
                .is_some_and(|s| s.phase == hort_crds::common::Phase::Succeeded)
        })
        .filter_map(|v| v.status.as_ref()?.completion_time.clone())
        .max_by_key(|t| t.0);
    if let Some(latest) = latest_success
        && status
            .last_successful_verification_time
            .as_ref()
            .is_none_or(|t| t.0 < latest.0)
    {
        status.last_successful_verification_time = Some(latest);
    }
    if let Some(success) = &status.last_successful_verification_time {
        ctx.metrics
            .record_verified(namespace, &name, success.0.as_millisecond() as f64 / 1000.0);
    }

    let created = schedule.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let newest_scheduled = owned.iter().filter_map(scheduled_time).max();
    let recorded = status.last_verification_schedule_time.as_ref().map(|t| t.0);
    let last_scheduled = newest_scheduled.max(recorded).unwrap_or(created);
    let decision = verification_plan::decide(cron, now, last_scheduled, schedule.spec.suspend, active.len());
    if let Decision::Run { scheduled, .. } = decision {
        let snapshots = verification_plan::snapshots_of(jobs);
        let spec = verification_plan::spec(&schedule.spec, policy, namespace, &name, &snapshots, random()?).ok_or(
            Error::MissingObjectField {
                kind: "Schedule",
                field: "spec.verification.volume (required for a volume source)",
            },
        )?;
        let verification_name = verification_plan::name(&name, scheduled);
        let verification = Verification {
            metadata: ObjectMeta {
                name: Some(verification_name.clone()),
                labels: Some(BTreeMap::from([(SCHEDULE_LABEL.to_string(), name.clone())])),
                annotations: Some(BTreeMap::from([(
                    SCHEDULED_TIME_ANNOTATION.to_string(),
                    scheduled.to_string(),
                )])),
                owner_references: schedule.controller_owner_ref(&()).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        };
        match api.create(&PostParams::default(), &verification).await {
            Ok(created) => {
                status.last_verification = Some(verification_plan::record(&created));
                let note = format!("created Verification {verification_name:?} for {scheduled}");
                events::publish(ctx, schedule, EventType::Normal, "VerificationCreated", note).await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        status.last_verification_schedule_time = Some(Time(scheduled));
    }
    let last = status
        .last_verification_schedule_time
        .as_ref()
        .map_or(last_scheduled, |t| t.0);
    let next = cron.next_after(now.max(last)).filter(|_| !schedule.spec.suspend);
    status.next_verification_time = next.map(Time);
    Ok(next)
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

async fn delete(api: &Api<Verification>, v: &Verification) -> Result<()> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(&v.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
