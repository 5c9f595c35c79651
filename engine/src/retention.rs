//! Retention policies: which snapshots to keep (last / hourly / daily / weekly / monthly /
//! yearly / within), decided per group of snapshots with the same host and source.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Months, Utc};
use hort_protocol::Period;

use crate::id::Id;
use crate::snapshot::{Snapshot, Source};

/// How many snapshots to keep per rule; a snapshot is kept if any rule keeps it.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The newest `last` snapshots.
    pub last: usize,
    /// The newest snapshot of each of the newest `hourly` hours that have one.
    pub hourly: usize,
    /// Likewise per day (UTC).
    pub daily: usize,
    /// Likewise per ISO week.
    pub weekly: usize,
    /// Likewise per month.
    pub monthly: usize,
    /// Likewise per year.
    pub yearly: usize,
    /// Every snapshot younger than this period, counted back from the group's newest snapshot
    /// (years and months in calendar terms).
    pub within: Option<Period>,
}

impl Policy {
    /// Whether the policy keeps nothing (refused by `prune`, which would forget everything).
    pub fn is_empty(&self) -> bool {
        self.last + self.hourly + self.daily + self.weekly + self.monthly + self.yearly == 0 && self.within.is_none()
    }
}

/// The decision for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot.
    pub id: Id,
    /// Whether it is kept.
    pub keep: bool,
    /// The rules that keep it (e.g. `daily`).
    pub reasons: Vec<&'static str>,
}

/// Maps a time to its calendar bucket (hour, day, ...).
type Bucket = fn(&DateTime<Utc>) -> String;

fn group_key(s: &Snapshot) -> String {
    let source = match &s.source {
        Source::Tree { path } => format!("tree:{path}"),
        Source::Streams => {
            let mut names: Vec<&str> = s.streams.iter().map(|st| st.name.as_str()).collect();
            names.sort_unstable();
            format!("streams:{}", names.join(","))
        }
    };
    format!("{}\n{source}", s.hostname)
}

/// Applies `policy` to `snapshots`; returns one decision per snapshot, newest first.
pub fn apply(snapshots: &[(Id, Snapshot)], policy: &Policy) -> Vec<Decision> {
    let mut groups: BTreeMap<String, Vec<&(Id, Snapshot)>> = BTreeMap::new();
    for entry in snapshots {
        groups.entry(group_key(&entry.1)).or_default().push(entry);
    }
    let rules: [(&'static str, usize, Bucket); 5] = [
        ("hourly", policy.hourly, |t| t.format("%Y-%m-%d %H").to_string()),
        ("daily", policy.daily, |t| t.format("%Y-%m-%d").to_string()),
        ("weekly", policy.weekly, |t| t.format("%G-%V").to_string()),
        ("monthly", policy.monthly, |t| t.format("%Y-%m").to_string()),
        ("yearly", policy.yearly, |t| t.format("%Y").to_string()),
    ];
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
        let newest = group[0].1.time;
        let within_since = policy.within.map(|period| before(newest, period));
        let mut counts = [0usize; 5];
        let mut last_bucket: [Option<String>; 5] = Default::default();
        for (i, (id, snapshot)) in group.into_iter().map(|e| (e.0, &e.1)).enumerate() {
            let mut reasons = Vec::new();
            if i < policy.last {
                reasons.push("last");
            }
            for (r, (name, limit, bucket)) in rules.iter().enumerate() {
                let key = bucket(&snapshot.time);
                if last_bucket[r].as_ref() != Some(&key) {
                    last_bucket[r] = Some(key);
                    if counts[r] < *limit {
                        counts[r] += 1;
                        reasons.push(name);
                    }
                }
            }
            if within_since.is_some_and(|since| snapshot.time >= since) {
                reasons.push("within");
            }
            out.push(Decision {
                id,
                keep: !reasons.is_empty(),
                reasons,
            });
        }
    }
    out
}

/// The time `period` before `time`: calendar years and months first (the day clamped to the
/// month's length), then weeks, days and hours. Before the earliest representable time: that
/// time.
pub fn before(time: DateTime<Utc>, period: Period) -> DateTime<Utc> {
    let months = period.years.saturating_mul(12).saturating_add(period.months);
    let fixed = Duration::weeks(period.weeks.into())
        + Duration::days(period.days.into())
        + Duration::hours(period.hours.into());
    time.checked_sub_months(Months::new(months))
        .and_then(|t| t.checked_sub_signed(fixed))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Text that is not a duration of [`parse_duration`]; the message quotes it and says what to
/// write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// A unit without a number before it (`d`, `h5`).
    #[error("`{text}`: expected a number before `{unit}`")]
    NoNumber {
        /// The text as given.
        text: String,
        /// The unit.
        unit: char,
    },
    /// A unit other than m, h, d, w, y.
    #[error("`{text}`: unknown unit `{unit}` (use m, h, d, w, y)")]
    UnknownUnit {
        /// The text as given.
        text: String,
        /// The unit.
        unit: char,
    },
    /// A number without a unit, or nothing at all.
    #[error("`{text}`: expected a duration like 7d or 12h")]
    NotADuration {
        /// The text as given.
        text: String,
    },
    /// More than chrono's durations hold (about 292 million years).
    #[error("`{text}`: too long a duration (write e.g. 7d or 12h)")]
    TooLong {
        /// The text as given.
        text: String,
    },
}

/// Parses fixed durations like `30m` (minutes), `12h`, `7d`, `2w`, `1y` (365 days), `1d12h`,
/// or `0`: the grace period of garbage collection. Retention periods are [`Period`]s.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text == "0" {
        return Ok(Duration::zero());
    }
    let too_long = || DurationError::TooLong { text: text.to_owned() };
    let mut total = Duration::zero();
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if number.is_empty() {
            return Err(DurationError::NoNumber {
                text: text.to_owned(),
                unit: c,
            });
        }
        let n: i64 = number.parse().map_err(|_| too_long())?;
        number.clear();
        let part = match c {
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            'y' => n.checked_mul(365).and_then(Duration::try_days),
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other,
                });
            }
        };
        total = part.and_then(|part| total.checked_add(&part)).ok_or_else(too_long)?;
    }
    if !number.is_empty() || total.is_zero() {
        return Err(DurationError::NotADuration { text: text.to_owned() });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Stats;

    fn snap(n: u8, time: &str, host: &str) -> (Id, Snapshot) {
        (
            Id([n; 32]),
            Snapshot {
                version: 1,
                time: time.parse().unwrap(),
                hostname: host.into(),
                source: Source::Tree { path: "/data".into() },
                tags: vec![],
                tree: None,
                streams: vec![],
                parent: None,
                stats: Stats::default(),
            },
        )
    }

    fn kept(decisions: &[Decision]) -> Vec<u8> {
        let mut ids: Vec<u8> = decisions.iter().filter(|d| d.keep).map(|d| d.id.0[0]).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_and_groups_by_host() {
        let snapshots = vec![
            snap(1, "2026-11-20T10:00:00Z", "a"),
            snap(2, "2026-11-20T22:00:00Z", "a"),
            snap(3, "2026-11-21T09:00:00Z", "a"),
            snap(4, "2026-11-22T09:00:00Z", "a"),
            snap(5, "2026-11-22T11:00:00Z", "a"),
            snap(6, "2026-11-01T11:00:00Z", "b"),
        ];
        let policy = Policy {
            daily: 2,
            ..Default::default()
        };
        assert_eq!(kept(&apply(&snapshots, &policy)), vec![3, 5, 6]);
        let policy = Policy {
            last: 1,
            monthly: 1,
            ..Default::default()
        };
        assert_eq!(kept(&apply(&snapshots, &policy)), vec![5, 6]);
        let policy = Policy {
            within: Some("1d12h".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(kept(&apply(&snapshots, &policy)), vec![3, 4, 5, 6]);
        assert!(Policy::default().is_empty());
    }

    #[test]
    fn hourly_weekly_and_yearly_keep_the_newest_of_each_period() {
        let snapshots = vec![
            snap(1, "2024-06-01T10:00:00Z", "a"),
            snap(2, "2025-12-28T10:00:00Z", "a"), // Sunday of ISO week 52 of 2025
            snap(3, "2025-12-29T10:00:00Z", "a"), // Monday: ISO week 1 of 2026
            snap(4, "2026-01-04T09:05:00Z", "a"), // Sunday of that week
            snap(5, "2026-01-04T09:40:00Z", "a"),
            snap(6, "2026-01-04T10:15:00Z", "a"),
        ];
        let policy = |hourly, weekly, yearly| Policy {
            hourly,
            weekly,
            yearly,
            ..Default::default()
        };
        // The newest of each of the last two hours that have one.
        assert_eq!(kept(&apply(&snapshots, &policy(2, 0, 0))), vec![5, 6]);
        // ISO weeks: 29 December 2025 belongs to 2026's first week, with 4 January.
        assert_eq!(kept(&apply(&snapshots, &policy(0, 2, 0))), vec![2, 6]);
        assert_eq!(kept(&apply(&snapshots, &policy(0, 3, 0))), vec![1, 2, 6]);
        // Years: 2026, 2025 and 2024.
        assert_eq!(kept(&apply(&snapshots, &policy(0, 0, 2))), vec![3, 6]);
        assert_eq!(kept(&apply(&snapshots, &policy(0, 0, 5))), vec![1, 3, 6]);
    }

    #[test]
    fn within_counts_calendar_months_back_from_the_newest() {
        // Snapshots on the last day of each month, newest 31 August 2026.
        let snapshots = vec![
            snap(1, "2026-01-31T12:00:00Z", "a"),
            snap(2, "2026-02-28T12:00:00Z", "a"),
            snap(3, "2026-03-31T12:00:00Z", "a"),
            snap(4, "2026-07-31T12:00:00Z", "a"),
            snap(5, "2026-08-31T12:00:00Z", "a"),
        ];
        let within = |text: &str| Policy {
            within: Some(text.parse().unwrap()),
            ..Default::default()
        };
        // Six months before 31 August is 28 February (the day clamped), not six minutes.
        assert_eq!(kept(&apply(&snapshots, &within("6mo"))), vec![2, 3, 4, 5]);
        assert_eq!(kept(&apply(&snapshots, &within("1mo"))), vec![4, 5]);
        assert_eq!(kept(&apply(&snapshots, &within("1y"))), vec![1, 2, 3, 4, 5]);
        assert_eq!(kept(&apply(&snapshots, &within("1h"))), vec![5]);
        assert_eq!(
            before("2024-02-29T00:00:00Z".parse().unwrap(), "1y".parse().unwrap()),
            "2023-02-28T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn durations_parse_and_reject_garbage() {
        assert_eq!(parse_duration("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_duration("90m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("1d12h").unwrap(), Duration::hours(36));
        assert_eq!(parse_duration("0").unwrap(), Duration::zero());
        let not = |text: &str| DurationError::NotADuration { text: text.into() };
        assert_eq!(parse_duration("7"), Err(not("7")));
        assert_eq!(parse_duration(""), Err(not("")));
        assert_eq!(parse_duration("0d"), Err(not("0d")));
        let unknown = parse_duration("5x").unwrap_err();
        assert_eq!(
            unknown,
            DurationError::UnknownUnit {
                text: "5x".into(),
                unit: 'x'
            }
        );
        assert_eq!(unknown.to_string(), "`5x`: unknown unit `x` (use m, h, d, w, y)");
        assert_eq!(
            parse_duration("d"),
            Err(DurationError::NoNumber {
                text: "d".into(),
                unit: 'd'
            })
        );
        // Too large for chrono: an error, not a panic.
        for huge in ["99999999999999999y", "999999999999999999999d", "9223372036854775807m"] {
            assert_eq!(parse_duration(huge), Err(DurationError::TooLong { text: huge.into() }));
        }
    }
}
