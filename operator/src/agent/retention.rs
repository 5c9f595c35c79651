//! A Schedule's retention run: the `forget --prune` command that applies the schedule's rules
//! to its own snapshots (and to no others).

use hort_crds::schedule::Retention;
use hort_protocol::{AgentCommand, Keep};

/// The command that applies `retention` to the snapshots of schedule `name` in `namespace`:
/// only snapshots carrying both tags count, and they form one series.
pub fn command(retention: &Retention, namespace: &str, name: &str) -> AgentCommand {
    AgentCommand::Forget {
        tags: vec![
            format!("hort.dev/namespace={namespace}"),
            format!("hort.dev/schedule={name}"),
        ],
        keep: Keep {
            last: retention.keep_last,
            hourly: retention.keep_hourly,
            daily: retention.keep_daily,
            weekly: retention.keep_weekly,
            monthly: retention.keep_monthly,
            yearly: retention.keep_yearly,
            within: retention.keep_within.clone(),
        },
        prune: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_schedules_snapshots_and_only_the_rules_given() {
        let retention: Retention = serde_yaml::from_str("{keepDaily: 7, keepMonthly: 6, keepWithin: 2d}").unwrap();
        assert_eq!(
            command(&retention, "prod", "db-nightly"),
            AgentCommand::Forget {
                tags: vec!["hort.dev/namespace=prod".into(), "hort.dev/schedule=db-nightly".into()],
                keep: Keep {
                    daily: Some(7),
                    monthly: Some(6),
                    within: Some("2d".into()),
                    ..Keep::default()
                },
                prune: true,
            }
        );
    }
}
