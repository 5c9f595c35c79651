//! Wiring of the reconcilers into kube-runtime controllers: watches, error policy, metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hort_crds::{BackupJob, Schedule, StorageGroup};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::{backup_job, schedule, storage_group};

/// Which namespaces the operator watches.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every namespace.
    Cluster,
    /// One namespace.
    Namespace(String),
}

impl Scope {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::Cluster => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// Runs every controller until a shutdown signal arrives.
pub async fn run(ctx: Arc<Context>, scope: Scope) {
    let client = ctx.client.clone();

    let groups = Controller::new(scope.api::<StorageGroup>(&client), watcher::Config::default());
    let secret_groups = groups.store();
    let claim_groups = groups.store();
    let groups = groups
        // Secrets and claims are watched by metadata only: their contents are never cached.
        .watches_stream(
            watcher(
                scope.api::<PartialObjectMeta<Secret>>(&client),
                watcher::Config::default(),
            )
            .touched_objects(),
            move |secret| referring_groups(&secret_groups, &secret, false),
        )
        .watches_stream(
            watcher(
                scope.api::<PartialObjectMeta<PersistentVolumeClaim>>(&client),
                watcher::Config::default(),
            )
            .touched_objects(),
            move |claim| referring_groups(&claim_groups, &claim, true),
        )
        .shutdown_on_signal()
        .run(
            |obj, ctx| instrumented("StorageGroup", ctx.clone(), storage_group::reconcile(obj, ctx)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let jobs = Controller::new(scope.api::<BackupJob>(&client), watcher::Config::default());
    let job_store = jobs.store();
    let jobs = jobs
        .watches(
            scope.api::<StorageGroup>(&client),
            watcher::Config::default(),
            move |group| {
                // A group changed: reconcile the jobs that refer to it.
                let namespace = group.namespace();
                let name = group.name_any();
                job_store
                    .state()
                    .into_iter()
                    .filter(move |job| job.namespace() == namespace && job.spec.storage_group_ref.name == name)
                    .map(|job| ObjectRef::from_obj(&*job))
            },
        )
        .shutdown_on_signal()
        .run(
            |obj, ctx| instrumented("BackupJob", ctx.clone(), backup_job::reconcile(obj, ctx)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let schedules = Controller::new(scope.api::<Schedule>(&client), watcher::Config::default())
        .owns(scope.api::<BackupJob>(&client), watcher::Config::default())
        .shutdown_on_signal()
        .run(
            |obj, ctx| instrumented("Schedule", ctx.clone(), schedule::reconcile(obj, ctx)),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    tokio::join!(groups, jobs, schedules);
}

/// The groups in `store` that refer to the Secret or claim `object` (same namespace).
fn referring_groups<K: Resource>(
    store: &Store<StorageGroup>,
    object: &PartialObjectMeta<K>,
    claim: bool,
) -> Vec<ObjectRef<StorageGroup>> {
    let namespace = object.namespace();
    let name = object.name_any();
    store
        .state()
        .into_iter()
        .filter(|group| group.namespace() == namespace && storage_group::refers_to(&group.spec, &name, claim))
        .map(|group| ObjectRef::from_obj(&*group))
        .collect()
}

/// Runs one reconcile, recording its duration and result in the metrics.
async fn instrumented(
    kind: &'static str,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile.await;
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.category(),
    };
    ctx.metrics.reconciles.with_label_values(&[kind, label]).inc();
    ctx.metrics
        .reconcile_duration
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Retries a failed reconcile after a pause; the error is logged with the object.
fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        kind = %K::kind(&()),
        name = %obj.meta().name.as_deref().unwrap_or_default(),
        namespace = %obj.meta().namespace.as_deref().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(Duration::from_secs(15))
}
