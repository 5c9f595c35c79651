//! `kubectl hort status`: one screen of a namespace's storage groups, schedules, running
//! jobs and restores, and recent failures, from the objects' status fields. The view is
//! built and rendered by pure functions; [`fetch`] lists the objects.

use hort_crds::common::{Phase, Progress};
use hort_crds::{BackupJob, RestoreRequest, Schedule, StorageGroup};
use hort_protocol::units::Bytes;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Api, Client, ResourceExt, api::ListParams};
use serde::Serialize;

use crate::error::{PluginError, Result};
use crate::output::{relative, table};

/// Label the operator puts on the BackupJobs of a Schedule (and the plugin on manual ones).
pub const SCHEDULE_LABEL: &str = "hort.dev/schedule";

/// The Hort objects of one namespace.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// StorageGroups.
    pub groups: Vec<StorageGroup>,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// BackupJobs.
    pub jobs: Vec<BackupJob>,
    /// RestoreRequests.
    pub restores: Vec<RestoreRequest>,
}

/// What `status` shows (also its `-o json|yaml` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The namespace shown.
    pub namespace: String,
    /// Storage groups.
    pub groups: Vec<GroupRow>,
    /// Schedules.
    pub schedules: Vec<ScheduleRow>,
    /// BackupJobs and RestoreRequests that are Pending or Running.
    pub active: Vec<RunRow>,
    /// BackupJobs and RestoreRequests that failed, newest first.
    pub failures: Vec<RunRow>,
}

/// One storage group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRow {
    /// Its name.
    pub name: String,
    /// `Ready`, or the reason of its Ready condition when not ready.
    pub state: String,
    /// `healthy/all` targets (reachable and writable in the last check).
    pub targets: String,
    /// The repository id recorded.
    pub repository_id: Option<String>,
    /// Bytes stored, human readable.
    pub used: Option<String>,
    /// Why it is not ready (the condition's message, or a target's).
    pub message: Option<String>,
}

/// One schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRow {
    /// Its name.
    pub name: String,
    /// Its cron expression, and `(suspended)`.
    pub schedule: String,
    /// When it last created a BackupJob.
    pub last_run: Option<Timestamp>,
    /// When it runs next.
    pub next_run: Option<Timestamp>,
    /// Phase of its newest finished BackupJob, or `Succeeded` from `lastSuccessfulTime`.
    pub last_result: Option<String>,
    /// Phase of its newest Verification (`spec.verification`), with the Verification's name
    /// when it failed, and the measured restore time when it succeeded.
    pub last_verification: Option<String>,
    /// When that Verification finished (or was created, while it runs).
    pub last_verified: Option<Timestamp>,
}

/// One BackupJob or RestoreRequest.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRow {
    /// `BackupJob` or `RestoreRequest`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its storage group.
    pub group: String,
    /// Its phase.
    pub phase: String,
    /// Progress (`42%`, or bytes done when the total is unknown).
    pub progress: Option<String>,
    /// The reason of its `Failed` condition (failures).
    pub reason: Option<String>,
    /// Its status message.
    pub message: Option<String>,
    /// When it started, or was created.
    pub time: Option<Timestamp>,
}

fn condition<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == kind)
}

fn progress_text(progress: Option<&Progress>) -> Option<String> {
    progress.map(|p| match p.percent {
        Some(percent) => format!("{percent}%"),
        None => Bytes(p.bytes_done).to_string(),
    })
}

fn time(t: Option<&Time>) -> Option<Timestamp> {
    t.map(|t| t.0)
}

fn group_row(group: &StorageGroup) -> GroupRow {
    let status = group.status.clone().unwrap_or_default();
    let ready = condition(&status.conditions, "Ready");
    let state = match ready {
        Some(c) if c.status == "True" => "Ready".to_string(),
        Some(c) => c.reason.clone(),
        None => "Unknown".to_string(),
    };
    let healthy = status.targets.iter().filter(|t| t.reachable && t.writable).count();
    let target_message = status
        .targets
        .iter()
        .find_map(|t| t.message.as_ref().map(|m| format!("target {}: {m}", t.name)));
    GroupRow {
        name: group.name_any(),
        state,
        targets: format!("{healthy}/{}", group.spec.targets.len()),
        repository_id: status.repository_id.clone(),
        used: status.used_size.clone(),
        message: ready
            .filter(|c| c.status != "True")
            .map(|c| c.message.clone())
            .or(target_message),
    }
}

fn schedule_row(schedule: &Schedule, jobs: &[BackupJob]) -> ScheduleRow {
    let name = schedule.name_any();
    let status = schedule.status.clone().unwrap_or_default();
    let newest_finished = jobs
        .iter()
        .filter(|j| j.labels().get(SCHEDULE_LABEL) == Some(&name))
        .filter(|j| j.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .max_by_key(|j| {
            (
                time(j.status.as_ref().and_then(|s| s.completion_time.as_ref())),
                j.creation_timestamp().map(|t| t.0),
            )
        });
    let last_result = match newest_finished {
        Some(job) => {
            let status = job.status.as_ref().expect("filtered on status");
            Some(match status.phase {
                Phase::Failed => format!("Failed ({})", job.name_any()),
                phase => format!("{phase:?}"),
            })
        }
        None => status.last_successful_time.as_ref().map(|_| "Succeeded".to_string()),
    };
    let mut cron = schedule.spec.schedule.clone();
    if schedule.spec.suspend {
        cron.push_str(" (suspended)");
    }
    ScheduleRow {
        name,
        schedule: cron,
        last_run: time(status.last_schedule_time.as_ref()),
        next_run: time(status.next_schedule_time.as_ref()),
        last_result,
        last_verification: status
            .verification_runs
            .last_verification
            .as_ref()
            .map(|v| match v.result {
                Phase::Failed => format!("Failed ({})", v.name),
                Phase::Succeeded => match v.restore_duration_seconds {
                    Some(rto) => format!("Succeeded (restore {rto:.1} s)"),
                    None => "Succeeded".into(),
                },
                phase => format!("{phase:?}"),
            }),
        last_verified: time(
            status
                .verification_runs
                .last_verification
                .as_ref()
                .and_then(|v| v.time.as_ref()),
        ),
    }
}

fn job_row(job: &BackupJob) -> RunRow {
    let status = job.status.clone().unwrap_or_default();
    RunRow {
        kind: "BackupJob".into(),
        name: job.name_any(),
        group: job.spec.storage_group_ref.name.clone(),
        phase: format!("{:?}", status.phase),
        progress: progress_text(status.progress.as_ref()),
        reason: condition(&status.conditions, "Failed")
            .filter(|c| c.status == "True")
            .map(|c| c.reason.clone()),
        message: status.message.clone(),
        time: time(status.start_time.as_ref()).or(job.creation_timestamp().map(|t| t.0)),
    }
}

fn restore_row(restore: &RestoreRequest) -> RunRow {
    let status = restore.status.clone().unwrap_or_default();
    RunRow {
        kind: "RestoreRequest".into(),
        name: restore.name_any(),
        group: restore.spec.storage_group_ref.name.clone(),
        phase: format!("{:?}", status.phase),
        progress: progress_text(status.progress.as_ref()),
        reason: condition(&status.conditions, "Failed")
            .filter(|c| c.status == "True")
            .map(|c| c.reason.clone()),
        message: status.message.clone(),
        time: time(status.start_time.as_ref()).or(restore.creation_timestamp().map(|t| t.0)),
    }
}

/// How many failures `status` shows at most.
pub const FAILURES_SHOWN: usize = 10;

/// The view of `objects` in `namespace`.
pub fn view(namespace: &str, objects: &Objects) -> StatusView {
    let mut groups: Vec<GroupRow> = objects.groups.iter().map(group_row).collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let mut schedules: Vec<ScheduleRow> = objects
        .schedules
        .iter()
        .map(|s| schedule_row(s, &objects.jobs))
        .collect();
    schedules.sort_by(|a, b| a.name.cmp(&b.name));
    let runs: Vec<RunRow> = objects
        .jobs
        .iter()
        .map(job_row)
        .chain(objects.restores.iter().map(restore_row))
        .collect();
    let newest_first = |rows: &mut Vec<RunRow>| rows.sort_by(|a, b| b.time.cmp(&a.time).then(a.name.cmp(&b.name)));
    let mut active: Vec<RunRow> = runs
        .iter()
        .filter(|r| r.phase == "Pending" || r.phase == "Running")
        .cloned()
        .collect();
    newest_first(&mut active);
    let mut failures: Vec<RunRow> = runs.into_iter().filter(|r| r.phase == "Failed").collect();
    newest_first(&mut failures);
    failures.truncate(FAILURES_SHOWN);
    StatusView {
        namespace: namespace.to_string(),
        groups,
        schedules,
        active,
        failures,
    }
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// The view as text: one section per kind, times relative to `now`.
pub fn render(view: &StatusView, now: Timestamp) -> String {
    let when = |t: Option<Timestamp>| or_dash(t.map(|t| relative(t, now)));
    let groups = view.groups.iter().map(|g| {
        vec![
            g.name.clone(),
            g.state.clone(),
            g.targets.clone(),
            or_dash(g.used.clone()),
            or_dash(g.repository_id.as_ref().map(|id| id.chars().take(12).collect())),
            g.message.clone().unwrap_or_default(),
        ]
    });
    let schedules = view.schedules.iter().map(|s| {
        vec![
            s.name.clone(),
            s.schedule.clone(),
            when(s.last_run),
            when(s.next_run),
            or_dash(s.last_result.clone()),
            match (&s.last_verification, s.last_verified) {
                (Some(result), Some(at)) => format!("{result} {}", when(Some(at))),
                (result, _) => or_dash(result.clone()),
            },
        ]
    });
    let active = view.active.iter().map(|r| {
        vec![
            format!("{}/{}", r.kind, r.name),
            r.group.clone(),
            r.phase.clone(),
            or_dash(r.progress.clone()),
            when(r.time),
            r.message.clone().unwrap_or_default(),
        ]
    });
    let failures = view.failures.iter().map(|r| {
        vec![
            format!("{}/{}", r.kind, r.name),
            r.group.clone(),
            or_dash(r.reason.clone()),
            when(r.time),
            r.message.clone().unwrap_or_default(),
        ]
    });
    [
        format!("Namespace {}\n", view.namespace),
        section(
            "Storage groups",
            "none (create one: see examples/storagegroup-s3.yaml)",
            &["NAME", "STATE", "TARGETS OK", "USED", "REPOSITORY", "MESSAGE"],
            groups,
        ),
        section(
            "Schedules",
            "none",
            &[
                "NAME",
                "SCHEDULE",
                "LAST RUN",
                "NEXT RUN",
                "LAST RESULT",
                "LAST VERIFICATION",
            ],
            schedules,
        ),
        section(
            "Running",
            "nothing",
            &["OBJECT", "GROUP", "PHASE", "PROGRESS", "STARTED", "MESSAGE"],
            active,
        ),
        section(
            "Failures",
            "none",
            &["OBJECT", "GROUP", "REASON", "STARTED", "MESSAGE"],
            failures,
        ),
    ]
    .join("\n")
}

/// One section of the screen: `TITLE: EMPTY` without rows, else the title and a table.
fn section(title: &str, empty: &str, headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.is_empty() {
        format!("{title}: {empty}\n")
    } else {
        format!("{title}\n{}", table(headers, &rows))
    }
}

/// Lists the Hort objects of `namespace`.
pub async fn fetch(client: &Client, namespace: &str) -> Result<Objects> {
    let params = ListParams::default();
    let list = |what: &'static str| move |e| PluginError::api(format!("listing {what} in namespace {namespace}"), e);
    Ok(Objects {
        groups: Api::namespaced(client.clone(), namespace)
            .list(&params)
            .await
            .map_err(list("StorageGroups"))?
            .items,
        schedules: Api::namespaced(client.clone(), namespace)
            .list(&params)
            .await
            .map_err(list("Schedules"))?
            .items,
        jobs: Api::namespaced(client.clone(), namespace)
            .list(&params)
            .await
            .map_err(list("BackupJobs"))?
            .items,
        restores: Api::namespaced(client.clone(), namespace)
            .list(&params)
            .await
            .map_err(list("RestoreRequests"))?
            .items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// A namespace with a ready and a broken group, a schedule whose last job failed, a
    /// running backup and a failed restore.
    pub(crate) fn fixture() -> Objects {
        Objects {
            groups: vec![
                from_yaml(
                    "apiVersion: hort.dev/v1alpha1\nkind: StorageGroup\nmetadata: {name: s3, namespace: demo}\n\
                     spec: {targets: [{name: a, s3: {endpoint: 'http://s3:9000', bucket: bkt, credentialsSecretRef: {name: c}}}], encryption: {keySecretRef: {name: k}}}\n\
                     status: {repositoryId: 0123456789abcdef0123, usedSize: 1.5 GiB, targets: [{name: a, reachable: true, writable: true}],\n\
                       conditions: [{type: Ready, status: 'True', reason: Checked, message: ok, lastTransitionTime: '2026-11-30T10:00:00Z'}]}",
                ),
                from_yaml(
                    "apiVersion: hort.dev/v1alpha1\nkind: StorageGroup\nmetadata: {name: disk, namespace: demo}\n\
                     spec: {targets: [{name: d, pvc: {claimName: d}}, {name: e, pvc: {claimName: e}}], encryption: {keySecretRef: {name: k}}}\n\
                     status: {targets: [{name: d, reachable: true, writable: true}, {name: e, reachable: false, writable: false, message: claim e not found}],\n\
                       conditions: [{type: Ready, status: 'False', reason: TargetsUnhealthy, message: 1 of 2 targets healthy, lastTransitionTime: '2026-11-30T10:00:00Z'}]}",
                ),
            ],
            schedules: vec![from_yaml(
                "apiVersion: hort.dev/v1alpha1\nkind: Schedule\nmetadata: {name: nightly, namespace: demo}\n\
                 spec: {schedule: '30 2 * * *', jobTemplate: {spec: {storageGroupRef: {name: s3}, source: {volume: {claimName: data}}}}}\n\
                 status: {lastScheduleTime: '2026-11-30T02:30:00Z', nextScheduleTime: '2026-12-01T02:30:00Z', lastSuccessfulTime: '2026-11-29T02:31:00Z',\n\
                   lastVerification: {name: nightly-verify-1, time: '2026-11-30T06:00:00Z', result: Succeeded, restoreDurationSeconds: 4.25}}",
            )],
            jobs: vec![
                from_yaml(
                    "apiVersion: hort.dev/v1alpha1\nkind: BackupJob\nmetadata: {name: nightly-1, namespace: demo, labels: {hort.dev/schedule: nightly}, creationTimestamp: '2026-11-30T02:30:00Z'}\n\
                     spec: {storageGroupRef: {name: s3}, source: {volume: {claimName: data}}}\n\
                     status: {phase: Failed, message: 'pg_dump: connection refused', completionTime: '2026-11-30T02:35:00Z', startTime: '2026-11-30T02:30:05Z',\n\
                       conditions: [{type: Failed, status: 'True', reason: AgentFailed, message: x, lastTransitionTime: '2026-11-30T02:35:00Z'}]}",
                ),
                from_yaml(
                    "apiVersion: hort.dev/v1alpha1\nkind: BackupJob\nmetadata: {name: manual-1, namespace: demo, creationTimestamp: '2026-11-30T11:50:00Z'}\n\
                     spec: {storageGroupRef: {name: s3}, source: {volume: {claimName: data}}}\n\
                     status: {phase: Running, startTime: '2026-11-30T11:50:00Z', progress: {bytesDone: 100, bytesTotal: 400, percent: 25}, message: backing up}",
                ),
            ],
            restores: vec![from_yaml(
                "apiVersion: hort.dev/v1alpha1\nkind: RestoreRequest\nmetadata: {name: back, namespace: demo, creationTimestamp: '2026-11-30T09:00:00Z'}\n\
                 spec: {storageGroupRef: {name: s3}, source: {tags: [x]}, target: {volume: {claimName: data}}}\n\
                 status: {phase: Failed, message: 'no snapshot carries the tags x: list them with kubectl hort snapshots s3', startTime: '2026-11-30T09:00:01Z',\n\
                   conditions: [{type: Failed, status: 'True', reason: SnapshotNotFound, message: x, lastTransitionTime: '2026-11-30T09:00:02Z'}]}",
            )],
        }
    }

    #[test]
    fn the_view_shows_health_schedules_running_work_and_failures_with_reasons() {
        let view = view("demo", &fixture());
        assert_eq!(view.groups[0].name, "disk");
        assert_eq!(view.groups[0].state, "TargetsUnhealthy");
        assert_eq!(view.groups[0].targets, "1/2");
        assert_eq!(view.groups[0].message.as_deref(), Some("1 of 2 targets healthy"));
        assert_eq!(view.groups[1].state, "Ready");
        assert_eq!(view.schedules[0].last_result.as_deref(), Some("Failed (nightly-1)"));
        assert_eq!(view.active.len(), 1);
        assert_eq!(view.active[0].progress.as_deref(), Some("25%"));
        let failed: Vec<(&str, Option<&str>)> = view
            .failures
            .iter()
            .map(|f| (f.name.as_str(), f.reason.as_deref()))
            .collect();
        assert_eq!(
            failed,
            [("back", Some("SnapshotNotFound")), ("nightly-1", Some("AgentFailed"))],
            "newest first, with the reason"
        );
    }

    #[test]
    fn the_screen_has_one_section_per_kind() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let text = render(&view("demo", &fixture()), now);
        let expected = "\
Namespace demo

Storage groups
NAME   STATE              TARGETS OK   USED      REPOSITORY     MESSAGE
disk   TargetsUnhealthy   1/2          -         -              1 of 2 targets healthy
s3     Ready              1/1          1.5 GiB   0123456789ab

Schedules
NAME      SCHEDULE     LAST RUN   NEXT RUN   LAST RESULT          LAST VERIFICATION
nightly   30 2 * * *   9h ago     in 14h     Failed (nightly-1)   Succeeded (restore 4.2 s) 6h ago

Running
OBJECT               GROUP   PHASE     PROGRESS   STARTED   MESSAGE
BackupJob/manual-1   s3      Running   25%        10m ago   backing up

Failures
OBJECT                GROUP   REASON             STARTED   MESSAGE
RestoreRequest/back   s3      SnapshotNotFound   2h ago    no snapshot carries the tags x: list them with kubectl hort snapshots s3
BackupJob/nightly-1   s3      AgentFailed        9h ago    pg_dump: connection refused
";
        assert_eq!(text, expected);
        let empty = render(&view("empty", &Objects::default()), now);
        assert!(
            empty.contains("Storage groups: none") && empty.contains("Running: nothing"),
            "{empty}"
        );
    }
}
