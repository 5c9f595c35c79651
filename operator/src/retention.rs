//! Retention of a Schedule's snapshots: the arguments of the agent's prune pod and the report
//! it leaves in its termination message.
//!
//! Contract with `hort-agent` (see `docs/agent-protocol.md`): `hort-agent forget --prune --tag T...`
//! with `--keep-last N`, `--keep-hourly N`, `--keep-daily N`, `--keep-weekly N`,
//! `--keep-monthly N`, `--keep-yearly N`, `--keep-within DURATION`; it considers only the
//! snapshots carrying every tag, and writes a [`PruneReport`] as JSON on success.

use hort_crds::schedule::Retention;
use serde::Deserialize;

/// What `hort-agent forget --prune` reports on success.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// Snapshots kept by the rules.
    pub snapshots_kept: u32,
    /// Snapshots removed.
    pub snapshots_removed: u32,
}

impl PruneReport {
    /// Parses an agent's termination message.
    pub fn parse(message: &str) -> Result<Self, String> {
        serde_json::from_str(message.trim()).map_err(|e| format!("the agent's prune report is not valid ({e})"))
    }
}

/// The arguments of `hort-agent` that apply `retention` to the snapshots of schedule `name`
/// in `namespace` (and to no others).
pub fn agent_args(retention: &Retention, namespace: &str, name: &str) -> Vec<String> {
    let mut args = vec![
        "forget".to_string(),
        "--prune".into(),
        "--tag".into(),
        format!("hort.dev/namespace={namespace}"),
        "--tag".into(),
        format!("hort.dev/schedule={name}"),
    ];
    let counts = [
        ("--keep-last", retention.keep_last),
        ("--keep-hourly", retention.keep_hourly),
        ("--keep-daily", retention.keep_daily),
        ("--keep-weekly", retention.keep_weekly),
        ("--keep-monthly", retention.keep_monthly),
        ("--keep-yearly", retention.keep_yearly),
    ];
    for (flag, count) in counts {
        if let Some(count) = count {
            args.extend([flag.to_string(), count.to_string()]);
        }
    }
    if let Some(within) = &retention.keep_within {
        args.extend(["--keep-within".to_string(), within.clone()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_schedules_snapshots_and_only_the_rules_given() {
        let retention: Retention = serde_yaml::from_str("{keepDaily: 7, keepMonthly: 6, keepWithin: 2d}").unwrap();
        assert_eq!(
            agent_args(&retention, "prod", "db-nightly"),
            [
                "forget",
                "--prune",
                "--tag",
                "hort.dev/namespace=prod",
                "--tag",
                "hort.dev/schedule=db-nightly",
                "--keep-daily",
                "7",
                "--keep-monthly",
                "6",
                "--keep-within",
                "2d"
            ]
        );
        let report = PruneReport::parse(r#"{"snapshotsKept": 13, "snapshotsRemoved": 2}"#).unwrap();
        assert_eq!(report.snapshots_removed, 2);
    }
}
