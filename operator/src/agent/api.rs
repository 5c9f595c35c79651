//! The API calls around agent pods: create them (and the ServiceAccount they run as), find
//! an object's pods, delete them, and find the node that mounts a claim.

use std::collections::BTreeMap;

use hort_crds::common::Progress;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodSchedulingGate, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, LogParams, Patch, PatchParams, PostParams};

use super::outcome::{created, progress_from_log};
use super::pod::SERVICE_ACCOUNT;
use super::{ROLE_LABEL, Role};

/// Whether `claim` can be mounted on one node only (ReadWriteOnce, ReadWriteOncePod).
fn single_node(claim: &PersistentVolumeClaim) -> bool {
    let modes = claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    !modes.is_empty() && modes.iter().all(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod")
}

/// The node of a running pod in `namespace` that mounts claim `claim` (if any), if the claim
/// can be mounted on one node only: the agent pod must run there. `None` for no claim, a claim
/// that several nodes can mount (the agent pod's node selector then applies), or one that
/// does not exist yet.
pub async fn node_mounting(
    client: &kube::Client,
    namespace: &str,
    claim: Option<&str>,
) -> kube::Result<Option<String>> {
    let Some(claim) = claim else {
        return Ok(None);
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    if !claims.get_opt(claim).await?.as_ref().is_some_and(single_node) {
        return Ok(None);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let running = pods
        .list(&kube::api::ListParams::default().fields("status.phase=Running"))
        .await?;
    Ok(running.items.into_iter().find_map(|pod| {
        let spec = pod.spec?;
        let mounts_claim = spec.volumes.unwrap_or_default().iter().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == claim)
        });
        if mounts_claim { spec.node_name } else { None }
    }))
}

/// The progress of running agent pod `name`, from the newest progress line in the end of its
/// log; `None` when there is none yet or the log cannot be read (then the caller keeps what it
/// showed before).
pub async fn progress(pods: &Api<Pod>, name: &str) -> Option<Progress> {
    let tail = LogParams {
        tail_lines: Some(20),
        ..LogParams::default()
    };
    match pods.logs(name, &tail).await {
        Ok(log) => progress_from_log(&log),
        Err(error) => {
            tracing::debug!(%error, pod = %name, "reading the agent's progress failed");
            None
        }
    }
}

/// The last 80 lines of the log of `container` in pod `name` (like the kubelet's fallback
/// termination message; the caller keeps their last bytes); empty when it cannot be read.
pub async fn log_tail(pods: &Api<Pod>, name: &str, container: &str) -> String {
    let tail = LogParams {
        container: Some(container.into()),
        tail_lines: Some(80),
        ..LogParams::default()
    };
    match pods.logs(name, &tail).await {
        Ok(log) => log,
        Err(error) => {
            tracing::debug!(%error, pod = %name, container, "reading the log failed");
            String::new()
        }
    }
}

/// Creates a pod; one that exists already (created by an earlier reconcile whose status write
/// was lost) is fine, as pod names are derived from what they do.
pub async fn create(pods: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
    ensure_service_account(pods, pod.metadata.namespace.as_deref().unwrap_or_default()).await?;
    match pods.create(&PostParams::default(), pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The scheduling gate that holds a BackupJob's agent pod back while the job's pre hooks run.
pub const PRE_HOOKS_GATE: &str = "hort.dev/pre-hooks";

/// `pod`, held back from scheduling by [`PRE_HOOKS_GATE`] until [`release`]d.
pub fn gated(mut pod: Pod) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        // Beside the node-slot gate, if the pod has it (crate::node_slots).
        spec.scheduling_gates
            .get_or_insert_with(Vec::new)
            .push(PodSchedulingGate {
                name: PRE_HOOKS_GATE.into(),
            });
    }
    pod
}

/// Whether `pod` is held back by [`PRE_HOOKS_GATE`].
pub fn is_gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.name == PRE_HOOKS_GATE))
}

/// Lets the [`gated`] pod `name` be scheduled (removes only [`PRE_HOOKS_GATE`]: a node-slot
/// gate stays until `node_slots` releases it).
pub async fn release(pods: &Api<Pod>, name: &str) -> kube::Result<()> {
    let remove = serde_json::json!({"spec": {"schedulingGates": [{"$patch": "delete", "name": PRE_HOOKS_GATE}]}});
    pods.patch(name, &PatchParams::default(), &Patch::Strategic(remove))
        .await
        .map(|_| ())
}

/// Creates the agents' ServiceAccount in `namespace` unless it exists (pods naming a missing
/// ServiceAccount are refused by the API server).
async fn ensure_service_account(pods: &Api<Pod>, namespace: &str) -> kube::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(pods.clone().into_client(), namespace);
    if accounts.get_opt(SERVICE_ACCOUNT).await?.is_some() {
        return Ok(());
    }
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(SERVICE_ACCOUNT.into()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), "hort-agent".to_string()),
                ("app.kubernetes.io/managed-by".to_string(), "hort-operator".to_string()),
            ])),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The pods of `role` owned by the object with `owner_uid`, newest first.
pub async fn owned(pods: &Api<Pod>, owner_uid: Option<&str>, role: Role) -> kube::Result<Vec<Pod>> {
    let mut owned: Vec<Pod> = pods
        .list(&kube::api::ListParams::default().labels(&format!("{ROLE_LABEL}={}", role.as_str())))
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(o.uid.as_str()) == owner_uid)
        })
        .collect();
    owned.sort_by_key(|p| std::cmp::Reverse((created(p), p.metadata.name.clone())));
    Ok(owned)
}

/// Deletes a pod; one already gone is fine.
pub async fn delete(pods: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match pods.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(modes: &[&str]) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}, "spec": {"accessModes": modes}})).unwrap()
    }

    #[test]
    fn only_single_node_claims_pin_the_agent_pod() {
        assert!(single_node(&claim(&["ReadWriteOnce"])));
        assert!(single_node(&claim(&["ReadWriteOncePod"])));
        assert!(!single_node(&claim(&["ReadWriteMany"])));
        assert!(!single_node(&claim(&["ReadWriteOnce", "ReadOnlyMany"])));
        assert!(!single_node(&claim(&[])), "unknown: no pin");
    }
}
