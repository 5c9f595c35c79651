//! Calendar periods of retention rules (`keepWithin`, `--keep-within`): one grammar for the
//! API server, the operator and the agent.
//!
//! A period is one or more `<number><unit>` with units `y` (years), `mo` (months), `w` (weeks),
//! `d` (days) and `h` (hours), each at most once, e.g. `1y6mo`, `14d`, `36h`. `m` alone is
//! refused: restic reads it as months, most other tools as minutes. Years and months are
//! calendar units, counted back from the newest snapshot (six months before 31 August is
//! 28 or 29 February).

use std::fmt;
use std::str::FromStr;

/// The pattern the API server checks `keepWithin` against (the same grammar as [`FromStr`]).
pub const PATTERN: &str = r"^([0-9]+(y|mo|w|d|h))+$";

/// A retention period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Weeks.
    pub weeks: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

/// Text that is not a period; the message quotes it and says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a period: {problem} (write e.g. 1y6mo, 14d or 36h; units y, mo, w, d, h)")]
pub struct PeriodError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub problem: PeriodProblem,
}

/// What is wrong with a period's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodProblem {
    /// Nothing was given.
    #[error("it is empty")]
    Empty,
    /// A unit without a number (the rest of the text from there).
    #[error("expected a number at `{0}`")]
    NoNumber(String),
    /// A number above `u32::MAX` (its digits).
    #[error("`{0}` is too large")]
    TooLarge(String),
    /// `m`: minutes or months?
    #[error("`m` is ambiguous: write `mo` for months or `h` for hours")]
    Ambiguous,
    /// A number without a unit.
    #[error("`{0}` has no unit")]
    NoUnit(u32),
    /// A unit other than y, mo, w, d, h.
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
    /// A unit given twice.
    #[error("unit `{0}` appears twice")]
    Repeated(String),
    /// Every part is zero.
    #[error("it is zero, which would keep nothing")]
    Zero,
}

impl Period {
    /// Whether every part is zero.
    pub fn is_zero(&self) -> bool {
        *self == Period::default()
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |problem| PeriodError {
            text: text.to_owned(),
            problem,
        };
        let mut period = Period::default();
        let mut seen = Vec::new();
        let mut rest = text;
        if rest.is_empty() {
            return Err(error(PeriodProblem::Empty));
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(error(PeriodProblem::NoNumber(rest.to_owned())));
            }
            let number: u32 = rest[..digits]
                .parse()
                .map_err(|_| error(PeriodProblem::TooLarge(rest[..digits].to_owned())))?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "y" => &mut period.years,
                "mo" => &mut period.months,
                "w" => &mut period.weeks,
                "d" => &mut period.days,
                "h" => &mut period.hours,
                "m" => return Err(error(PeriodProblem::Ambiguous)),
                "" => return Err(error(PeriodProblem::NoUnit(number))),
                other => return Err(error(PeriodProblem::UnknownUnit(other.to_owned()))),
            };
            if seen.contains(&unit) {
                return Err(error(PeriodProblem::Repeated(unit.to_owned())));
            }
            seen.push(unit);
            *part = number;
        }
        if period.is_zero() {
            return Err(error(PeriodProblem::Zero));
        }
        Ok(period)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.years, "y"),
            (self.months, "mo"),
            (self.weeks, "w"),
            (self.days, "d"),
            (self.hours, "h"),
        ];
        for (n, unit) in parts {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_in_any_order_and_print_canonically() {
        let period: Period = "6mo1y".parse().unwrap();
        assert_eq!(
            period,
            Period {
                years: 1,
                months: 6,
                ..Period::default()
            }
        );
        assert_eq!(period.to_string(), "1y6mo");
        for text in ["36h", "14d", "2w", "1y", "3mo", "1y2mo3w4d5h"] {
            assert_eq!(text.parse::<Period>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn minutes_months_ambiguity_and_garbage_are_refused() {
        for (text, problem) in [
            ("6m", "`m` is ambiguous"),
            ("1y6m", "`m` is ambiguous"),
            ("7", "has no unit"),
            ("5x", "unknown unit `x`"),
            ("", "empty"),
            ("d", "expected a number"),
            ("1d2d", "appears twice"),
            ("0d", "zero"),
            ("99999999999d", "too large"),
        ] {
            let err = text.parse::<Period>().unwrap_err().to_string();
            assert!(
                err.contains(problem) && err.contains(&format!("`{text}`")),
                "{text}: {err}"
            );
        }
        let problem = |text: &str| text.parse::<Period>().unwrap_err().problem;
        assert_eq!(problem("1d2d"), PeriodProblem::Repeated("d".into()));
        assert_eq!(problem("12"), PeriodProblem::NoUnit(12));
        assert_eq!(problem("6m"), PeriodProblem::Ambiguous);
    }
}
