//! Kubernetes Events about Hort objects, published when something a user should see happens:
//! a condition changes, a job is created, a run is skipped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use crate::conditions::{self, Observation, Status};
use crate::context::Context;

/// The API server refuses an Event whose note is longer than this many bytes.
const NOTE_LIMIT: usize = 1024;
/// Of a longer note, this many bytes of its beginning are kept (the rest from its end).
const NOTE_HEAD: usize = 400;

/// `note` within [`NOTE_LIMIT`]: a longer one keeps its beginning (what happened) and its end
/// (e.g. the end of a command's output), joined by ` … `.
fn bounded(note: String) -> String {
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let floor = |mut i: usize| {
        while !note.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let head = floor(NOTE_HEAD);
    let joint = " … ";
    let mut tail = note.len() - (NOTE_LIMIT - NOTE_HEAD - joint.len());
    while !note.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{joint}{}", &note[..head], &note[tail..])
}

/// Publishes an event (its note bounded to what the API server takes); a failure is logged
/// and never fails the reconcile.
pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(bounded(note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(%error, reason, "publishing an event failed");
    }
}

/// Sets `observation` among the `conditions` of `obj` (as of its generation) and publishes an
/// Event when its status or reason changed ([`on_transition`]).
pub async fn set_condition<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    conditions: &mut Vec<Condition>,
    observation: Observation,
    now: Timestamp,
) {
    let before = conditions::find(conditions, observation.type_).cloned();
    conditions::set(conditions, observation.clone(), obj.meta().generation, now);
    on_transition(ctx, obj, before.as_ref(), &observation).await;
}

/// Publishes an event when `after` differs from `before` in status or reason: a Warning when
/// the condition is False, Normal otherwise.
pub async fn on_transition<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    before: Option<&Condition>,
    after: &Observation,
) {
    let changed = before.is_none_or(|b| b.status != after.status.as_str() || b.reason != after.reason);
    if changed {
        let type_ = if after.status == Status::False {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, obj, type_, after.reason, after.message.clone()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_keep_their_beginning_and_end_within_the_limit() {
        assert_eq!(bounded("short".into()), "short");
        let long = format!(
            "command alpine: exit code 3; output ends: {}the last line",
            "é".repeat(2000)
        );
        let note = bounded(long);
        assert!(note.len() <= NOTE_LIMIT, "{}", note.len());
        assert!(note.starts_with("command alpine: exit code 3"));
        assert!(note.ends_with("the last line"));
        assert!(note.contains(" … "));
    }
}
