//! The typed data the overview page shows, made from Hort's objects by pure functions: job
//! rows and details, schedules, storage groups.

use hort_crds::common::{Phase, Progress};
use hort_crds::schedule::Retention;
use hort_crds::{BackupJob, Schedule, StorageGroup};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::schedule::SCHEDULE_LABEL;

/// The state of a BackupJob as the page shows it (its phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its group or agent pod.
    Pending,
    /// An agent pod is working on it.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully after all retries.
    Failed,
}

impl JobState {
    /// Every state, in the order of the filter's choices.
    pub const ALL: [JobState; 4] = [
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Pending,
    ];

    /// The word in a query parameter and a CSS class: `running`, `succeeded`, …
    pub fn key(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    /// Parses [`JobState::key`].
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.key() == key)
    }

    /// The text shown beside the colour: `Running`, `Succeeded`, …
    pub fn label(self) -> &'static str {
        match self {
            JobState::Pending => "Pending",
            JobState::Running => "Running",
            JobState::Succeeded => "Succeeded",
            JobState::Failed => "Failed",
        }
    }
}

impl From<Phase> for JobState {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Pending => JobState::Pending,
            Phase::Running => JobState::Running,
            Phase::Succeeded => JobState::Succeeded,
            Phase::Failed => JobState::Failed,
        }
    }
}

/// One BackupJob in the jobs list.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The Schedule that created it (label `hort.dev/schedule`), none for a manual job.
    pub schedule: Option<String>,
    /// Its state.
    pub state: JobState,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// When its agent started.
    pub started: Option<Timestamp>,
    /// When it finished.
    pub finished: Option<Timestamp>,
    /// Progress of a running job.
    pub progress: Option<Progress>,
    /// The snapshot it wrote.
    pub snapshot_id: Option<String>,
    /// Its status message (the reason of a failure).
    pub message: Option<String>,
    /// Its storage group.
    pub storage_group: String,
}

impl JobRow {
    /// The row of `job`.
    pub fn of(job: &BackupJob) -> Self {
        let status = job.status.clone().unwrap_or_default();
        Self {
            namespace: job.namespace().unwrap_or_default(),
            name: job.name_any(),
            schedule: job.labels().get(SCHEDULE_LABEL).cloned(),
            state: status.phase.into(),
            created: job.metadata.creation_timestamp.as_ref().map(|t| t.0),
            started: status.start_time.map(|t| t.0),
            finished: status.completion_time.map(|t| t.0),
            progress: status.progress,
            snapshot_id: status.snapshot_id,
            message: status.message,
            storage_group: job.spec.storage_group_ref.name.clone(),
        }
    }
}

/// What the jobs list is narrowed to (the query parameters `namespace`, `state`, `schedule`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this Schedule.
    pub schedule: Option<String>,
}

impl JobFilter {
    /// Whether `row` passes the filter.
    pub fn admits(&self, row: &JobRow) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == row.namespace)
            && self.state.is_none_or(|s| s == row.state)
            && self.schedule.as_ref().is_none_or(|s| row.schedule.as_ref() == Some(s))
    }
}

/// Sorts `rows` newest first (by creation time, then name).
pub fn newest_first(rows: &mut [JobRow]) {
    rows.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
}

/// One entry of a job's timeline: a condition's last transition or an Event.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    /// When it happened.
    pub time: Option<Timestamp>,
    /// `condition` or `event`.
    pub source: &'static str,
    /// Condition type and status (`Complete=True`) or the Event's type (`Warning`).
    pub what: String,
    /// The reason.
    pub reason: String,
    /// The message or the Event's note.
    pub message: String,
}

impl TimelineEntry {
    /// The entry of a condition.
    pub fn of_condition(c: &Condition) -> Self {
        Self {
            time: Some(c.last_transition_time.0),
            source: "condition",
            what: format!("{}={}", c.type_, c.status),
            reason: c.reason.clone(),
            message: c.message.clone(),
        }
    }
}

/// What the page read with the user's own token, or why it shows nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadAsUser<T> {
    /// What was read.
    Shown(T),
    /// Not shown, and why (names the permission that is missing, or what is gone).
    Hidden(String),
}

/// A job's Events, oldest first, if the user may list them.
pub type EventsView = ReadAsUser<Vec<TimelineEntry>>;

/// The end of the agent pod's log, if the user may read it.
pub type LogView = ReadAsUser<String>;

/// Statistics of a finished backup.
#[derive(Clone, Debug, PartialEq)]
pub struct JobStats {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes new to the repository.
    pub bytes_new: u64,
    /// Bytes stored after compression and encryption.
    pub bytes_stored: u64,
    /// Files (volume backups) or dumps.
    pub files: u64,
    /// Bytes read per byte stored.
    pub dedup_ratio: f64,
    /// Seconds the backup took.
    pub duration_seconds: f64,
}

/// One BackupJob in detail.
#[derive(Clone, Debug, PartialEq)]
pub struct JobDetail {
    /// Its row (state, times, snapshot).
    pub row: JobRow,
    /// `postgres`, `mariadb` or `volume`.
    pub source_kind: String,
    /// Agent pods started so far.
    pub attempts: u32,
    /// The current or last agent pod.
    pub agent_pod: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// The conditions' transitions, oldest first.
    pub conditions: Vec<TimelineEntry>,
    /// Its Events.
    pub events: EventsView,
    /// The end of the current or last agent pod's log (none without a pod).
    pub log: Option<LogView>,
    /// Statistics of a successful backup.
    pub stats: Option<JobStats>,
}

impl JobDetail {
    /// The detail of `job`, with `events` and the agent pod's `log` read separately.
    pub fn of(job: &BackupJob, events: EventsView, log: Option<LogView>) -> Self {
        let status = job.status.clone().unwrap_or_default();
        let source = &job.spec.source;
        let source_kind = if source.postgres.is_some() {
            "postgres"
        } else if source.mariadb.is_some() {
            "mariadb"
        } else {
            "volume"
        };
        let mut conditions: Vec<_> = status.conditions.iter().map(TimelineEntry::of_condition).collect();
        conditions.sort_by_key(|c| c.time);
        Self {
            row: JobRow::of(job),
            source_kind: source_kind.into(),
            attempts: status.attempts,
            agent_pod: status.agent_pod,
            tags: job.spec.tags.clone(),
            conditions,
            events,
            log,
            stats: status.stats.map(|s| JobStats {
                bytes_read: s.bytes_read,
                bytes_new: s.bytes_new,
                bytes_stored: s.bytes_stored,
                files: s.files,
                dedup_ratio: s.dedup_ratio,
                duration_seconds: s.duration_seconds,
            }),
        }
    }
}

/// The latest Verification of a Schedule's snapshots.
#[derive(Clone, Debug, PartialEq)]
pub struct VerificationSummary {
    /// The Verification's name.
    pub name: String,
    /// When it finished.
    pub time: Option<Timestamp>,
    /// Its result.
    pub state: JobState,
    /// The snapshot it verified.
    pub snapshot_id: Option<String>,
}

/// One Schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// Its time zone (`UTC` when unset).
    pub time_zone: String,
    /// Whether it is suspended.
    pub suspended: bool,
    /// The next run.
    pub next_run: Option<Timestamp>,
    /// The last run.
    pub last_run: Option<Timestamp>,
    /// The last run that succeeded.
    pub last_success: Option<Timestamp>,
    /// The retention policy in words, e.g. `7 daily, 4 weekly`.
    pub retention: String,
    /// The latest Verification.
    pub last_verification: Option<VerificationSummary>,
}

impl ScheduleRow {
    /// The row of `schedule`.
    pub fn of(schedule: &Schedule) -> Self {
        let status = schedule.status.clone().unwrap_or_default();
        let time = |t: Option<Time>| t.map(|t| t.0);
        Self {
            namespace: schedule.namespace().unwrap_or_default(),
            name: schedule.name_any(),
            cron: schedule.spec.schedule.clone(),
            time_zone: schedule.spec.time_zone.clone().unwrap_or_else(|| "UTC".into()),
            suspended: schedule.spec.suspend,
            next_run: time(status.next_schedule_time),
            last_run: time(status.last_schedule_time),
            last_success: time(status.last_successful_time),
            retention: schedule
                .spec
                .retention
                .as_ref()
                .map_or_else(|| "keep all".into(), retention_text),
            last_verification: status.verification_runs.last_verification.map(|v| VerificationSummary {
                name: v.name,
                time: time(v.time),
                state: v.result.into(),
                snapshot_id: v.snapshot_id,
            }),
        }
    }
}

/// A retention policy in words: `last 3, 7 daily, 4 weekly, within 30d`.
pub fn retention_text(r: &Retention) -> String {
    let counts = [
        ("last", r.keep_last),
        ("hourly", r.keep_hourly),
        ("daily", r.keep_daily),
        ("weekly", r.keep_weekly),
        ("monthly", r.keep_monthly),
        ("yearly", r.keep_yearly),
    ];
    let mut parts: Vec<String> = counts
        .iter()
        .filter_map(|(what, n)| {
            n.map(|n| {
                if *what == "last" {
                    format!("last {n}")
                } else {
                    format!("{n} {what}")
                }
            })
        })
        .collect();
    if let Some(within) = &r.keep_within {
        parts.push(format!("within {within}"));
    }
    if parts.is_empty() {
        "keep all".into()
    } else {
        parts.join(", ")
    }
}

/// The health of one target of a storage group.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRow {
    /// The target's name.
    pub name: String,
    /// Where it is, e.g. `S3 bucket hort-backups` or `claim backups`.
    pub location: String,
    /// Whether the last check reached it; none before the first check.
    pub reachable: Option<bool>,
    /// Whether the last check could write to it.
    pub writable: Option<bool>,
    /// Bytes the repository uses on it.
    pub bytes_used: Option<u64>,
    /// Bytes free on it (claims).
    pub bytes_free: Option<u64>,
    /// Files the other targets hold and it lacks after the last check (`Mirror`); none when
    /// the check did not count them.
    pub missing_files: Option<u64>,
    /// When it was last checked.
    pub last_check: Option<Timestamp>,
    /// What went wrong at the last check.
    pub message: Option<String>,
}

/// One StorageGroup.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `Spread`, `Mirror` or `Failover`.
    pub strategy: String,
    /// Its `Ready` condition: status, reason and message.
    pub ready: Option<(bool, String, String)>,
    /// Size of the repository, e.g. `1.2 GiB`.
    pub used_size: Option<String>,
    /// Its targets.
    pub targets: Vec<TargetRow>,
}

impl GroupRow {
    /// The row of `group`.
    pub fn of(group: &StorageGroup) -> Self {
        let status = group.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status == "True", c.reason.clone(), c.message.clone()));
        let targets = group
            .spec
            .targets
            .iter()
            .map(|target| {
                let location = match (&target.s3, &target.pvc) {
                    (Some(s3), _) => format!("S3 bucket {} at {}", s3.bucket, s3.endpoint),
                    (_, Some(pvc)) => format!("claim {}", pvc.claim_name),
                    _ => String::new(),
                };
                let checked = status.targets.iter().find(|t| t.name == target.name);
                TargetRow {
                    name: target.name.clone(),
                    location,
                    reachable: checked.map(|t| t.reachable),
                    writable: checked.map(|t| t.writable),
                    bytes_used: checked.and_then(|t| t.bytes_used),
                    bytes_free: checked.and_then(|t| t.bytes_free),
                    missing_files: checked.and_then(|t| t.missing_files),
                    last_check: checked.and_then(|t| t.last_check_time.as_ref().map(|t| t.0)),
                    message: checked.and_then(|t| t.message.clone()),
                }
            })
            .collect();
        Self {
            namespace: group.namespace().unwrap_or_default(),
            name: group.name_any(),
            strategy: format!("{:?}", group.spec.strategy),
            ready,
            used_size: status.used_size,
            targets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(value: serde_json::Value) -> BackupJob {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_job_row_takes_its_schedule_from_the_label_and_its_state_from_the_phase() {
        let scheduled = job(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
            "metadata": {"name": "n-1", "namespace": "shop", "labels": {"hort.dev/schedule": "nightly"},
                         "creationTimestamp": "2026-11-30T09:00:00Z"},
            "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}},
            "status": {"phase": "Running", "progress": {"bytesDone": 5}}}));
        let row = JobRow::of(&scheduled);
        assert_eq!(row.schedule.as_deref(), Some("nightly"));
        assert_eq!(row.state, JobState::Running);
        assert_eq!(row.progress.unwrap().bytes_done, 5);
        let manual = job(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
            "metadata": {"name": "m", "namespace": "shop"},
            "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}}}));
        let row = JobRow::of(&manual);
        assert_eq!((row.schedule, row.state), (None, JobState::Pending));
        assert_eq!(
            JobDetail::of(&manual, EventsView::Shown(vec![]), None).source_kind,
            "volume"
        );
    }

    #[test]
    fn the_filter_and_the_order() {
        let row = |name: &str, created: &str, state: JobState, schedule: Option<&str>| JobRow {
            namespace: "shop".into(),
            name: name.into(),
            schedule: schedule.map(Into::into),
            state,
            created: Some(created.parse().unwrap()),
            started: None,
            finished: None,
            progress: None,
            snapshot_id: None,
            message: None,
            storage_group: "s3".into(),
        };
        let mut rows = vec![
            row("old", "2026-11-29T00:00:00Z", JobState::Failed, None),
            row("new", "2026-11-30T00:00:00Z", JobState::Succeeded, Some("nightly")),
        ];
        newest_first(&mut rows);
        assert_eq!(rows[0].name, "new");
        let failed = JobFilter {
            state: Some(JobState::Failed),
            ..JobFilter::default()
        };
        assert!(failed.admits(&rows[1]) && !failed.admits(&rows[0]));
        let nightly = JobFilter {
            schedule: Some("nightly".into()),
            namespace: Some("shop".into()),
            ..JobFilter::default()
        };
        assert!(nightly.admits(&rows[0]) && !nightly.admits(&rows[1]));
        let other = JobFilter {
            namespace: Some("other".into()),
            ..JobFilter::default()
        };
        assert!(!other.admits(&rows[0]));
    }

    #[test]
    fn retention_in_words() {
        let retention = Retention {
            keep_last: Some(3),
            keep_daily: Some(7),
            keep_within: Some("30d".into()),
            ..Default::default()
        };
        assert_eq!(retention_text(&retention), "last 3, 7 daily, within 30d");
        assert_eq!(retention_text(&Retention::default()), "keep all");
    }

    #[test]
    fn a_target_not_checked_yet_has_no_health() {
        let group: StorageGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup",
            "metadata": {"name": "g", "namespace": "shop"},
            "spec": {"targets": [{"name": "disk", "pvc": {"claimName": "backups"}}],
                     "encryption": {"keySecretRef": {"name": "key"}}}}))
        .unwrap();
        let row = GroupRow::of(&group);
        assert_eq!(row.targets[0].location, "claim backups");
        assert_eq!(row.targets[0].reachable, None);
        assert_eq!(row.ready, None);
        assert_eq!(row.strategy, "Spread");
    }
}
