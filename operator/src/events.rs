//! Kubernetes Events about Hort objects, published when something a user should see happens:
//! a condition changes, a job is created, a run is skipped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use crate::conditions::{Observation, Status};
use crate::context::Context;

/// Publishes an event; a failure is logged and never fails the reconcile.
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
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(%error, reason, "publishing an event failed");
    }
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
