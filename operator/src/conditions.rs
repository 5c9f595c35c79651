//! Kubernetes-style status conditions (`metav1.Condition`): set one, keeping its
//! `lastTransitionTime` when its status does not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// `True`, `False` or `Unknown`, as the API spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It cannot be told yet.
    Unknown,
}

impl Status {
    /// The spelling used in `metav1.Condition.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// A condition to record, without its timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// Whether it holds.
    pub status: Status,
    /// CamelCase reason, e.g. `SecretNotFound`.
    pub reason: &'static str,
    /// Human-readable details naming the object or field concerned.
    pub message: String,
}

/// Sets `observation` in `conditions`: replaces the condition of the same type, keeping its
/// `lastTransitionTime` when the status is unchanged, or appends it.
pub fn set(conditions: &mut Vec<Condition>, observation: Observation, generation: Option<i64>, now: Timestamp) {
    let status = observation.status.as_str();
    let transition = match conditions.iter().find(|c| c.type_ == observation.type_) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let new = Condition {
        type_: observation.type_.to_string(),
        status: status.to_string(),
        reason: observation.reason.to_string(),
        message: observation.message,
        observed_generation: generation,
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(slot) => *slot = new,
        None => conditions.push(new),
    }
}

/// The condition of type `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: Status, reason: &'static str) -> Observation {
        Observation {
            type_: "Ready",
            status,
            reason,
            message: format!("because {reason}"),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            ready(Status::False, "SecretNotFound"),
            Some(1),
            at(100),
        );
        set(&mut conditions, ready(Status::False, "ClaimNotFound"), Some(2), at(200));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(at(100)));
        assert_eq!(conditions[0].reason, "ClaimNotFound");
        assert_eq!(conditions[0].observed_generation, Some(2));

        set(&mut conditions, ready(Status::True, "Checked"), Some(2), at(300));
        assert_eq!(conditions[0].last_transition_time, Time(at(300)));
        assert!(is_true(&conditions, "Ready"));
    }

    #[test]
    fn other_types_are_kept() {
        let mut conditions = Vec::new();
        set(&mut conditions, ready(Status::True, "Checked"), None, at(1));
        let other = Observation {
            type_: "Complete",
            status: Status::Unknown,
            reason: "Running",
            message: String::new(),
        };
        set(&mut conditions, other, None, at(2));
        assert_eq!(conditions.len(), 2);
        assert!(is_true(&conditions, "Ready"));
        assert!(!is_true(&conditions, "Complete"));
    }
}
