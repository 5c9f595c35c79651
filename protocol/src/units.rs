//! How Hort shows sizes to people, the same in the agent's output, the operator's status
//! messages, the overview page and the plugin.

use std::fmt;

/// A byte count shown in binary units with one decimal (`512 B`, `1.5 KiB`, `3.0 GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_units_with_one_decimal() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(3 * 1024 * 1024 / 2).to_string(), "1.5 MiB");
        assert_eq!(Bytes(5 * 1024 * 1024 * 1024).to_string(), "5.0 GiB");
        assert_eq!(Bytes(u64::MAX).to_string(), "16384.0 PiB");
    }
}
