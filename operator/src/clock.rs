//! The operator's source of the current time, replaceable in tests so they never sleep.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

/// Where "now" comes from.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that only moves when told to.
    Manual(Arc<Mutex<Timestamp>>),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: Timestamp) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Manual(t) => *t.lock().expect("clock lock"),
        }
    }

    /// Sets a manual clock to `t`; does nothing to the system clock.
    pub fn set(&self, t: Timestamp) {
        if let Clock::Manual(now) = self {
            *now.lock().expect("clock lock") = t;
        }
    }

    /// Moves a manual clock forward by `by`.
    pub fn advance(&self, by: SignedDuration) {
        self.set(self.now() + by);
    }
}
