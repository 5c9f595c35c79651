//! Reconciler of `ClusterStorageGroup`: shares a StorageGroup of the operator's namespace with
//! the namespaces `spec.allowedNamespaces` selects. Each selected namespace gets its own
//! repository under `tenants/<namespace>/` of the group's targets, created and checked by a
//! check pod in the operator's namespace, and a Secret `hort-tenant-<group>` in its own
//! namespace with its derived repository password and the CA of the group's proxy. The proxy
//! ([`proxy`]: Deployment and Service `hort-store-<group>`, certificates from [`certs`]) runs
//! in the operator's namespace and serves the tenants' agents.
//!
//! Staged: [`proxy::invalid_name`] (pure) → [`dereference`] (the StorageGroup, the tenant root
//! secret, the selected namespaces) → [`apply::proxy`] → [`tenants::plan`] (pure) →
//! [`apply::tenants`] (Secrets and pods) → status. Runs only when the operator watches the
//! whole cluster (`controllers::cluster_storage_groups`).

pub mod apply;
pub mod build;
pub mod certs;
pub mod key;
pub mod proxy;
pub mod selector;
pub mod tenants;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hort_crds::{ClusterStorageGroup, StorageGroup};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::conditions::{self, Observation, Status};
use crate::context::{Context, FIELD_MANAGER};
use crate::error::Result;
use crate::events;
use crate::references::RECHECK_INTERVAL;
use crate::storage_group::READY;
use key::RootSecret;

/// What the group refers to, read and checked.
#[derive(Debug)]
pub struct Dereferenced {
    /// The shared StorageGroup.
    pub storage_group: StorageGroup,
    /// The tenant root secret.
    pub root: RootSecret,
    /// The namespaces `spec.allowedNamespaces` selects, in name order (not those being
    /// deleted).
    pub selected: Vec<String>,
}

/// Reconciles one ClusterStorageGroup: reads what it refers to, keeps its proxy and each
/// selected namespace's password Secret and repository, and records `status.tenants` and
/// `Ready` (False with reason `ProxyNotReady` while all else is ready but the proxy is not). A
/// group whose name cannot make its proxy's Service name gets nothing but that `Ready`.
pub async fn reconcile(cached: Arc<ClusterStorageGroup>, ctx: Arc<Context>) -> Result<Action> {
    let groups: Api<ClusterStorageGroup> = Api::all(ctx.client.clone());
    let Some(group) = groups.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let now = ctx.clock.now();
    let mut status = group.status.clone().unwrap_or_default();
    status.observed_generation = group.metadata.generation;
    let found = match proxy::invalid_name(&group.name_any()) {
        Some(invalid) => Err(invalid),
        None => dereference(&ctx, &group).await?,
    };
    let (observation, requeue) = match found {
        // What was recorded stays: a repository id is never forgotten for a passing problem.
        Err(blocked) => (blocked, RECHECK_INTERVAL),
        Ok(found) => {
            let proxy = apply::proxy(&ctx, &group, &found, now).await?;
            let plan = apply::tenants(&ctx, &group, &found, &proxy.ca, now).await?;
            let ready = group_ready(&found.storage_group);
            let name = &group.spec.storage_group_ref.name;
            let tenants = tenants::readiness(name, ready, &plan.tenants, &plan.failing);
            let observation = proxy::with_proxy(tenants, proxy.ready);
            status.tenant_count = Some(plan.tenants.iter().filter(|t| t.repository_id.is_some()).count() as u32);
            status.tenants = plan.tenants;
            (observation, plan.requeue)
        }
    };
    events::set_condition(&ctx, &group, &mut status.conditions, observation, now).await;
    if group.status.as_ref() != Some(&status) {
        let body = serde_json::json!({
            "apiVersion": ClusterStorageGroup::api_version(&()),
            "kind": ClusterStorageGroup::kind(&()),
            "metadata": {"resourceVersion": group.meta().resource_version},
            "status": status,
        });
        groups
            .patch_status(
                &group.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await?;
    }
    Ok(Action::requeue(requeue))
}

/// Reads the StorageGroup, the tenant root secret and the selected namespaces; the `Ready`
/// condition that names the first one that is missing or unusable otherwise.
pub async fn dereference(ctx: &Context, group: &ClusterStorageGroup) -> Result<Result<Dereferenced, Observation>> {
    let not_ready = |reason, message| Observation {
        type_: READY,
        status: Status::False,
        reason,
        message,
    };
    let operator = &ctx.operator_namespace;
    let name = &group.spec.storage_group_ref.name;
    let groups: Api<StorageGroup> = Api::namespaced(ctx.client.clone(), operator);
    let Some(storage_group) = groups.get_opt(name).await? else {
        return Ok(Err(not_ready(
            "StorageGroupNotFound",
            format!(
                "StorageGroup {name:?} (spec.storageGroupRef.name) not found in the operator's namespace {operator:?}"
            ),
        )));
    };
    let reference = &group.spec.tenant_key_secret_ref;
    let secrets = Api::namespaced(ctx.client.clone(), operator);
    let root = match key::read(secrets.get_opt(&reference.name).await?.as_ref(), reference) {
        Ok(root) => root,
        Err(problem) => return Ok(Err(not_ready(problem.reason(), problem.to_string()))),
    };
    let selector = &group.spec.allowed_namespaces;
    if let Err(invalid) = selector::validate(selector) {
        return Ok(Err(not_ready("InvalidSelector", invalid.to_string())));
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let mut selected: Vec<String> = namespaces
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .filter(|ns| selector::matches(selector, ns.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .map(|ns| ns.name_any())
        .collect();
    selected.sort();
    Ok(Ok(Dereferenced {
        storage_group,
        root,
        selected,
    }))
}

/// Whether the StorageGroup is Ready; its `Ready` message when it is not.
pub fn group_ready(storage_group: &StorageGroup) -> Result<(), String> {
    let conditions = storage_group
        .status
        .as_ref()
        .map(|s| &s.conditions[..])
        .unwrap_or_default();
    match conditions::find(conditions, READY) {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(c.message.clone()),
        None => Err("it has not been checked yet".into()),
    }
}

/// The StorageGroup's `checkIntervalSeconds`, after which each tenant repository is checked
/// again.
pub fn check_interval(storage_group: &StorageGroup) -> Duration {
    Duration::from_secs(storage_group.spec.check_interval_seconds.into())
}

/// Whether a change of namespace `name` (with `labels`) concerns `group`: it is selected now
/// or was before.
pub fn concerns(group: &ClusterStorageGroup, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let selector = &group.spec.allowed_namespaces;
    let selected = selector::validate(selector).is_ok() && selector::matches(selector, labels);
    let recorded = group
        .status
        .as_ref()
        .is_some_and(|s| s.tenants.iter().any(|t| t.namespace == name));
    selected || recorded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_concerns_the_groups_that_select_it_now_or_did_before() {
        let group: ClusterStorageGroup = serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: ClusterStorageGroup\nmetadata: {name: shared}\n\
             spec: {storageGroupRef: {name: s3}, allowedNamespaces: {matchLabels: {backups: shared}},\n\
                    tenantKeySecretRef: {name: root, key: secret}}\n\
             status: {tenants: [{namespace: old}]}",
        )
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(concerns(&group, "team-a", &labels(&[("backups", "shared")])));
        assert!(!concerns(&group, "team-b", &labels(&[])));
        assert!(concerns(&group, "old", &labels(&[])), "it leaves the group's status");
    }

    #[test]
    fn a_storage_group_is_ready_only_with_its_ready_condition_true() {
        let mut sg: StorageGroup = serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: StorageGroup\nmetadata: {name: s3, namespace: hort-system}\n\
             spec: {targets: [{name: a, pvc: {claimName: a}}], encryption: {keySecretRef: {name: k}}}",
        )
        .unwrap();
        assert_eq!(group_ready(&sg), Err("it has not been checked yet".into()));
        sg.status = serde_yaml::from_str(
            "conditions: [{type: Ready, status: 'False', reason: TargetsUnhealthy, message: 0 of 1 targets healthy,\n\
                           lastTransitionTime: '2026-12-01T12:00:00Z'}]",
        )
        .unwrap();
        assert_eq!(group_ready(&sg), Err("0 of 1 targets healthy".into()));
        sg.status.as_mut().unwrap().conditions[0].status = "True".into();
        assert_eq!(group_ready(&sg), Ok(()));
    }
}
