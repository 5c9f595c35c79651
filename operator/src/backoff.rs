//! Per-object retry delays after failed reconciles: doubling from one second up to five minutes
//! while an object keeps failing, back to the start after it succeeds once. One object that
//! cannot be reconciled (its API calls are refused, say) is retried ever more slowly and does not
//! crowd out the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Delay before the first retry.
const FIRST: Duration = Duration::from_secs(1);
/// The longest delay.
const LONGEST: Duration = Duration::from_secs(300);

/// Consecutive failures per object (`kind/namespace/name`).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failed reconcile of `key`; returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_string()).or_default();
        let delay = FIRST.saturating_mul(1u32 << (*count).min(16)).min(LONGEST);
        *count = count.saturating_add(1);
        delay
    }

    /// Records a successful reconcile of `key`: its next failure waits the shortest delay again.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_five_minutes_per_object_and_resets_on_success() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..12).map(|_| backoff.failed("BackupJob/a/x").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff.failed("BackupJob/a/y"), FIRST, "other objects are not slowed");
        backoff.succeeded("BackupJob/a/x");
        assert_eq!(backoff.failed("BackupJob/a/x"), FIRST);
    }
}
