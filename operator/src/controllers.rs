//! Wiring of the reconcilers into kube-runtime controllers: watches, error policy, metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hort_crds::restore_request::RestoreSource;
use hort_crds::{BackupJob, ClusterStorageGroup, RestoreRequest, Schedule, StorageGroup, Verification};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::Role;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::{backup_job, cluster_storage_group, finalizer, restore_request, schedule, storage_group, verification};

/// The label selector of the agent pods the operator creates: it never sees other pods.
pub(crate) const AGENT_PODS: &str = "app.kubernetes.io/managed-by=hort-operator";

/// The annotation `kubectl apply` writes: a whole copy of the object as last applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A controller of every `K` in `api` whose cache keeps each object without its managed
/// fields and last-applied copy ([`trim`]). Reconciles read their object afresh
/// (`status::refetch`); the cache only triggers them and finds the objects that refer to
/// another, and at tens of thousands of BackupJobs those fields are most of its memory.
fn cached<K>(api: Api<K>) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let objects = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(objects, reader)
}

/// Drops what no reconcile reads from a cached object: its managed fields and the
/// last-applied annotation.
fn trim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Which namespaces the operator watches.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every namespace.
    Cluster,
    /// One namespace.
    Namespace(String),
}

impl Scope {
    pub(crate) fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::Cluster => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// Runs every controller until a shutdown signal arrives, reconciling at most `concurrency`
/// objects of each kind at a time. ClusterStorageGroups are reconciled only with
/// [`Scope::Cluster`] ([`cluster_storage_groups`]).
pub async fn run(ctx: Arc<Context>, scope: Scope, concurrency: u16) {
    let client = ctx.client.clone();
    let config = watcher::Config::default;
    let limits = || controller::Config::default().concurrency(concurrency);

    let groups = cached(scope.api::<StorageGroup>(&client)).with_config(limits());
    let by_claim = groups.store();
    let groups = groups
        .owns(scope.api::<Pod>(&client), config().labels(AGENT_PODS))
        // Its repository Verifications (`spec.verification`).
        .owns(scope.api::<Verification>(&client), config())
        // Claims are watched by metadata only. Secrets are not watched at all (that would need
        // `list` on every Secret): a group waiting for one looks again after
        // `references::RECHECK_INTERVAL`.
        .watches_stream(
            watcher(scope.api::<PartialObjectMeta<PersistentVolumeClaim>>(&client), config()).touched_objects(),
            referrers(by_claim, |g: &StorageGroup, name| {
                storage_group::refers_to_claim(&g.spec, name)
            }),
        )
        .shutdown_on_signal()
        .run(
            |obj, ctx| instrumented(key(&*obj), ctx.clone(), storage_group::reconcile(obj, ctx)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let jobs = cached(scope.api::<BackupJob>(&client)).with_config(limits());
    let by_group = jobs.store();
    let jobs = jobs
        .owns(scope.api::<Pod>(&client), config().labels(AGENT_PODS))
        .watches(
            scope.api::<StorageGroup>(&client),
            config(),
            referrers(by_group, |j: &BackupJob, name| {
                j.spec.storage_group_ref.kind.is_storage_group() && j.spec.storage_group_ref.name == name
            }),
        )
        .shutdown_on_signal()
        .run(
            |obj, ctx| {
                let key = key(&*obj);
                let reconcile = finalizer::with_finalizer(ctx.clone(), obj, Role::Backup, backup_job::reconcile);
                instrumented(key, ctx, reconcile)
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let schedules = cached(scope.api::<Schedule>(&client))
        .with_config(limits())
        .owns(scope.api::<BackupJob>(&client), config())
        .owns(scope.api::<Verification>(&client), config())
        .owns(scope.api::<Pod>(&client), config().labels(AGENT_PODS))
        .shutdown_on_signal()
        .run(
            |obj, ctx| instrumented(key(&*obj), ctx.clone(), schedule::reconcile(obj, ctx)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let restores = snapshot_readers(&scope, &ctx, concurrency, Role::Restore, restore_request::reconcile);
    let verifications = snapshot_readers(&scope, &ctx, concurrency, Role::Verify, verification::reconcile);

    // Releases agent pods for their node slots while the controllers run (it never ends).
    let node_slots = async {
        match ctx.agent.max_pods_per_node {
            Some(limit) => crate::node_slots::run(client.clone(), scope.clone(), limit).await,
            None => std::future::pending().await,
        }
    };
    let shared = async {
        if let Scope::Cluster = scope {
            cluster_storage_groups(ctx.clone(), concurrency).await
        }
    };
    tokio::select! {
        _ = async { tokio::join!(groups, jobs, schedules, restores, verifications, shared) } => {}
        () = node_slots => {}
    }
}

/// Runs the ClusterStorageGroup controller until a shutdown signal arrives. Only for an
/// operator that watches the whole cluster: it reads Namespaces and writes Secrets in the
/// tenant namespaces. A group is reconciled again when a Namespace changes that it selects
/// (or did), when its StorageGroup in the operator's namespace changes, and when one of its
/// tenant check pods or its proxy's Deployment there does. Namespaces are watched by metadata
/// only.
pub async fn cluster_storage_groups(ctx: Arc<Context>, concurrency: u16) {
    let client = &ctx.client;
    let operator = ctx.operator_namespace.as_str();
    let config = watcher::Config::default;
    let controller = cached(Api::<ClusterStorageGroup>::all(client.clone()))
        .with_config(controller::Config::default().concurrency(concurrency));
    let (by_namespace, by_group) = (controller.store(), controller.store());
    let (by_pod, by_deployment) = (controller.store(), controller.store());
    let namespaces = watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), config()).touched_objects();
    let check_pods = format!("{AGENT_PODS},{}={}", crate::agent::ROLE_LABEL, Role::Check.as_str());
    let (app, proxy) = cluster_storage_group::proxy::APP;
    let proxies = format!("{app}={proxy}");
    controller
        .watches_stream(namespaces, move |ns: PartialObjectMeta<Namespace>| {
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            let name = ns.name_any();
            by_namespace
                .state()
                .into_iter()
                .filter(|g| cluster_storage_group::concerns(g, &name, &labels))
                .map(|g| ObjectRef::from_obj(&*g))
                .collect::<Vec<_>>()
        })
        .watches(
            Api::<StorageGroup>::namespaced(client.clone(), operator),
            config(),
            move |changed: StorageGroup| {
                let name = changed.name_any();
                by_group
                    .state()
                    .into_iter()
                    .filter(|g| g.spec.storage_group_ref.name == name)
                    .map(|g| ObjectRef::from_obj(&*g))
                    .collect::<Vec<_>>()
            },
        )
        // Not `owns`: it would look for the owner in the pod's namespace, and a
        // ClusterStorageGroup has none.
        .watches(
            Api::<Pod>::namespaced(client.clone(), operator),
            config().labels(&check_pods),
            move |pod: Pod| owning_groups(&by_pod, &pod),
        )
        // Its proxy's readiness.
        .watches(
            Api::<Deployment>::namespaced(client.clone(), operator),
            config().labels(&proxies),
            move |deployment: Deployment| owning_groups(&by_deployment, &deployment),
        )
        .shutdown_on_signal()
        .run(
            |obj, ctx| instrumented(key(&*obj), ctx.clone(), cluster_storage_group::reconcile(obj, ctx)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {})
        .await
}

/// The ClusterStorageGroups in `store` that own `object` (by uid).
fn owning_groups<O: Resource>(store: &Store<ClusterStorageGroup>, object: &O) -> Vec<ObjectRef<ClusterStorageGroup>> {
    let groups = store.state();
    object
        .owner_references()
        .iter()
        .filter(|o| o.kind == ClusterStorageGroup::kind(&()))
        .filter_map(|o| groups.iter().find(|g| g.uid().as_deref() == Some(o.uid.as_str())))
        .map(|g| ObjectRef::from_obj(&**g))
        .collect()
}

/// A kind that reads a snapshot of a group: RestoreRequest and Verification.
trait ReadsSnapshot:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Which snapshot it reads (none for a Verification of the whole repository).
    fn source(&self) -> Option<&RestoreSource>;
    /// The name of the StorageGroup of its namespace it reads from; `None` when it reads
    /// from a ClusterStorageGroup.
    fn group(&self) -> Option<&str>;
}

impl ReadsSnapshot for RestoreRequest {
    fn source(&self) -> Option<&RestoreSource> {
        Some(&self.spec.source)
    }
    fn group(&self) -> Option<&str> {
        let group = &self.spec.storage_group_ref;
        group.kind.is_storage_group().then_some(group.name.as_str())
    }
}

impl ReadsSnapshot for Verification {
    fn source(&self) -> Option<&RestoreSource> {
        self.spec.source.as_ref()
    }
    fn group(&self) -> Option<&str> {
        let group = &self.spec.storage_group_ref;
        group.kind.is_storage_group().then_some(group.name.as_str())
    }
}

/// The controller of a kind that reads snapshots: its agent pods, and the BackupJob and
/// StorageGroup each object names, trigger its reconcile, which runs behind the kind's finalizer.
async fn snapshot_readers<K, F, Fut>(scope: &Scope, ctx: &Arc<Context>, concurrency: u16, role: Role, reconcile: F)
where
    K: ReadsSnapshot,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    let client = &ctx.client;
    let config = watcher::Config::default;
    let controller = cached(scope.api::<K>(client)).with_config(controller::Config::default().concurrency(concurrency));
    let (by_job, by_group) = (controller.store(), controller.store());
    controller
        .owns(scope.api::<Pod>(client), config().labels(AGENT_PODS))
        .watches(
            scope.api::<BackupJob>(client),
            config(),
            referrers(by_job, |o: &K, name| {
                o.source()
                    .and_then(|s| s.backup_job_ref.as_ref())
                    .is_some_and(|j| j.name == name)
            }),
        )
        .watches(
            scope.api::<StorageGroup>(client),
            config(),
            referrers(by_group, |o: &K, name| o.group() == Some(name)),
        )
        .shutdown_on_signal()
        .run(
            move |obj, ctx| {
                let key = key(&*obj);
                instrumented(key, ctx.clone(), finalizer::with_finalizer(ctx, obj, role, reconcile))
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {})
        .await
}

/// A watch mapper: when an object changes, the objects in `store` of its namespace for which
/// `refers(object, changed_name)` holds are reconciled.
fn referrers<K, O>(store: Store<K>, refers: impl Fn(&K, &str) -> bool) -> impl Fn(O) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    O: Resource,
{
    move |changed| {
        let namespace = changed.namespace();
        let name = changed.name_any();
        store
            .state()
            .into_iter()
            .filter(|obj| obj.namespace() == namespace && refers(obj, &name))
            .map(|obj| ObjectRef::from_obj(&*obj))
            .collect()
    }
}

/// Identifies an object in the metrics and the retry backoff: `Kind/namespace/name`.
pub(crate) struct Key {
    kind: &'static str,
    object: String,
}

pub(crate) fn key<K: Resource<DynamicType = ()>>(obj: &K) -> Key {
    let kind = match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    };
    Key {
        kind,
        object: format!(
            "{kind}/{}/{}",
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default()
        ),
    }
}

/// Runs one reconcile, recording its duration and result in the metrics; a success resets the
/// object's retry backoff.
pub(crate) async fn instrumented(
    key: Key,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile.await;
    let label = match &result {
        Ok(_) => {
            ctx.backoff.succeeded(&key.object);
            "success"
        }
        Err(e) => e.category(),
    };
    ctx.metrics.reconciles.with_label_values(&[key.kind, label]).inc();
    ctx.metrics
        .reconcile_duration
        .with_label_values(&[key.kind])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Retries a failed reconcile: at once after a write conflict; otherwise after a delay that
/// doubles with each consecutive failure of the object (see [`Backoff`](crate::backoff::Backoff)).
pub(crate) fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = obj.meta().name.as_deref().unwrap_or_default();
    let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
    if error.is_conflict() {
        // Another write came first; retry at once from a fresh read.
        tracing::debug!(kind = %K::kind(&()), %name, %namespace, "status write conflicted; retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    let delay = ctx.backoff.failed(&key(&*obj).object);
    tracing::warn!(kind = %K::kind(&()), %name, %namespace, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_spec_status_labels_and_other_annotations_only() {
        let mut job: BackupJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
            "metadata": {"name": "j", "namespace": "shop", "labels": {"hort.dev/schedule": "nightly"},
                         "annotations": {LAST_APPLIED: "{\"a whole copy\": true}", "team": "shop"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                                            "fieldsV1": {"f:spec": {}}}]},
            "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        let before = job.clone();
        trim(&mut job);
        assert_eq!(job.metadata.managed_fields, None);
        assert_eq!(
            job.annotations().iter().collect::<Vec<_>>(),
            [(&"team".to_string(), &"shop".to_string())]
        );
        assert_eq!(
            (job.spec, job.status, job.metadata.labels),
            (before.spec, before.status, before.metadata.labels)
        );
    }
}
