//! Bandwidth limits as users write them: a rate in bytes per second, written as a Kubernetes
//! quantity without the exotic forms — digits, an optional fraction, an optional suffix
//! (`20Mi`, `500Ki`, `1.5Gi`, `10M`, `250000`). The same grammar is used by the agent's
//! `--limit-upload`/`--limit-download` ([`crate::env::LIMIT_UPLOAD`],
//! [`crate::env::LIMIT_DOWNLOAD`]) and by a StorageGroup's `spec.bandwidth`, whose schema
//! checks it with [`PATTERN`] and [`MIN`].

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

/// The regular expression a rate matches (as the CRD's CEL rule writes it).
pub const PATTERN: &str = "^[0-9]+([.][0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$";
/// The smallest rate accepted, as a quantity: 1000 bytes per second.
pub const MIN: &str = "1k";
const MIN_BYTES: u64 = 1000;

/// The suffixes of [`PATTERN`] and what they multiply by.
const SUFFIXES: [(&str, u64); 8] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

/// A rate in bytes per second, at least [`MIN`]. Shown (and passed between operator and
/// agent) as a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BytesPerSecond(NonZeroU64);

impl BytesPerSecond {
    /// The rate in bytes per second.
    pub fn get(self) -> NonZeroU64 {
        self.0
    }

    /// One of `parts` equal shares of this rate (e.g. per proxy replica), rounded down but
    /// never below [`MIN`], the smallest rate the agent and the proxy take.
    pub fn share(self, parts: u64) -> Self {
        let share = (self.0.get() / parts.max(1)).max(MIN_BYTES);
        Self(NonZeroU64::new(share).expect("at least MIN_BYTES"))
    }
}

/// A rate that is not written as [`PATTERN`] asks, or is below [`MIN`] (the text as given).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}`: expected bytes per second of at least 1k, as digits with an optional fraction and \
     suffix Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000), e.g. 20Mi or 1.5Gi"
)]
pub struct NotARate(pub String);

impl FromStr for BytesPerSecond {
    type Err = NotARate;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || NotARate(text.to_owned());
        let (number, multiplier) = SUFFIXES
            .iter()
            .find_map(|(suffix, m)| text.strip_suffix(suffix).map(|n| (n, *m)))
            .unwrap_or((text, 1));
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (number.contains('.') && !digits(fraction)) || fraction.len() > 24 {
            return Err(refuse());
        }
        let whole: u128 = whole.parse().map_err(|_| refuse())?;
        let fraction_value: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| refuse())?
        };
        let scale = 10u128.pow(fraction.len() as u32);
        let bytes = whole
            .checked_mul(u128::from(multiplier))
            .and_then(|b| b.checked_add(fraction_value * u128::from(multiplier) / scale))
            .and_then(|b| u64::try_from(b).ok())
            .ok_or_else(refuse)?;
        match NonZeroU64::new(bytes) {
            Some(rate) if bytes >= MIN_BYTES => Ok(Self(rate)),
            _ => Err(refuse()),
        }
    }
}

impl fmt::Display for BytesPerSecond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Result<u64, NotARate> {
        text.parse::<BytesPerSecond>().map(|r| r.get().get())
    }

    #[test]
    fn quantities_are_bytes_per_second() {
        assert_eq!(rate("20Mi"), Ok(20 << 20));
        assert_eq!(rate("500Ki"), Ok(500 << 10));
        assert_eq!(rate("1.5Gi"), Ok(3 << 29));
        assert_eq!(rate("10M"), Ok(10_000_000));
        assert_eq!(rate("1k"), Ok(1000));
        assert_eq!(rate("250000"), Ok(250_000));
        assert_eq!(rate("2T"), Ok(2_000_000_000_000));
        assert_eq!(rate("0.5Mi"), Ok(1 << 19));
        let shown = "20Mi".parse::<BytesPerSecond>().unwrap().to_string();
        assert_eq!(shown, "20971520", "passed on as plain bytes");
        assert_eq!(rate(&shown), Ok(20 << 20));
    }

    #[test]
    fn other_forms_and_tiny_rates_are_refused_with_what_to_write() {
        for text in [
            "", "0", "999", "0.9k", "20MB", "20 Mi", "-1Mi", "1e6", "100m", ".5Mi", "5.Mi", "Mi", "20mi",
        ] {
            assert!(rate(text).is_err(), "{text:?} must be refused");
        }
        assert!(rate("99999999999999999999Ti").is_err(), "overflow");
        assert_eq!(
            rate("20MB").unwrap_err().to_string(),
            "`20MB`: expected bytes per second of at least 1k, as digits with an optional fraction and \
             suffix Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000), e.g. 20Mi or 1.5Gi"
        );
    }

    #[test]
    fn a_share_divides_the_rate_but_stays_a_rate() {
        let rate = |text: &str| text.parse::<BytesPerSecond>().unwrap();
        assert_eq!(rate("3M").share(3), rate("1M"));
        assert_eq!(rate("10M").share(1), rate("10M"));
        assert_eq!(rate("10M").share(0), rate("10M"), "no parts is one part");
        assert_eq!(rate("2k").share(16), rate("1k"), "never below the smallest rate");
        assert_eq!(rate("1000003").share(2).get().get(), 500_001, "rounded down");
    }
}
