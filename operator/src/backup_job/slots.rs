//! The facts of `StorageGroup.spec.maxConcurrentJobs`: which BackupJobs of a group hold a
//! slot and which wait in line before a job, read from the API server (not a cache) under one
//! lock that the reconcile keeps until the job's start is recorded, so that two reconciles
//! never give away the same slot.

use std::collections::BTreeSet;
use std::time::Duration;

use hort_crds::backup_job::BackupJob;
use hort_crds::storage_group::StorageGroup;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tokio::sync::{Mutex, MutexGuard};

use super::decide::{GroupJob, Slot, slot};
use super::{JOB_LABEL, group_readiness};
use crate::agent::{ROLE_LABEL, Role};
use crate::conditions::{self, Status};
use crate::error::Result;

/// Name of the condition that tells whether a job of a group with `maxConcurrentJobs` got a
/// slot (False, reason `WaitingForGroupSlot`, while it waits).
pub const GROUP_SLOT: &str = "GroupSlot";
/// How often a job that waits for a slot looks again (a slot frees when another job of the
/// group ends, which does not trigger this job's reconcile).
pub const SLOT_POLL: Duration = Duration::from_secs(3);

/// Held from counting the slots until the start of the job's attempt is recorded.
static LOCK: Mutex<()> = Mutex::const_new(());

/// What [`look`] found.
pub(super) struct Looked {
    /// The job's slot.
    pub slot: Slot,
    /// The group's limit, when it has one and is Ready (else the start reports the wait).
    pub limit: Option<u32>,
    /// Keep until the attempt's start is written.
    pub _guard: Option<MutexGuard<'static, ()>>,
}

/// Looks at the slot of `job`, whose first attempt has not started, in its group.
pub(super) async fn look(client: &kube::Client, namespace: &str, job: &BackupJob) -> Result<Looked> {
    let free = Looked {
        slot: Slot::Free,
        limit: None,
        _guard: None,
    };
    // A ClusterStorageGroup's tenants are held to their share by its proxy, not by slots.
    if !job.spec.storage_group_ref.kind.is_storage_group() {
        return Ok(free);
    }
    let name = &job.spec.storage_group_ref.name;
    let groups: Api<StorageGroup> = Api::namespaced(client.clone(), namespace);
    let Some(group) = groups.get_opt(name).await? else {
        return Ok(free);
    };
    let Some(limit) = group.spec.max_concurrent_jobs else {
        return Ok(free);
    };
    if group_readiness(name, namespace, Some(&group)).status != Status::True {
        return Ok(free);
    }
    let guard = LOCK.lock().await;
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{ROLE_LABEL}={}", Role::Backup.as_str());
    let with_pods: BTreeSet<String> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .iter()
        .filter_map(|p| p.labels().get(JOB_LABEL).cloned())
        .collect();
    let view = |j: &BackupJob| {
        let status = j.status.clone().unwrap_or_default();
        let started = status.attempts > 0 || status.agent_pod.is_some() || with_pods.contains(&j.name_any());
        let granted = conditions::find(&status.conditions, GROUP_SLOT).is_some_and(|c| c.status == "True");
        GroupJob {
            name: j.name_any(),
            created: j.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or_default(),
            started,
            in_line: !started && !granted,
        }
    };
    let others: Vec<GroupJob> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|j| j.spec.storage_group_ref == job.spec.storage_group_ref)
        .filter(|j| !j.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .map(view)
        .collect();
    Ok(Looked {
        slot: slot(name, Some(limit), &view(job), &others),
        limit: Some(limit),
        _guard: Some(guard),
    })
}
