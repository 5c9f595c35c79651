//! The pure part of scheduling: parsing a Schedule's cron expression in its time zone, and
//! deciding from the times and the active jobs whether a BackupJob is due now.

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use hort_crds::schedule::ConcurrencyPolicy;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A spec field that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?} is invalid: {reason}")]
pub struct InvalidSchedule {
    /// The field, e.g. `spec.schedule`.
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed cron expression and the time zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: TimeZone,
}

impl CronSchedule {
    /// Parses `spec.schedule` (five fields or a `@macro`) and `spec.timeZone` (IANA, UTC when
    /// unset).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, InvalidSchedule> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(schedule)
            .map_err(|e| InvalidSchedule {
                field: "spec.schedule",
                value: schedule.into(),
                reason: e.to_string(),
            })?;
        let zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|e| InvalidSchedule {
                field: "spec.timeZone",
                value: name.into(),
                reason: format!("not a known IANA time zone ({e}); write e.g. Europe/Berlin or UTC"),
            })?,
        };
        Ok(Self { cron, zone })
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest scheduled time in `(after, now]`, if any.
    pub fn latest_between(&self, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let zoned = now.to_zoned(self.zone.clone());
        let latest = self.cron.find_previous_occurrence(&zoned, true).ok()?.timestamp();
        (latest > after).then_some(latest)
    }
}

/// The facts a decision is made from.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The current time.
    pub now: Timestamp,
    /// When the last BackupJob was created for a scheduled time; the Schedule's creation
    /// time before the first.
    pub last_scheduled: Timestamp,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.startingDeadlineSeconds`.
    pub starting_deadline_seconds: Option<i64>,
    /// `spec.concurrencyPolicy`.
    pub concurrency_policy: ConcurrencyPolicy,
    /// Jobs of this schedule that have not finished.
    pub active_jobs: usize,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due.
    Idle,
    /// Create the job for `scheduled`; with `replace_active`, delete the active jobs first.
    Run {
        /// The scheduled time the job is for.
        scheduled: Timestamp,
        /// Whether the active jobs are to be deleted first (`Replace`).
        replace_active: bool,
    },
    /// The run for `scheduled` is due but another job is active and the policy is `Forbid`.
    WaitForActive {
        /// The scheduled time that waits.
        scheduled: Timestamp,
    },
    /// The run for `scheduled` was missed by more than `startingDeadlineSeconds`.
    MissedDeadline {
        /// The scheduled time that is skipped.
        scheduled: Timestamp,
    },
}

/// Decides what is due now. Of several missed times only the latest is considered, so an
/// outage never causes more than one run.
pub fn decide(cron: &CronSchedule, facts: &Facts) -> Decision {
    if facts.suspend {
        return Decision::Idle;
    }
    let Some(scheduled) = cron.latest_between(facts.last_scheduled, facts.now) else {
        return Decision::Idle;
    };
    if let Some(deadline) = facts.starting_deadline_seconds
        && facts.now.duration_since(scheduled) > SignedDuration::from_secs(deadline)
    {
        return Decision::MissedDeadline { scheduled };
    }
    match (facts.active_jobs, facts.concurrency_policy) {
        (0, _) | (_, ConcurrencyPolicy::Allow) => Decision::Run {
            scheduled,
            replace_active: false,
        },
        (_, ConcurrencyPolicy::Forbid) => Decision::WaitForActive { scheduled },
        (_, ConcurrencyPolicy::Replace) => Decision::Run {
            scheduled,
            replace_active: true,
        },
    }
}

/// The name of the BackupJob a schedule creates for `scheduled`: the schedule's name and the
/// scheduled time in minutes since the epoch, so that creating it twice is harmless.
pub fn job_name(schedule: &str, scheduled: Timestamp) -> String {
    format!("{schedule}-{}", scheduled.as_second().div_euclid(60))
}

impl FromStr for CronSchedule {
    type Err = InvalidSchedule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn facts(now: &str, last: &str) -> Facts {
        Facts {
            now: t(now),
            last_scheduled: t(last),
            suspend: false,
            starting_deadline_seconds: None,
            concurrency_policy: ConcurrencyPolicy::Forbid,
            active_jobs: 0,
        }
    }

    #[test]
    fn daily_schedule_in_a_time_zone_runs_at_local_time() {
        let cron = CronSchedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        // 02:30 in Berlin is 01:30 UTC in winter and 00:30 UTC in summer.
        assert_eq!(
            cron.next_after(t("2026-01-10T12:00:00Z")),
            Some(t("2026-01-11T01:30:00Z"))
        );
        assert_eq!(
            cron.next_after(t("2026-07-10T12:00:00Z")),
            Some(t("2026-07-11T00:30:00Z"))
        );
    }

    #[test]
    fn macros_and_utc_default() {
        let cron: CronSchedule = "@hourly".parse().unwrap();
        assert_eq!(
            cron.next_after(t("2026-03-01T10:15:00Z")),
            Some(t("2026-03-01T11:00:00Z"))
        );
    }

    #[test]
    fn invalid_expression_and_zone_name_the_field() {
        let e = CronSchedule::parse("61 * * * *", None).unwrap_err();
        assert_eq!(e.field, "spec.schedule");
        let e = CronSchedule::parse("* * * * * *", None).unwrap_err();
        assert_eq!(e.field, "spec.schedule", "seconds are not allowed");
        let e = CronSchedule::parse("@daily", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(e.field, "spec.timeZone");
        assert!(e.to_string().contains("Mars/Olympus"));
    }

    #[test]
    fn nothing_due_before_the_first_time() {
        let cron: CronSchedule = "0 * * * *".parse().unwrap();
        let f = facts("2026-03-01T10:59:59Z", "2026-03-01T10:00:00Z");
        assert_eq!(decide(&cron, &f), Decision::Idle);
    }

    #[test]
    fn an_outage_runs_the_latest_missed_time_once() {
        let cron: CronSchedule = "0 * * * *".parse().unwrap();
        // Last run at 03:00, operator down until 10:20: only the 10:00 run happens.
        let f = facts("2026-03-01T10:20:00Z", "2026-03-01T03:00:00Z");
        let scheduled = t("2026-03-01T10:00:00Z");
        assert_eq!(
            decide(&cron, &f),
            Decision::Run {
                scheduled,
                replace_active: false
            }
        );
        // Once it ran, nothing more is due until 11:00.
        let after = Facts {
            last_scheduled: scheduled,
            ..f
        };
        assert_eq!(decide(&cron, &after), Decision::Idle);
    }

    #[test]
    fn starting_deadline_skips_late_runs() {
        let cron: CronSchedule = "0 * * * *".parse().unwrap();
        let mut f = facts("2026-03-01T10:20:00Z", "2026-03-01T09:00:00Z");
        f.starting_deadline_seconds = Some(600);
        assert_eq!(
            decide(&cron, &f),
            Decision::MissedDeadline {
                scheduled: t("2026-03-01T10:00:00Z")
            }
        );
        f.starting_deadline_seconds = Some(1800);
        assert!(matches!(decide(&cron, &f), Decision::Run { .. }));
    }

    #[test]
    fn concurrency_policies() {
        let cron: CronSchedule = "*/5 * * * *".parse().unwrap();
        let mut f = facts("2026-03-01T10:05:30Z", "2026-03-01T10:00:00Z");
        f.active_jobs = 1;
        let scheduled = t("2026-03-01T10:05:00Z");
        assert_eq!(decide(&cron, &f), Decision::WaitForActive { scheduled });
        f.concurrency_policy = ConcurrencyPolicy::Allow;
        assert_eq!(
            decide(&cron, &f),
            Decision::Run {
                scheduled,
                replace_active: false
            }
        );
        f.concurrency_policy = ConcurrencyPolicy::Replace;
        assert_eq!(
            decide(&cron, &f),
            Decision::Run {
                scheduled,
                replace_active: true
            }
        );
        f.suspend = true;
        assert_eq!(decide(&cron, &f), Decision::Idle);
    }

    #[test]
    fn job_names_are_stable_per_scheduled_time() {
        assert_eq!(job_name("db", t("2026-03-01T10:05:00Z")), "db-29539325");
        assert_eq!(
            job_name("db", t("2026-03-01T10:05:00Z")),
            job_name("db", t("2026-03-01T10:05:59Z"))
        );
    }
}
