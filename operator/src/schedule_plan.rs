//! The pure part of scheduling: parsing a Schedule's cron expression in its time zone, and
//! deciding from the times and the active jobs whether a BackupJob is due now.

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use hort_crds::schedule::{ConcurrencyPolicy, OutsideWindow};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::schedule_window::Windows;

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

    /// The time zone the schedule is read in.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
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
    /// `spec.windows`; `None`: always open.
    pub windows: Option<Windows>,
    /// `spec.outsideWindow`.
    pub outside_window: OutsideWindow,
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
    /// The run for `scheduled` is due, but every window is closed: it waits (`Wait`) until
    /// `opens`.
    WaitForWindow {
        /// The scheduled time that waits.
        scheduled: Timestamp,
        /// When the next window opens (`None`: none opens within a week).
        opens: Option<Timestamp>,
    },
    /// The run for `scheduled` is due while every window is closed, and `Skip` skips it.
    SkipOutsideWindow {
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
    // Runs start only inside a window: checked at the time the run would start, so a run
    // that waited for another job (Forbid) until its window closed waits or is skipped too.
    if let Some(windows) = &facts.windows
        && !windows.is_open(facts.now)
    {
        return match facts.outside_window {
            OutsideWindow::Wait => Decision::WaitForWindow {
                scheduled,
                opens: windows.next_open(facts.now),
            },
            OutsideWindow::Skip => Decision::SkipOutsideWindow { scheduled },
        };
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
            windows: None,
            outside_window: OutsideWindow::Wait,
        }
    }

    fn windows(zone: &str, json: &str) -> Option<Windows> {
        let spec: Vec<hort_crds::schedule::BackupWindow> = serde_json::from_str(json).unwrap();
        Windows::parse(&spec, &TimeZone::get(zone).unwrap()).unwrap()
    }

    #[test]
    fn a_run_due_outside_every_window_waits_for_the_next_one() {
        // Hourly, window 01:00-03:00 in Berlin (00:00-02:00 UTC in winter).
        let cron: CronSchedule = "0 * * * *".parse().unwrap();
        let mut f = facts("2026-01-10T12:00:10Z", "2026-01-10T02:00:00Z");
        f.windows = windows("Europe/Berlin", r#"[{"start": "01:00", "end": "03:00"}]"#);
        assert_eq!(
            decide(&cron, &f),
            Decision::WaitForWindow {
                scheduled: t("2026-01-10T12:00:00Z"),
                opens: Some(t("2026-01-11T00:00:00Z"))
            }
        );
        // The window opens: only the latest due run starts, once.
        f.now = t("2026-01-11T00:00:05Z");
        assert_eq!(
            decide(&cron, &f),
            Decision::Run {
                scheduled: t("2026-01-11T00:00:00Z"),
                replace_active: false
            }
        );
        // Skip: the run due outside is skipped instead.
        f.now = t("2026-01-10T12:00:10Z");
        f.outside_window = OutsideWindow::Skip;
        assert_eq!(
            decide(&cron, &f),
            Decision::SkipOutsideWindow {
                scheduled: t("2026-01-10T12:00:00Z")
            }
        );
        // Inside the window, both policies run.
        f.now = t("2026-01-11T01:00:10Z");
        f.last_scheduled = t("2026-01-11T00:00:00Z");
        assert!(matches!(decide(&cron, &f), Decision::Run { .. }));
    }

    #[test]
    fn windows_over_midnight_on_a_daylight_saving_day() {
        // Daily at 22:30 New York time, window 23:00-02:00 there; 2026-03-08 skips 02:00-03:00.
        let cron = CronSchedule::parse("30 22 * * *", Some("America/New_York")).unwrap();
        let mut f = facts("2026-03-08T02:30:10Z", "2026-03-07T03:30:00Z");
        f.windows = windows("America/New_York", r#"[{"start": "23:00", "end": "02:00"}]"#);
        // 21:30 EST on 7 March: the 22:30 run of 7 March is not due yet; at 22:30 EST it waits
        // for 23:00 EST (04:00 UTC).
        assert_eq!(decide(&cron, &f), Decision::Idle);
        f.now = t("2026-03-08T03:30:10Z");
        assert_eq!(
            decide(&cron, &f),
            Decision::WaitForWindow {
                scheduled: t("2026-03-08T03:30:00Z"),
                opens: Some(t("2026-03-08T04:00:00Z"))
            }
        );
        // 01:59 EST after midnight (06:59 UTC): still open; 02:00 EST does not exist that
        // night, so the window closes at 03:00 EDT = 07:00 UTC.
        f.now = t("2026-03-08T06:59:00Z");
        assert!(matches!(decide(&cron, &f), Decision::Run { .. }));
        f.now = t("2026-03-08T07:00:00Z");
        assert!(matches!(decide(&cron, &f), Decision::WaitForWindow { .. }));
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
