//! `Schedule`: BackupJobs created on a cron schedule, with retention of the snapshots.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup_job::BackupJobSpec;
use crate::common::{CRON, LocalObjectRef, TIME_ZONE};
use crate::verification::{DatabaseVerification, VolumeVerification};

/// Creates BackupJobs from `jobTemplate` on a cron schedule and prunes old snapshots by
/// `retention` after each successful backup.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hort.dev",
    version = "v1alpha1",
    kind = "Schedule",
    doc = "Creates BackupJobs on a cron schedule and prunes old snapshots by a retention policy.",
    namespaced,
    status = "ScheduleStatus",
    shortname = "hsched",
    category = "hort",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last Success", type_ = "date", json_path = ".status.lastSuccessfulTime"),
    printcolumn(name = "Next Run", type_ = "string", json_path = ".status.nextScheduleTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 52")
        .message("metadata.name of a Schedule may have at most 52 characters: its BackupJobs are named <schedule>-<minutes>"),
    validation = Rule::new("!has(self.spec.verification) || (has(self.spec.jobTemplate.spec.source.volume) ? !has(self.spec.verification.database) && has(self.spec.verification.volume) : !has(self.spec.verification.volume))")
        .message("spec.verification must match the jobTemplate's source: a volume source needs verification.volume (with the size of the temporary claim), a database source takes no verification.volume"),
    validation = Rule::new("!has(self.spec.verification) || !has(self.spec.verification.database) || (has(self.spec.jobTemplate.spec.source.postgres) ? self.spec.verification.database.kind == 'Postgres' : self.spec.verification.database.kind == 'Mariadb')")
        .message("spec.verification.database.kind must match the jobTemplate's source: Postgres for a postgres source, Mariadb for a mariadb source"),
    validation = Rule::new("!has(self.spec.outsideWindow) || self.spec.outsideWindow != 'Skip' || (has(self.spec.windows) && self.spec.windows.size() > 0)")
        .message("spec.outsideWindow: Skip needs spec.windows (the windows outside which runs are skipped)")
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Cron expression with five fields (minute hour day-of-month month day-of-week), e.g.
    /// `30 2 * * *`, or one of `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[schemars(regex(pattern = CRON))]
    pub schedule: String,
    /// IANA time zone the schedule is read in, e.g. `Europe/Berlin`; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = TIME_ZONE))]
    pub time_zone: Option<String>,
    /// Stop creating new BackupJobs and Verifications; running ones continue.
    #[serde(default)]
    pub suspend: bool,
    /// What happens when a run is due while the previous one is still running: `Forbid`
    /// skips the new run, `Allow` runs both, `Replace` cancels the running one.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A run that could not start within this many seconds of its time (e.g. during an
    /// operator outage) is skipped. Missed runs are never run more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<i64>,
    /// The BackupJob created on each run.
    pub job_template: BackupJobTemplate,
    /// Which snapshots of this schedule to keep; the rest are pruned after each successful
    /// backup. Nothing is pruned when unset. Calendar rules (hourly to yearly) count periods
    /// in UTC, whatever `timeZone` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// How many finished BackupJobs of this schedule are kept as objects.
    #[serde(default)]
    pub history_limit: HistoryLimit,
    /// Proves this schedule's snapshots restorable on a cron schedule of its own: each run
    /// creates a Verification (named `<schedule>-verify-<unix time>`) and its result is shown
    /// in `status.lastVerification`. No verification when unset. The Verifications name the
    /// jobTemplate's `storageGroupRef`, a ClusterStorageGroup included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationPolicy>,
    /// Backup windows, read in `timeZone`: a BackupJob is created only while one of them is
    /// open. A run due while every window is closed waits for the next window to open, or is
    /// skipped (`outsideWindow`). No windows (the default): runs start when they are due.
    /// Verifications and retention are not held by windows. `startingDeadlineSeconds` still
    /// counts from the scheduled time, so a run that waits longer than it is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub windows: Vec<BackupWindow>,
    /// What happens to a run that is due while every window in `windows` is closed: `Wait`
    /// (the default) creates its BackupJob as soon as a window opens (at most once, however
    /// many runs fell due meanwhile); `Skip` skips it, with an Event and
    /// `status.lastSkippedTime`. `Skip` needs `windows`.
    #[serde(default)]
    pub outside_window: OutsideWindow,
}

/// A time of day, read in the Schedule's `timeZone`, during which backups may start.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start != self.end")
    .message("spec.windows[]: start and end must differ; for a window open all day leave windows unset"))]
pub struct BackupWindow {
    /// Days on which the window opens, e.g. `[Sat, Sun]`; every day when empty. A window over
    /// midnight belongs to the day it opens: `{days: [Fri], start: "22:00", end: "04:00"}`
    /// is open from Friday 22:00 to Saturday 04:00.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,
    /// When the window opens, `HH:MM` (24 hours) local time. A time the clock skips
    /// (daylight saving) is read with the offset before the jump: `02:30` on a day that skips
    /// 02:00-03:00 is 03:30; a time the clock passes twice is the first of them. The same
    /// holds for `end`.
    #[schemars(length(min = 5, max = 5), regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// When the window closes, `HH:MM` (24 hours) local time; earlier than `start` for a
    /// window over midnight, which closes on the next day.
    #[schemars(length(min = 5, max = 5), regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
}

/// A day of the week.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// What happens to a run that is due while every backup window is closed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OutsideWindow {
    /// Create its BackupJob when the next window opens.
    #[default]
    Wait,
    /// Skip it.
    Skip,
}

/// When and how a Schedule verifies its snapshots. Each Verification runs with the
/// jobTemplate's StorageGroup, `activeDeadlineSeconds` and `agent` overrides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationPolicy {
    /// Cron expression of the verification runs, read in the Schedule's `timeZone`, e.g.
    /// `0 6 * * 0` (Sundays at 06:00). A run that is due while the previous verification still
    /// runs starts when it ends; after an operator outage only the latest missed run happens;
    /// `suspend` stops verifications too.
    #[schemars(regex(pattern = CRON))]
    pub schedule: String,
    /// Which snapshot each run verifies: `Latest`, the newest snapshot of this schedule (by
    /// its tags, looked up in the repository when the run starts), or `Random`, one picked at
    /// random by the operator among the snapshots of the succeeded BackupJobs this schedule
    /// still keeps as objects (`historyLimit.successful`), so older snapshots get proven too
    /// (the newest when it keeps none).
    #[serde(default)]
    pub snapshot: SnapshotChoice,
    /// Restore into a throwaway database server; for a postgres or mariadb source, when
    /// neither this nor `volume` is set, a server of the source's kind with the default image
    /// and resources and no assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseVerification>,
    /// Restore into a temporary claim of this size; required for a volume source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeVerification>,
    /// How many finished Verifications of this schedule are kept as objects.
    #[serde(default)]
    pub history_limit: HistoryLimit,
}

/// Which snapshot a scheduled verification checks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SnapshotChoice {
    /// The newest snapshot of the schedule.
    #[default]
    Latest,
    /// A random one of the schedule's snapshots whose BackupJobs are still kept.
    Random,
}

/// What to do when a run is due while another one still runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Skip the new run.
    #[default]
    Forbid,
    /// Run both.
    Allow,
    /// Cancel the running job and start the new one.
    Replace,
}

/// Template of the BackupJobs a Schedule creates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupJobTemplate {
    /// Labels and annotations copied to each BackupJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Spec of each BackupJob.
    pub spec: BackupJobSpec,
}

/// Labels and annotations of a templated object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels added to each created object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to each created object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Which snapshots to keep, as in restic's `forget`: a snapshot is kept when any rule keeps it.
/// Hours, days, ISO weeks, months and years are counted in UTC, whatever the Schedule's
/// `timeZone`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.keepLast) || has(self.keepHourly) || has(self.keepDaily) || has(self.keepWeekly) || has(self.keepMonthly) || has(self.keepYearly) || has(self.keepWithin)")
    .message("set at least one of keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly or keepWithin, or remove retention to keep every snapshot"))]
pub struct Retention {
    /// Keep the newest N snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot younger than this period before the newest one: one or more
    /// number-unit pairs with units y (years), mo (months), w (weeks), d (days), h (hours),
    /// each at most once, e.g. `36h`, `14d`, `2w`, `1y6mo`. Years and months are calendar
    /// units (six months before 31 August is 28 or 29 February). `m` is refused: write `mo`
    /// for months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = hort_protocol::period::PATTERN))]
    #[x_kube(validation = Rule::new("!self.matches('[0-9]m([^o]|$)')")
        .message("keepWithin: `m` is ambiguous; write `mo` for months or `h` for hours, e.g. 6mo"))]
    pub keep_within: Option<String>,
}

/// How many finished objects (BackupJobs, Verifications) to keep.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryLimit {
    /// Succeeded ones kept.
    #[serde(default = "default_successful")]
    #[schemars(range(min = 0, max = 1000))]
    pub successful: u32,
    /// Failed ones kept.
    #[serde(default = "default_failed")]
    #[schemars(range(min = 0, max = 1000))]
    pub failed: u32,
}

impl Default for HistoryLimit {
    fn default() -> Self {
        Self {
            successful: default_successful(),
            failed: default_failed(),
        }
    }
}

fn default_successful() -> u32 {
    3
}

fn default_failed() -> u32 {
    1
}

/// Observed state of a Schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When a BackupJob was last created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When a BackupJob of this schedule last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the next BackupJob is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The scheduled time of the latest run skipped because every window was closed
    /// (`outsideWindow: Skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skipped_time: Option<Time>,
    /// BackupJobs of this schedule that are not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<LocalObjectRef>,
    /// Outcome of the last prune by `retention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_prune: Option<PruneResult>,
    /// Conditions: `Ready` (the spec is valid and the schedule is running).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Verifications of `spec.verification`.
    #[serde(flatten)]
    pub verification_runs: VerificationRuns,
}

/// What a Schedule's or a StorageGroup's status shows of the Verifications it creates on the
/// cron schedule of its `spec.verification`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRuns {
    /// The newest Verification of `spec.verification` and its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<VerificationRecord>,
    /// When the last Verification of `spec.verification` was created for a scheduled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification_schedule_time: Option<Time>,
    /// When the next Verification of `spec.verification` is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_verification_time: Option<Time>,
    /// When the latest Verification of `spec.verification` succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_verification_time: Option<Time>,
}

/// A Verification created on a cron schedule (of a Schedule, or a StorageGroup's repository
/// verification) and its result.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRecord {
    /// Name of the Verification.
    pub name: String,
    /// When it finished; when it was created while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Its phase: Pending, Running, Succeeded or Failed.
    pub result: crate::common::Phase,
    /// The snapshot it verified, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Seconds its restore took (the measured recovery time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_duration_seconds: Option<f64>,
}

/// Outcome of a prune run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PruneResult {
    /// When the prune finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Snapshots kept.
    pub snapshots_kept: u32,
    /// Snapshots removed.
    pub snapshots_removed: u32,
    /// Whether the prune succeeded.
    pub succeeded: bool,
    /// Error message when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
