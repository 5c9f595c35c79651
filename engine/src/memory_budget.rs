//! A budget of bytes that readers take before they fetch pack data and give back once the data
//! is written: it bounds the memory a restore holds, whatever the number and size of its files.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Bytes of pack data (sealed bytes read plus the plaintext decoded from them) that may be
/// held at once; shared by every reader of one restore.
#[derive(Debug)]
pub struct MemoryBudget {
    capacity: u64,
    /// Bytes taken and not yet given back.
    held: Mutex<u64>,
    freed: Condvar,
}

impl MemoryBudget {
    /// A budget of `capacity` bytes (at least 1).
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            held: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// The bytes it allows at once.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn held(&self) -> MutexGuard<'_, u64> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What taking `bytes` costs: a request larger than the whole budget takes all of it, so
    /// that it can still go ahead (alone).
    pub(crate) fn cost(&self, bytes: u64) -> u64 {
        bytes.min(self.capacity)
    }

    /// Takes `cost` bytes (see [`cost`](Self::cost)), waiting until they are free. A caller
    /// must not wait here while it holds bytes that only it can give back.
    pub(crate) fn take(&self, cost: u64) {
        let mut held = self.held();
        while *held + cost > self.capacity {
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held += cost;
    }

    /// Takes `cost` bytes if they are free now.
    pub(crate) fn try_take(&self, cost: u64) -> bool {
        let mut held = self.held();
        if *held + cost > self.capacity {
            return false;
        }
        *held += cost;
        true
    }

    /// Gives back `cost` bytes taken before.
    pub(crate) fn give_back(&self, cost: u64) {
        if cost == 0 {
            return;
        }
        let mut held = self.held();
        *held = held.saturating_sub(cost);
        drop(held);
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taker_waits_until_bytes_are_given_back() {
        let budget = MemoryBudget::new(10);
        budget.take(budget.cost(7));
        assert!(!budget.try_take(4), "7 + 4 exceeds 10");
        assert!(budget.try_take(3));
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| budget.take(5));
            budget.give_back(7);
            waiter.join().unwrap();
        });
        assert!(!budget.try_take(3), "3 + 5 are held");
        budget.give_back(8);
        assert_eq!(budget.cost(100), 10, "a request larger than the budget takes all of it");
        assert!(budget.try_take(budget.cost(100)));
    }
}
