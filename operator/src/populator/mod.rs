//! The volume populator: a PersistentVolumeClaim whose `spec.dataSourceRef` names a
//! `VolumeRestoreSource` (apiGroup `hort.dev`) gets the source's snapshot restored into it.
//!
//! It works as lib-volume-populator does, but in the claim's own namespace (where the
//! repository's Secrets are, and where a tenant's data stays): a prime claim of the same class,
//! modes and size is created ([`build`]), an agent pod restores into it, its volume is then
//! handed to the claim by its `claimRef`, and the prime claim and pod are deleted once the
//! claim is Bound. The next step is a pure function of what was found ([`decide`]); the API
//! calls are in [`reconcile`]. Run only with `--populator` (the chart's `populator.enabled`).

pub mod build;
pub mod decide;
pub mod reconcile;

use std::sync::Arc;

use futures::StreamExt;
use hort_crds::VolumeRestoreSource;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::context::Context;
use crate::controllers::{AGENT_PODS, Scope, error_policy, instrumented, key};

/// Label on the prime claim and restore pods: the uid of the claim they populate.
pub const CLAIM_LABEL: &str = "hort.dev/populate-claim";
/// Label on a restore pod: its attempt (1 for the first).
pub const ATTEMPT_LABEL: &str = "hort.dev/populate-attempt";
/// Annotation the scheduler sets on a WaitForFirstConsumer claim: the node chosen for it.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Annotation on a populated volume: `namespace/name` of the VolumeRestoreSource.
pub const POPULATED_FROM: &str = "hort.dev/populated-from";

/// The name of the VolumeRestoreSource `claim` names as its data source, if it names one.
pub fn source_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    let reference = claim.spec.as_ref()?.data_source_ref.as_ref()?;
    let ours = reference.api_group.as_deref() == Some(hort_crds::GROUP) && reference.kind == "VolumeRestoreSource";
    // A source in another namespace would need a ReferenceGrant; the populator works in the
    // claim's namespace only.
    let same_namespace = reference
        .namespace
        .as_ref()
        .is_none_or(|ns| Some(ns) == claim.metadata.namespace.as_ref());
    (ours && same_namespace && !reference.name.is_empty()).then_some(reference.name.as_str())
}

/// Runs the populator's controller until a shutdown signal arrives: claims are reconciled when
/// they change, when their prime claim or restore pod changes, and when the VolumeRestoreSource
/// they name changes.
pub async fn run(ctx: Arc<Context>, scope: Scope, concurrency: u16) {
    let client = &ctx.client;
    let config = watcher::Config::default;
    let claims = Controller::new(scope.api::<PersistentVolumeClaim>(client), config())
        .with_config(controller::Config::default().concurrency(concurrency));
    let store = claims.store();
    claims
        .owns(scope.api::<Pod>(client), config().labels(AGENT_PODS))
        .owns(scope.api::<PersistentVolumeClaim>(client), config().labels(CLAIM_LABEL))
        .watches(scope.api::<VolumeRestoreSource>(client), config(), move |source| {
            let namespace = source.namespace();
            let name = source.name_any();
            store
                .state()
                .into_iter()
                .filter(|c| c.namespace() == namespace && source_name(c) == Some(name.as_str()))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(
            |claim, ctx| instrumented(key(&*claim), ctx.clone(), reconcile::reconcile(claim, ctx)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {})
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(reference: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data", "namespace": "app"},
            "spec": {"dataSourceRef": reference}
        }))
        .unwrap()
    }

    #[test]
    fn only_a_volume_restore_source_of_the_claims_namespace_is_ours() {
        let named = |r| source_name(&claim(r)).map(str::to_owned);
        assert_eq!(
            named(serde_json::json!({"apiGroup": "hort.dev", "kind": "VolumeRestoreSource", "name": "web"})),
            Some("web".into())
        );
        assert_eq!(
            named(
                serde_json::json!({"apiGroup": "hort.dev", "kind": "VolumeRestoreSource", "name": "web", "namespace": "app"})
            ),
            Some("web".into())
        );
        assert_eq!(
            named(
                serde_json::json!({"apiGroup": "hort.dev", "kind": "VolumeRestoreSource", "name": "web", "namespace": "other"})
            ),
            None
        );
        assert_eq!(
            named(serde_json::json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s"})),
            None
        );
        assert_eq!(source_name(&PersistentVolumeClaim::default()), None);
    }
}
