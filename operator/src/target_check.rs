//! Target checks of a StorageGroup: the result an agent's `check` reports, and the `Ready`
//! condition and per-target status that follow from it for each strategy.

use hort_crds::storage_group::{StorageGroupSpec, Strategy, TargetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;

use crate::conditions::{Observation, Status};
use crate::storage_group::READY;

/// What `hort-agent check --init` writes as its termination message: one entry per location
/// of `HORT_REPOSITORY`, in the same order as the group's targets. An agent that could probe
/// the targets but not open or create the repository writes it too (without a repository id)
/// and exits non-zero.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Id of the repository the group holds; absent when it could not be opened.
    #[serde(default)]
    pub repository_id: Option<String>,
    /// Whether this check created the repository.
    #[serde(default)]
    pub created: bool,
    /// Per-target results, in target order.
    pub targets: Vec<TargetReport>,
    /// Why the repository could not be opened or created, when it could not.
    #[serde(default)]
    pub error: Option<String>,
}

/// The agent's findings for one target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    /// The target answered.
    pub reachable: bool,
    /// A probe object could be written, read back and deleted.
    pub writable: bool,
    /// Bytes of repository data on the target.
    #[serde(default)]
    pub bytes_used: Option<u64>,
    /// Free bytes, where the target can tell.
    #[serde(default)]
    pub bytes_free: Option<u64>,
    /// What failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// Parses a check pod's termination message, checking it covers every target.
pub fn parse_report(message: &str, spec: &StorageGroupSpec) -> Result<CheckReport, String> {
    let report: CheckReport =
        serde_json::from_str(message.trim()).map_err(|e| format!("the agent's check report is not valid ({e})"))?;
    if report.targets.len() != spec.targets.len() {
        return Err(format!(
            "the agent reported {} targets but spec.targets has {}",
            report.targets.len(),
            spec.targets.len()
        ));
    }
    Ok(report)
}

/// Per-target status from a report, checked at `at`.
pub fn target_statuses(spec: &StorageGroupSpec, report: &CheckReport, at: &Time) -> Vec<TargetStatus> {
    spec.targets
        .iter()
        .zip(&report.targets)
        .map(|(target, found)| TargetStatus {
            name: target.name.clone(),
            reachable: found.reachable,
            writable: found.writable,
            bytes_used: found.bytes_used,
            bytes_free: found.bytes_free,
            last_check_time: Some(at.clone()),
            message: found.error.clone(),
        })
        .collect()
}

/// The `Ready` condition after a check: `Spread` needs every target (each holds part of the
/// data), `Mirror` and `Failover` need one, and report the others as degraded.
pub fn readiness(spec: &StorageGroupSpec, statuses: &[TargetStatus]) -> Observation {
    let healthy = |t: &&TargetStatus| t.reachable && t.writable;
    let broken: Vec<String> = statuses
        .iter()
        .filter(|t| !healthy(t))
        .map(|t| match &t.message {
            Some(m) => format!("target {:?}: {m}", t.name),
            None => format!("target {:?} is not writable", t.name),
        })
        .collect();
    let healthy_count = statuses.len() - broken.len();
    let needs_all = spec.strategy == Strategy::Spread;
    let ready = if needs_all {
        broken.is_empty()
    } else {
        healthy_count > 0
    };
    let (status, reason, message) = match (ready, broken.is_empty()) {
        (true, true) => (
            Status::True,
            "TargetsHealthy",
            format!("all {} targets are reachable and writable", statuses.len()),
        ),
        (true, false) => (
            Status::True,
            "Degraded",
            format!(
                "{healthy_count} of {} targets healthy; {:?} keeps working: {}",
                statuses.len(),
                spec.strategy,
                broken.join("; ")
            ),
        ),
        (false, _) => (
            Status::False,
            "TargetsUnhealthy",
            format!(
                "{}{}",
                if needs_all {
                    "Spread needs every target: "
                } else {
                    "no target is healthy: "
                },
                broken.join("; ")
            ),
        ),
    };
    Observation {
        type_: READY,
        status,
        reason,
        message,
    }
}

/// Total bytes used on all targets, human readable, when any target reported it.
pub fn used_size(statuses: &[TargetStatus]) -> Option<String> {
    let reported: Vec<u64> = statuses.iter().filter_map(|t| t.bytes_used).collect();
    (!reported.is_empty()).then(|| human_bytes(reported.iter().sum()))
}

/// `bytes` in binary units with one decimal, e.g. `1.5 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(strategy: &str) -> StorageGroupSpec {
        serde_yaml::from_str(&format!(
            "strategy: {strategy}\ntargets: [{{name: a, pvc: {{claimName: a}}}}, {{name: b, pvc: {{claimName: b}}}}]\n\
             encryption: {{keySecretRef: {{name: k}}}}"
        ))
        .unwrap()
    }

    fn report(b_ok: bool) -> String {
        format!(
            r#"{{"repositoryId": "r1", "targets": [
                {{"reachable": true, "writable": true, "bytesUsed": 1536}},
                {{"reachable": {b_ok}, "writable": {b_ok}, "error": {}}}]}}"#,
            if b_ok {
                "null".to_string()
            } else {
                "\"connection refused\"".to_string()
            }
        )
    }

    fn now() -> Time {
        Time("2026-11-24T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn spread_needs_every_target_mirror_one() {
        for (strategy, ready) in [
            ("Spread", Status::False),
            ("Mirror", Status::True),
            ("Failover", Status::True),
        ] {
            let spec = spec(strategy);
            let parsed = parse_report(&report(false), &spec).unwrap();
            let statuses = target_statuses(&spec, &parsed, &now());
            let observation = readiness(&spec, &statuses);
            assert_eq!(observation.status, ready, "{strategy}");
            assert!(
                observation.message.contains("target \"b\": connection refused"),
                "{observation:?}"
            );
        }
        let spec = spec("Spread");
        let parsed = parse_report(&report(true), &spec).unwrap();
        let statuses = target_statuses(&spec, &parsed, &now());
        assert_eq!(readiness(&spec, &statuses).reason, "TargetsHealthy");
        assert_eq!(used_size(&statuses).as_deref(), Some("1.5 KiB"));
        assert_eq!(statuses[1].name, "b");
    }

    #[test]
    fn malformed_or_short_reports_are_errors() {
        let spec = spec("Mirror");
        assert!(parse_report("panic: oops", &spec).unwrap_err().contains("not valid"));
        let short = r#"{"repositoryId": "r", "targets": [{"reachable": true, "writable": true}]}"#;
        assert!(parse_report(short, &spec).unwrap_err().contains("spec.targets has 2"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
