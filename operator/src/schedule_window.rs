//! Backup windows of a Schedule (`spec.windows`), pure: whether a time is inside one, and
//! when the next one opens, in the Schedule's time zone (daylight saving included).

use hort_crds::schedule::{BackupWindow, Weekday};
use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use crate::schedule_plan::InvalidSchedule;

/// One window: the days it opens on (Monday = 0) and its local opening and closing times.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    days: [bool; 7],
    start: Time,
    end: Time,
}

/// The parsed windows of a Schedule and its time zone.
#[derive(Debug, Clone)]
pub struct Windows {
    each: Vec<Window>,
    zone: TimeZone,
}

/// Parses `HH:MM` of field `field`.
fn clock(field: &'static str, value: &str) -> Result<Time, InvalidSchedule> {
    let invalid = |reason: &str| InvalidSchedule {
        field,
        value: value.into(),
        reason: reason.into(),
    };
    let (h, m) = value
        .split_once(':')
        .ok_or_else(|| invalid("write HH:MM, e.g. 01:30"))?;
    let h: i8 = h.parse().map_err(|_| invalid("the hour is not a number"))?;
    let m: i8 = m.parse().map_err(|_| invalid("the minute is not a number"))?;
    Time::new(h, m, 0, 0).map_err(|_| invalid("write HH:MM from 00:00 to 23:59"))
}

impl Windows {
    /// Parses `spec.windows` in `zone`; `None` when there are none (always open).
    pub fn parse(windows: &[BackupWindow], zone: &TimeZone) -> Result<Option<Self>, InvalidSchedule> {
        if windows.is_empty() {
            return Ok(None);
        }
        let mut each = Vec::with_capacity(windows.len());
        for w in windows {
            let start = clock("spec.windows[].start", &w.start)?;
            let end = clock("spec.windows[].end", &w.end)?;
            if start == end {
                return Err(InvalidSchedule {
                    field: "spec.windows[].end",
                    value: w.end.clone(),
                    reason: "start and end must differ".into(),
                });
            }
            let mut days = [w.days.is_empty(); 7];
            for day in &w.days {
                days[day_index(*day)] = true;
            }
            each.push(Window { days, start, end });
        }
        Ok(Some(Self {
            each,
            zone: zone.clone(),
        }))
    }

    /// The `[open, close)` times of the windows that open on local date `day`.
    fn on(&self, day: Date) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let weekday = day.weekday().to_monday_zero_offset() as usize;
        self.each.iter().filter(move |w| w.days[weekday]).filter_map(move |w| {
            let closes_on = if w.end > w.start { day } else { day.tomorrow().ok()? };
            // A local time the clock skips is read with the offset before the jump (02:30 on a
            // day that skips 02:00-03:00 is 03:30); one it passes twice is the first of them.
            let open = day.to_datetime(w.start).to_zoned(self.zone.clone()).ok()?.timestamp();
            let close = closes_on
                .to_datetime(w.end)
                .to_zoned(self.zone.clone())
                .ok()?
                .timestamp();
            Some((open, close))
        })
    }

    /// Whether `t` is inside a window.
    pub fn is_open(&self, t: Timestamp) -> bool {
        let today = t.to_zoned(self.zone.clone()).date();
        // A window over midnight that opened yesterday may still be open.
        [today.yesterday().ok(), Some(today)]
            .into_iter()
            .flatten()
            .any(|day| self.on(day).any(|(open, close)| open <= t && t < close))
    }

    /// The first time after `t` at which a window opens (within the next eight days).
    pub fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        let today = t.to_zoned(self.zone.clone()).date();
        let mut day = today;
        let mut best: Option<Timestamp> = None;
        for _ in 0..9 {
            for (open, close) in self.on(day) {
                if open > t && open < close {
                    best = Some(best.map_or(open, |b| b.min(open)));
                }
            }
            day = day.tomorrow().ok()?;
        }
        best
    }
}

fn day_index(day: Weekday) -> usize {
    match day {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn windows(zone: &str, yaml: &str) -> Windows {
        let spec: Vec<BackupWindow> = serde_json::from_str(yaml).unwrap();
        Windows::parse(&spec, &TimeZone::get(zone).unwrap()).unwrap().unwrap()
    }

    #[test]
    fn a_window_is_read_in_the_time_zone() {
        // 01:00-05:00 in New York is 06:00-10:00 UTC in winter.
        let w = windows("America/New_York", r#"[{"start": "01:00", "end": "05:00"}]"#);
        assert!(!w.is_open(t("2026-01-10T05:59:59Z")));
        assert!(w.is_open(t("2026-01-10T06:00:00Z")));
        assert!(w.is_open(t("2026-01-10T09:59:59Z")));
        assert!(!w.is_open(t("2026-01-10T10:00:00Z")), "end is excluded");
        assert_eq!(w.next_open(t("2026-01-10T10:00:00Z")), Some(t("2026-01-11T06:00:00Z")));
    }

    #[test]
    fn a_window_over_midnight_belongs_to_the_day_it_opens() {
        // Fridays 22:00 to Saturdays 04:00, UTC. 2026-01-09 is a Friday.
        let w = windows("UTC", r#"[{"days": ["Fri"], "start": "22:00", "end": "04:00"}]"#);
        assert!(w.is_open(t("2026-01-09T23:30:00Z")));
        assert!(
            w.is_open(t("2026-01-10T03:59:00Z")),
            "Saturday morning, opened on Friday"
        );
        assert!(!w.is_open(t("2026-01-10T04:00:00Z")));
        assert!(!w.is_open(t("2026-01-10T23:00:00Z")), "Saturday evening: not a Friday");
        assert!(
            !w.is_open(t("2026-01-09T03:00:00Z")),
            "Friday morning: Thursday's window is not there"
        );
        assert_eq!(w.next_open(t("2026-01-10T05:00:00Z")), Some(t("2026-01-16T22:00:00Z")));
    }

    #[test]
    fn daylight_saving_days_keep_the_local_times() {
        // Berlin skips 02:00-03:00 on 2026-03-29: a window 01:00-05:00 is three hours long
        // (00:00-03:00 UTC), and the day after it is 23:00-03:00 UTC again.
        let w = windows("Europe/Berlin", r#"[{"start": "01:00", "end": "05:00"}]"#);
        assert!(w.is_open(t("2026-03-29T00:00:00Z")));
        assert!(w.is_open(t("2026-03-29T02:59:59Z")));
        assert!(!w.is_open(t("2026-03-29T03:00:00Z")));
        assert_eq!(w.next_open(t("2026-03-28T12:00:00Z")), Some(t("2026-03-29T00:00:00Z")));
        assert_eq!(w.next_open(t("2026-03-29T12:00:00Z")), Some(t("2026-03-29T23:00:00Z")));
        // A window opening at a skipped time opens with the offset before the jump: 03:30.
        let skipped = windows("Europe/Berlin", r#"[{"start": "02:30", "end": "06:00"}]"#);
        assert_eq!(
            skipped.next_open(t("2026-03-28T12:00:00Z")),
            Some(t("2026-03-29T01:30:00Z"))
        );
        // On 2026-10-25 Berlin passes 02:00-03:00 twice: 02:30 is the first (00:30 UTC).
        assert_eq!(
            skipped.next_open(t("2026-10-24T12:00:00Z")),
            Some(t("2026-10-25T00:30:00Z"))
        );
        assert!(skipped.is_open(t("2026-10-25T04:59:00Z")), "06:00 CET is 05:00 UTC");
        assert!(!skipped.is_open(t("2026-10-25T05:00:00Z")));
    }

    #[test]
    fn several_windows_and_days() {
        let w = windows(
            "UTC",
            r#"[{"days": ["Sat", "Sun"], "start": "08:00", "end": "20:00"}, {"start": "01:00", "end": "03:00"}]"#,
        );
        // 2026-01-10 is a Saturday, 2026-01-12 a Monday.
        assert!(w.is_open(t("2026-01-10T12:00:00Z")));
        assert!(!w.is_open(t("2026-01-12T12:00:00Z")));
        assert!(w.is_open(t("2026-01-12T02:00:00Z")));
        assert_eq!(w.next_open(t("2026-01-12T12:00:00Z")), Some(t("2026-01-13T01:00:00Z")));
    }

    #[test]
    fn bad_times_name_the_field() {
        let zone = TimeZone::UTC;
        let bad: Vec<BackupWindow> = serde_json::from_str(r#"[{"start": "25:00", "end": "01:00"}]"#).unwrap();
        let e = Windows::parse(&bad, &zone).unwrap_err();
        assert_eq!(e.field, "spec.windows[].start");
        let same: Vec<BackupWindow> = serde_json::from_str(r#"[{"start": "01:00", "end": "01:00"}]"#).unwrap();
        assert_eq!(Windows::parse(&same, &zone).unwrap_err().field, "spec.windows[].end");
        assert!(Windows::parse(&[], &zone).unwrap().is_none());
    }
}
