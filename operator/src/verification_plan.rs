//! The pure part of the Verifications created on a cron schedule, by a Schedule (of its
//! snapshots) or a StorageGroup (of its repository): when one is due, which snapshot it
//! checks, the Verification it creates, which finished ones are beyond the history, and what
//! the owner's status shows of the newest.

use hort_crds::backup_job::{BackupJob, SourceKind};
use hort_crds::common::{GroupRef, Phase};
use hort_crds::restore_request::RestoreSource;
use hort_crds::schedule::{
    ConcurrencyPolicy, HistoryLimit, ScheduleSpec, SnapshotChoice, VerificationPolicy, VerificationRecord,
};
use hort_crds::storage_group::{RepositoryVerificationPolicy, StorageGroupSpec};
use hort_crds::verification::{
    DatabaseKind, DatabaseVerification, RepositoryVerification, Verification, VerificationSpec,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::schedule_plan::{CronSchedule, Decision, Facts, InvalidSchedule};

/// Parses `spec.verification.schedule` in `time_zone`, the value of field `time_zone_field`
/// (a Schedule's `spec.timeZone`, a StorageGroup's `spec.verification.timeZone`).
pub fn parse(
    schedule: &str,
    time_zone: Option<&str>,
    time_zone_field: &'static str,
) -> Result<CronSchedule, InvalidSchedule> {
    CronSchedule::parse(schedule, time_zone).map_err(|e| InvalidSchedule {
        field: if e.field == "spec.schedule" {
            "spec.verification.schedule"
        } else {
            time_zone_field
        },
        ..e
    })
}

/// Whether a verification is due: as for BackupJobs, only the latest missed time runs, and a
/// due run waits while another verification of the same owner has not finished.
pub fn decide(
    cron: &CronSchedule,
    now: Timestamp,
    last_scheduled: Timestamp,
    suspend: bool,
    active: usize,
) -> Decision {
    crate::schedule_plan::decide(
        cron,
        &Facts {
            now,
            last_scheduled,
            suspend,
            starting_deadline_seconds: None,
            concurrency_policy: ConcurrencyPolicy::Forbid,
            active_jobs: active,
            // Backup windows hold backups only.
            windows: None,
            outside_window: Default::default(),
        },
    )
}

/// Name of the Verification a Schedule or StorageGroup named `owner` creates for
/// `scheduled`: stable per scheduled time, so creating it twice is harmless.
pub fn name(owner: &str, scheduled: Timestamp) -> String {
    format!("{owner}-verify-{}", scheduled.as_second())
}

/// The spec of the repository Verification of StorageGroup `group`: the policy's share of
/// the packs, with the group's agent overrides and the operator's default deadline.
pub fn repository_spec(
    group: &str,
    spec: &StorageGroupSpec,
    policy: &RepositoryVerificationPolicy,
) -> VerificationSpec {
    VerificationSpec {
        storage_group_ref: GroupRef::storage_group(group),
        source: None,
        database: None,
        volume: None,
        repository: Some(RepositoryVerification {
            read_data_percent: policy.read_data_percent,
        }),
        active_deadline_seconds: None,
        agent: spec.agent.clone(),
    }
}

/// The snapshots of the succeeded jobs among `jobs`, oldest first.
pub fn snapshots_of(jobs: &[&BackupJob]) -> Vec<String> {
    let mut found: Vec<(Option<Timestamp>, String)> = jobs
        .iter()
        .filter_map(|j| {
            let status = j.status.as_ref()?;
            let id = status
                .snapshot_id
                .clone()
                .filter(|_| status.phase == Phase::Succeeded)?;
            Some((status.completion_time.as_ref().map(|t| t.0), id))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, id)| id).collect()
}

/// The spec of the Verification of schedule `name` in `namespace`: the schedule's group, the
/// snapshot chosen by `policy.snapshot` (`Random`: `snapshots[random % len]`, the newest by
/// tags when there are none), the policy's database or volume (a database of the source's
/// kind when neither is set), and the jobTemplate's deadline and agent overrides. `None` for a
/// volume source without `policy.volume`, which the API server refuses.
pub fn spec(
    schedule: &ScheduleSpec,
    policy: &VerificationPolicy,
    namespace: &str,
    name: &str,
    snapshots: &[String],
    random: u64,
) -> Option<VerificationSpec> {
    let template = &schedule.job_template.spec;
    let by_tags = RestoreSource {
        backup_job_ref: None,
        snapshot_id: None,
        tags: vec![
            format!("hort.dev/namespace={namespace}"),
            format!("hort.dev/schedule={name}"),
        ],
    };
    let source = match policy.snapshot {
        SnapshotChoice::Random if !snapshots.is_empty() => RestoreSource {
            backup_job_ref: None,
            snapshot_id: Some(snapshots[(random % snapshots.len() as u64) as usize].clone()),
            tags: Vec::new(),
        },
        _ => by_tags,
    };
    let default_database = |kind| DatabaseVerification {
        kind,
        image: None,
        resources: None,
        assertions: Vec::new(),
    };
    let (database, volume) = match (&policy.database, &policy.volume, template.source.kind()) {
        (Some(db), _, _) => (Some(db.clone()), None),
        (None, Some(volume), _) => (None, Some(volume.clone())),
        (None, None, Some(SourceKind::Postgres)) => (Some(default_database(DatabaseKind::Postgres)), None),
        (None, None, Some(SourceKind::Mariadb)) => (Some(default_database(DatabaseKind::Mariadb)), None),
        (None, None, _) => return None,
    };
    Some(VerificationSpec {
        storage_group_ref: template.storage_group_ref.clone(),
        source: Some(source),
        database,
        volume,
        repository: None,
        active_deadline_seconds: template.active_deadline_seconds,
        agent: template.agent.clone(),
    })
}

fn phase(v: &Verification) -> Phase {
    v.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The finished Verifications beyond `limits`, of the succeeded and of the failed ones apart;
/// `scheduled` gives each one's scheduled time (the newest are kept).
pub fn beyond_history<'a>(
    finished: &[&'a Verification],
    limits: &HistoryLimit,
    scheduled: impl Fn(&Verification) -> Option<Timestamp>,
) -> Vec<&'a Verification> {
    let mut beyond = Vec::new();
    for (wanted, keep) in [(Phase::Succeeded, limits.successful), (Phase::Failed, limits.failed)] {
        let mut of_phase: Vec<&Verification> = finished.iter().copied().filter(|v| phase(v) == wanted).collect();
        of_phase.sort_by_key(|v| std::cmp::Reverse(scheduled(v)));
        beyond.extend(of_phase.into_iter().skip(keep as usize));
    }
    beyond
}

/// What the owner's status shows of Verification `v`.
pub fn record(v: &Verification) -> VerificationRecord {
    let status = v.status.clone().unwrap_or_default();
    VerificationRecord {
        name: v.metadata.name.clone().unwrap_or_default(),
        time: status
            .completion_time
            .clone()
            .or_else(|| v.metadata.creation_timestamp.clone().map(|t| Time(t.0))),
        result: status.phase,
        snapshot_id: status.snapshot_id,
        restore_duration_seconds: status.restore_duration_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hort_crds::common::GroupKind;

    fn schedule(source: &str, verification: &str) -> ScheduleSpec {
        serde_yaml::from_str(&format!(
            "schedule: '0 2 * * *'\njobTemplate: {{spec: {{storageGroupRef: {{name: s3}}, source: {source}, \
             activeDeadlineSeconds: 600, agent: {{nodeSelector: {{disk: ssd}}}}}}}}\nverification: {verification}"
        ))
        .unwrap()
    }

    fn plan(spec: &ScheduleSpec, snapshots: &[&str], random: u64) -> Option<VerificationSpec> {
        let snapshots: Vec<String> = snapshots.iter().map(|s| s.to_string()).collect();
        spec_from(spec, &snapshots, random)
    }

    fn spec_from(spec: &ScheduleSpec, snapshots: &[String], random: u64) -> Option<VerificationSpec> {
        super::spec(
            spec,
            spec.verification.as_ref().unwrap(),
            "prod",
            "nightly",
            snapshots,
            random,
        )
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_database_source_is_verified_in_a_server_of_its_kind_from_the_newest_snapshot_by_tags() {
        let spec = schedule(
            "{postgres: {host: db, credentialsSecretRef: {name: c}}}",
            "{schedule: '@weekly'}",
        );
        let planned = plan(&spec, &["aaaa1111"], 0).unwrap();
        assert_eq!(planned.database.as_ref().unwrap().kind, DatabaseKind::Postgres);
        assert!(planned.volume.is_none());
        assert_eq!(
            planned.source.as_ref().unwrap().tags,
            ["hort.dev/namespace=prod", "hort.dev/schedule=nightly"],
            "Latest: the newest snapshot of this schedule, looked up by its tags"
        );
        assert_eq!(planned.storage_group_ref.name, "s3");
        assert_eq!(planned.active_deadline_seconds, Some(600));
        assert_eq!(planned.agent.unwrap().node_selector["disk"], "ssd");
        let maria = schedule(
            "{mariadb: {host: db, credentialsSecretRef: {name: c}}}",
            "{schedule: '@weekly'}",
        );
        assert_eq!(
            plan(&maria, &[], 0).unwrap().database.unwrap().kind,
            DatabaseKind::Mariadb
        );
    }

    #[test]
    fn a_schedule_on_a_shared_group_verifies_through_the_same_shared_group() {
        let mut spec = schedule(
            "{volume: {claimName: data}}",
            "{schedule: '@daily', volume: {size: 1Gi}}",
        );
        spec.job_template.spec.storage_group_ref =
            serde_yaml::from_str("{kind: ClusterStorageGroup, name: shared}").unwrap();
        let planned = plan(&spec, &["aaaa1111"], 0).unwrap();
        assert_eq!(planned.storage_group_ref.kind, GroupKind::ClusterStorageGroup);
        assert_eq!(planned.storage_group_ref.name, "shared");
    }

    #[test]
    fn random_picks_one_of_the_kept_snapshots_and_falls_back_to_the_newest() {
        let spec = schedule(
            "{volume: {claimName: data}}",
            "{schedule: '@daily', snapshot: Random, volume: {size: 2Gi, command: {image: alpine, command: [ls]}}}",
        );
        let snapshots = ["aaaa1111", "bbbb2222", "cccc3333"];
        let picked: Vec<String> = (0..3)
            .map(|r| plan(&spec, &snapshots, r).unwrap().source.unwrap().snapshot_id.unwrap())
            .collect();
        assert_eq!(picked, snapshots, "every kept snapshot can be picked");
        let planned = plan(&spec, &[], 7).unwrap();
        let source = planned.source.as_ref().unwrap();
        assert!(source.snapshot_id.is_none());
        assert_eq!(source.tags.len(), 2, "no job kept: the newest by tags");
        let volume = planned.volume.unwrap();
        assert_eq!(volume.size.0, "2Gi");
        assert_eq!(volume.command.unwrap().image, "alpine", "the user's command goes along");
    }

    #[test]
    fn a_volume_source_without_a_volume_block_plans_nothing() {
        let spec = schedule("{volume: {claimName: data}}", "{schedule: '@daily'}");
        assert_eq!(plan(&spec, &[], 0), None);
    }

    #[test]
    fn the_verification_schedule_is_its_own_and_waits_for_a_running_verification() {
        let cron = parse("0 6 * * 0", Some("Europe/Berlin"), "spec.timeZone").unwrap();
        // Sunday 2026-03-01 06:00 in Berlin is 05:00 UTC.
        let scheduled = t("2026-03-01T05:00:00Z");
        let now = t("2026-03-01T05:00:30Z");
        let last = t("2026-02-22T05:00:00Z");
        assert_eq!(
            decide(&cron, now, last, false, 0),
            Decision::Run {
                scheduled,
                replace_active: false
            }
        );
        assert_eq!(
            decide(&cron, now, last, false, 1),
            Decision::WaitForActive { scheduled }
        );
        assert_eq!(
            decide(&cron, now, last, true, 0),
            Decision::Idle,
            "suspend stops verifications too"
        );
        assert_eq!(decide(&cron, now, scheduled, false, 0), Decision::Idle);
        assert_eq!(
            parse("61 * * * *", None, "spec.timeZone").unwrap_err().field,
            "spec.verification.schedule"
        );
        let zone = parse("@daily", Some("Mars/Olympus"), "spec.verification.timeZone").unwrap_err();
        assert_eq!(zone.field, "spec.verification.timeZone", "the owner names its field");
        assert_eq!(name("nightly", scheduled), "nightly-verify-1772341200");
    }

    fn verification(name: &str, phase: &str, completed: &str) -> Verification {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "Verification",
            "metadata": {"name": name},
            "spec": {"storageGroupRef": {"name": "g"}, "source": {"snapshotId": "abcd1234"}, "volume": {"size": "1Gi"}},
            "status": {"phase": phase, "completionTime": completed, "snapshotId": "abcd1234", "restoreDurationSeconds": 3.5}
        }))
        .unwrap()
    }

    #[test]
    fn history_keeps_the_newest_of_each_result_and_the_record_shows_the_measured_rto() {
        let all = [
            verification("v-1", "Succeeded", "2026-03-01T01:00:00Z"),
            verification("v-2", "Failed", "2026-03-01T02:00:00Z"),
            verification("v-3", "Succeeded", "2026-03-01T03:00:00Z"),
            verification("v-4", "Failed", "2026-03-01T04:00:00Z"),
        ];
        let finished: Vec<&Verification> = all.iter().collect();
        let limits = HistoryLimit {
            successful: 1,
            failed: 1,
        };
        let completed = |v: &Verification| v.status.as_ref()?.completion_time.as_ref().map(|t| t.0);
        let names: Vec<String> = beyond_history(&finished, &limits, completed)
            .iter()
            .map(|v| v.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["v-1", "v-2"]);
        let shown = record(&all[2]);
        assert_eq!(
            (
                shown.name.as_str(),
                shown.result,
                shown.snapshot_id.as_deref(),
                shown.restore_duration_seconds
            ),
            ("v-3", Phase::Succeeded, Some("abcd1234"), Some(3.5))
        );
        assert_eq!(shown.time, Some(Time(t("2026-03-01T03:00:00Z"))));
    }

    #[test]
    fn a_groups_repository_verification_reads_its_share_with_the_groups_agent_overrides() {
        let group: StorageGroupSpec = serde_yaml::from_str(
            "targets: [{name: disk, pvc: {claimName: backups}}]\nencryption: {keySecretRef: {name: key}}\n\
             agent: {nodeSelector: {disk: ssd}}\n\
             verification: {schedule: '@weekly', timeZone: Europe/Berlin, readDataPercent: 25}",
        )
        .unwrap();
        let policy = group.verification.clone().unwrap();
        let planned = repository_spec("offsite", &group, &policy);
        assert_eq!(planned.storage_group_ref.name, "offsite");
        assert_eq!(planned.repository.map(|r| r.read_data_percent), Some(25));
        assert!(planned.source.is_none() && planned.database.is_none() && planned.volume.is_none());
        assert_eq!(planned.agent.unwrap().node_selector["disk"], "ssd");
        assert_eq!(planned.active_deadline_seconds, None, "the operator's default deadline");
        assert_eq!(
            policy.history_limit,
            HistoryLimit::default(),
            "3 successes and 1 failure kept"
        );
        // The group's time zone is its own field, named when wrong.
        let cron = parse(
            &policy.schedule,
            policy.time_zone.as_deref(),
            "spec.verification.timeZone",
        )
        .unwrap();
        assert_eq!(cron.zone().iana_name(), Some("Europe/Berlin"));
    }

    #[test]
    fn snapshots_come_from_succeeded_jobs_only() {
        let job = |phase: &str, id: Option<&str>, done: &str| -> BackupJob {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "j"},
                "spec": {"storageGroupRef": {"name": "g"}, "source": {"volume": {"claimName": "c"}}},
                "status": {"phase": phase, "snapshotId": id, "completionTime": done}
            }))
            .unwrap()
        };
        let jobs = [
            job("Succeeded", Some("bbbb2222"), "2026-03-02T00:00:00Z"),
            job("Failed", None, "2026-03-03T00:00:00Z"),
            job("Succeeded", Some("aaaa1111"), "2026-03-01T00:00:00Z"),
        ];
        let refs: Vec<&BackupJob> = jobs.iter().collect();
        assert_eq!(snapshots_of(&refs), ["aaaa1111", "bbbb2222"]);
    }
}
