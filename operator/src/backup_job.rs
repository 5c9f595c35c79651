//! Reconciler of `BackupJob`: records the source kind and whether the job's StorageGroup is
//! ready, and keeps the job Pending until it is.

use std::sync::Arc;

use hort_crds::backup_job::BackupJob;
use hort_crds::common::Phase;
use hort_crds::storage_group::StorageGroup;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::Result;
use crate::events;
use crate::status;
use crate::storage_group;

/// Name of the condition that tells whether the job's StorageGroup accepts backups.
pub const STORAGE_GROUP_READY: &str = "StorageGroupReady";

/// Reconciles one BackupJob.
pub async fn reconcile(cached: Arc<BackupJob>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = status::namespace_of(&*cached)?;
    let Some(job) = status::fresh::<BackupJob>(&ctx.client, &namespace, &cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let mut status = job.status.clone().unwrap_or_default();
    if status.phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let groups: Api<StorageGroup> = Api::namespaced(ctx.client.clone(), &namespace);
    let group_name = &job.spec.storage_group_ref.name;
    let group = groups.get_opt(group_name).await?;
    let observation = group_readiness(group_name, &namespace, group.as_ref());

    status.phase = Phase::Pending;
    status.observed_generation = job.metadata.generation;
    status.source_kind = job.spec.source.kind();
    status.message = Some(observation.message.clone());
    let before = conditions::find(&status.conditions, STORAGE_GROUP_READY).cloned();
    conditions::set(
        &mut status.conditions,
        observation.clone(),
        job.metadata.generation,
        ctx.clock.now(),
    );
    events::on_transition(&ctx, &job, before.as_ref(), &observation).await;
    if job.status.as_ref() != Some(&status) {
        status::apply(&ctx.client, &job, &status).await?;
    }
    Ok(Action::await_change())
}

/// The `StorageGroupReady` condition for a job whose group `name` is `group`.
pub fn group_readiness(name: &str, namespace: &str, group: Option<&StorageGroup>) -> Observation {
    let Some(group) = group else {
        return Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::False,
            reason: "StorageGroupNotFound",
            message: format!("StorageGroup {name:?} (spec.storageGroupRef) not found in namespace {namespace:?}"),
        };
    };
    let conditions = group
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    match conditions::find(conditions, storage_group::READY) {
        Some(ready) if ready.status == "True" => Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::True,
            reason: "StorageGroupReady",
            message: format!("StorageGroup {name:?} is Ready"),
        },
        Some(ready) => Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::False,
            reason: "StorageGroupNotReady",
            message: format!("waiting for StorageGroup {name:?} to become Ready: {}", ready.message),
        },
        None => Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::False,
            reason: "StorageGroupNotReady",
            message: format!("waiting for StorageGroup {name:?} to be checked"),
        },
    }
}
