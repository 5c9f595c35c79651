//! A Schedule's retention run: the `forget --prune` command that applies the schedule's rules
//! to its own snapshots (and to no others).

use hort_crds::schedule::Retention;
use hort_protocol::period::PeriodError;
use hort_protocol::{AgentCommand, Keep, Period};

/// A `keepWithin` that is not a period (stored before the API server checked it as it does
/// now): the retention run forgets nothing, and the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.retention.keepWithin: {0}; no snapshot was forgotten")]
pub struct InvalidKeepWithin(#[from] pub PeriodError);

/// The command that applies `retention` to the snapshots of schedule `name` in `namespace`:
/// only snapshots carrying both tags count, and they form one series. Fails on a `keepWithin`
/// that is not a period.
pub fn command(retention: &Retention, namespace: &str, name: &str) -> Result<AgentCommand, InvalidKeepWithin> {
    let within = match &retention.keep_within {
        Some(text) => Some(text.parse::<Period>()?),
        None => None,
    };
    Ok(AgentCommand::Forget {
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
            within,
        },
        prune: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_schedules_snapshots_and_only_the_rules_given() {
        let retention: Retention = serde_yaml::from_str("{keepDaily: 7, keepMonthly: 6, keepWithin: 1y6mo}").unwrap();
        assert_eq!(
            command(&retention, "prod", "db-nightly"),
            Ok(AgentCommand::Forget {
                tags: vec!["hort.dev/namespace=prod".into(), "hort.dev/schedule=db-nightly".into()],
                keep: Keep {
                    daily: Some(7),
                    monthly: Some(6),
                    within: Some(Period {
                        years: 1,
                        months: 6,
                        ..Period::default()
                    }),
                    ..Keep::default()
                },
                prune: true,
            })
        );
    }

    #[test]
    fn a_keep_within_that_is_not_a_period_forgets_nothing() {
        // Stored before the API server refused `m`: six minutes or six months?
        let retention: Retention = serde_yaml::from_str("{keepWithin: 6m}").unwrap();
        let err = command(&retention, "prod", "db-nightly").unwrap_err().to_string();
        assert!(
            err.starts_with("spec.retention.keepWithin: `6m` is not a period")
                && err.contains("`m` is ambiguous")
                && err.ends_with("; no snapshot was forgotten"),
            "{err}"
        );
    }
}
