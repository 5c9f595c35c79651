//! A StorageGroup's check run: the agent's `check` report, and the `Ready` condition and
//! per-target status that follow from it for each strategy.

use hort_crds::common::SecretKeyRef;
use hort_crds::storage_group::{StorageGroupSpec, Strategy, TargetStatus};
use hort_protocol::report::{self, ReportError};
use hort_protocol::units::Bytes;
use hort_protocol::{CheckReport, KeyRotationReport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{Observation, Status};
use crate::storage_group::{KEY_ROTATED, READY};

/// Why a check pod's termination message was not used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckReportError {
    /// Not a check report of this protocol version.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The report does not cover every target.
    #[error("the agent reported {reported} targets but spec.targets has {expected}")]
    Targets {
        /// Targets in the report.
        reported: usize,
        /// Targets in the spec.
        expected: usize,
    },
}

/// Parses a check pod's termination message, checking it covers every target.
pub fn parse_report(message: &str, spec: &StorageGroupSpec) -> Result<CheckReport, CheckReportError> {
    let report: CheckReport = report::decode(message)?;
    if report.targets.len() != spec.targets.len() {
        return Err(CheckReportError::Targets {
            reported: report.targets.len(),
            expected: spec.targets.len(),
        });
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
            missing_files: found.missing_files,
            object_lock_enabled: found.object_lock_enabled,
            last_check_time: Some(at.clone()),
            message: found.error.clone(),
        })
        .collect()
}

/// The `Ready` condition after a check: backups can run while at least one target is
/// healthy (`Mirror`: `minHealthyTargets`), since the agent writes new files to the healthy
/// ones; a degraded group says what the unhealthy targets mean for each strategy.
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
    let needed = match spec.strategy {
        Strategy::Mirror => spec.min_healthy_targets.unwrap_or(1) as usize,
        Strategy::Spread | Strategy::Failover => 1,
    };
    let behind: Vec<String> = statuses
        .iter()
        .filter(|t| healthy(t) && t.missing_files.is_some_and(|n| n > 0))
        .map(|t| {
            format!(
                "target {:?} lacks {} files the others hold (the next check copies more)",
                t.name,
                t.missing_files.unwrap_or_default()
            )
        })
        .collect();
    let (status, reason, message) = if broken.is_empty() && behind.is_empty() {
        (
            Status::True,
            "TargetsHealthy",
            format!("all {} targets are reachable and writable", statuses.len()),
        )
    } else if broken.is_empty() {
        (Status::True, "TargetsBehind", behind.join("; "))
    } else if healthy_count >= needed {
        let meaning = match spec.strategy {
            Strategy::Spread => {
                "new packs go to the healthy targets; restores that need packs on the others fail until they are back"
            }
            Strategy::Mirror => {
                "backups are written to the healthy targets; the others are behind until a check copies what they lack"
            }
            Strategy::Failover => {
                "new packs go to the first healthy target; restores that need packs on the others fail until they are back"
            }
        };
        (
            Status::True,
            "Degraded",
            format!(
                "{healthy_count} of {} targets healthy; {meaning}: {}",
                statuses.len(),
                [broken, behind].concat().join("; ")
            ),
        )
    } else {
        (
            Status::False,
            "TargetsUnhealthy",
            format!(
                "{healthy_count} of {} targets healthy, {needed} needed{}: {}",
                statuses.len(),
                if needed > 1 { " (spec.minHealthyTargets)" } else { "" },
                broken.join("; ")
            ),
        )
    };
    Observation {
        type_: READY,
        status,
        reason,
        message,
    }
}

/// The `KeyRotated` condition of a group rotating from `previous` to `key`, from this
/// generation's check's rotation report (`None`: that check has not reported yet).
pub fn key_rotated(key: &SecretKeyRef, previous: &SecretKeyRef, report: Option<&KeyRotationReport>) -> Observation {
    let secret = |r: &SecretKeyRef| format!("Secret {:?} (key {:?})", r.name, r.key);
    let short = |id: &str| id.chars().take(12).collect::<String>();
    let (status, reason, message) = match report {
        None => (
            Status::Unknown,
            "Rotating",
            format!(
                "waiting for this generation's check to make the password of {} the only one that opens the repository",
                secret(key)
            ),
        ),
        Some(r) if r.done => {
            let added = r.added.as_deref().map(|id| format!("; key file {} added", short(id)));
            let removed = r.removed.as_deref().map(|id| {
                format!(
                    "; the key file of {}'s password ({}) removed",
                    secret(previous),
                    short(id)
                )
            });
            (
                Status::True,
                "Rotated",
                format!(
                    "only the password of {} opens the repository{}{}; spec.encryption.previousKeySecretRef can be removed (keep the new password outside the cluster too)",
                    secret(key),
                    added.unwrap_or_default(),
                    removed.unwrap_or_default()
                ),
            )
        }
        Some(r) => (
            Status::False,
            "RotationFailed",
            format!(
                "the rotation from {} to {} did not finish: {}{}; each check tries again",
                secret(previous),
                secret(key),
                r.error.as_deref().unwrap_or("the agent gave no reason"),
                r.added
                    .as_deref()
                    .map(|id| format!(" (key file {} for the new password was added)", short(id)))
                    .unwrap_or_default()
            ),
        ),
    };
    Observation {
        type_: KEY_ROTATED,
        status,
        reason,
        message,
    }
}

/// Total bytes used on all targets, human readable, when any target reported it.
pub fn used_size(statuses: &[TargetStatus]) -> Option<String> {
    let reported: Vec<u64> = statuses.iter().filter_map(|t| t.bytes_used).collect();
    (!reported.is_empty()).then(|| Bytes(reported.iter().sum()).to_string())
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
        let b = hort_protocol::TargetReport {
            reachable: b_ok,
            writable: b_ok,
            error: (!b_ok).then(|| "connection refused".into()),
            ..Default::default()
        };
        report::encode(&CheckReport {
            repository_id: Some("r1".into()),
            created: false,
            targets: vec![
                hort_protocol::TargetReport {
                    reachable: true,
                    writable: true,
                    bytes_used: Some(1536),
                    ..Default::default()
                },
                b,
            ],
            error: None,
            key_rotation: None,
            snapshots: None,
        })
    }

    fn now() -> Time {
        Time("2026-11-24T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn every_strategy_writes_on_with_one_healthy_target_unless_mirror_needs_more() {
        let strict = StorageGroupSpec {
            min_healthy_targets: Some(2),
            ..spec("Mirror")
        };
        for (spec, ready) in [
            (spec("Spread"), Status::True),
            (spec("Mirror"), Status::True),
            (spec("Failover"), Status::True),
            (strict, Status::False),
        ] {
            let strategy = spec.strategy;
            let parsed = parse_report(&report(false), &spec).unwrap();
            let statuses = target_statuses(&spec, &parsed, &now());
            let observation = readiness(&spec, &statuses);
            assert_eq!(observation.status, ready, "{strategy:?}");
            if ready == Status::False {
                assert!(
                    observation.message.contains("2 needed (spec.minHealthyTargets)"),
                    "{observation:?}"
                );
            } else {
                assert_eq!(observation.reason, "Degraded");
            }
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
    fn a_mirror_target_that_is_still_behind_after_the_check_is_named() {
        let spec = spec("Mirror");
        let mut parsed = parse_report(&report(true), &spec).unwrap();
        parsed.targets[0].missing_files = Some(0);
        parsed.targets[1].missing_files = Some(5);
        let statuses = target_statuses(&spec, &parsed, &now());
        assert_eq!(statuses[1].missing_files, Some(5));
        let observation = readiness(&spec, &statuses);
        assert_eq!(
            (observation.status, observation.reason),
            (Status::True, "TargetsBehind")
        );
        assert!(
            observation.message.contains("target \"b\" lacks 5 files"),
            "{observation:?}"
        );
        parsed.targets[1].missing_files = Some(0);
        let statuses = target_statuses(&spec, &parsed, &now());
        assert_eq!(readiness(&spec, &statuses).reason, "TargetsHealthy");
    }

    #[test]
    fn a_target_whose_bucket_lacks_the_object_lock_it_asks_for_is_named() {
        let spec = spec("Mirror");
        let mut parsed = parse_report(&report(true), &spec).unwrap();
        parsed.targets[0].object_lock_enabled = Some(true);
        parsed.targets[1] = hort_protocol::TargetReport {
            reachable: true,
            writable: false,
            object_lock_enabled: Some(false),
            error: Some("bucket plain: the target asks for Object Lock (compliance:7) but the bucket does not have Object Lock enabled".into()),
            ..Default::default()
        };
        let statuses = target_statuses(&spec, &parsed, &now());
        assert_eq!(
            (statuses[0].object_lock_enabled, statuses[1].object_lock_enabled),
            (Some(true), Some(false))
        );
        let observation = readiness(&spec, &statuses);
        assert_eq!(observation.reason, "Degraded");
        assert!(
            observation
                .message
                .contains("target \"b\": bucket plain: the target asks for Object Lock"),
            "{observation:?}"
        );
    }

    #[test]
    fn malformed_or_short_reports_are_errors() {
        let spec = spec("Mirror");
        let err = parse_report("panic: oops", &spec).unwrap_err().to_string();
        assert!(err.contains("not valid"), "{err}");
        let short = report::encode(&CheckReport {
            repository_id: Some("r".into()),
            created: false,
            targets: vec![hort_protocol::TargetReport::default()],
            error: None,
            key_rotation: None,
            snapshots: None,
        });
        let err = parse_report(&short, &spec).unwrap_err().to_string();
        assert!(err.contains("spec.targets has 2"), "{err}");
    }

    #[test]
    fn key_rotated_says_what_the_check_did_and_what_to_do_next() {
        let key = SecretKeyRef {
            name: "repo-key-2".into(),
            key: "password".into(),
        };
        let previous = SecretKeyRef {
            name: "repo-key".into(),
            key: "password".into(),
        };
        let waiting = key_rotated(&key, &previous, None);
        assert_eq!((waiting.status, waiting.reason), (Status::Unknown, "Rotating"));
        let rotated = KeyRotationReport {
            added: Some("aaaabbbbccccdddd".into()),
            removed: Some("1111222233334444".into()),
            done: true,
            error: None,
        };
        let done = key_rotated(&key, &previous, Some(&rotated));
        assert_eq!((done.status, done.reason), (Status::True, "Rotated"));
        assert_eq!(
            done.message,
            "only the password of Secret \"repo-key-2\" (key \"password\") opens the repository; key file aaaabbbbcccc added; \
             the key file of Secret \"repo-key\" (key \"password\")'s password (111122223333) removed; \
             spec.encryption.previousKeySecretRef can be removed (keep the new password outside the cluster too)"
        );
        let partial = KeyRotationReport {
            added: Some("aaaabbbbccccdddd".into()),
            error: Some("target b: connection refused".into()),
            ..KeyRotationReport::default()
        };
        let failed = key_rotated(&key, &previous, Some(&partial));
        assert_eq!((failed.status, failed.reason), (Status::False, "RotationFailed"));
        assert!(
            failed
                .message
                .contains("connection refused (key file aaaabbbbcccc for the new password was added)"),
            "{failed:?}"
        );
    }
}
