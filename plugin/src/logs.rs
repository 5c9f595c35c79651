//! `kubectl hort logs NAME`: the log of the agent pod of a BackupJob or RestoreRequest,
//! found from its `status.agentPod`.

use hort_crds::{BackupJob, RestoreRequest};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, Client};

use crate::error::{PluginError, Result, is_not_found};

/// Which object the name belongs to, and its agent pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPodOf {
    /// `BackupJob` or `RestoreRequest`.
    pub kind: &'static str,
    /// The agent pod of the current or last attempt, if one was started.
    pub pod: Option<String>,
    /// The object's phase, for messages.
    pub phase: String,
}

/// The message when `of` has no agent pod (yet, or any more).
pub fn no_pod_message(namespace: &str, name: &str, of: &AgentPodOf, pod_deleted: bool) -> String {
    match (&of.pod, pod_deleted) {
        (Some(pod), true) => format!(
            "the agent pod {pod} of {} {namespace}/{name} is gone (agent pods are deleted when an attempt ends): \
             its outcome is in `kubectl describe {} {name} -n {namespace}` and `kubectl hort status -n {namespace}`",
            of.kind,
            of.kind.to_lowercase()
        ),
        _ => format!(
            "{} {namespace}/{name} has no agent pod yet (phase {}): wait for it to start, or see why with \
             `kubectl hort status -n {namespace}`",
            of.kind, of.phase
        ),
    }
}

async fn find(client: &Client, namespace: &str, name: &str) -> Result<AgentPodOf> {
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), namespace);
    match jobs.get(name).await {
        Ok(job) => {
            let status = job.status.unwrap_or_default();
            return Ok(AgentPodOf {
                kind: "BackupJob",
                pod: status.agent_pod,
                phase: format!("{:?}", status.phase),
            });
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(PluginError::api(format!("reading BackupJob {namespace}/{name}"), e)),
    }
    let restores: Api<RestoreRequest> = Api::namespaced(client.clone(), namespace);
    match restores.get(name).await {
        Ok(restore) => {
            let status = restore.status.unwrap_or_default();
            Ok(AgentPodOf {
                kind: "RestoreRequest",
                pod: status.agent_pod,
                phase: format!("{:?}", status.phase),
            })
        }
        Err(e) if is_not_found(&e) => Err(PluginError::NotFound {
            kind: "BackupJob or RestoreRequest",
            namespace: namespace.into(),
            name: name.into(),
            hint: format!("list them with `kubectl hort status -n {namespace}`"),
        }),
        Err(e) => Err(PluginError::api(
            format!("reading RestoreRequest {namespace}/{name}"),
            e,
        )),
    }
}

/// Prints the agent pod's log.
pub async fn run(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let of = find(client, namespace, name).await?;
    let Some(pod) = of.pod.clone() else {
        return Err(PluginError::Agent(no_pod_message(namespace, name, &of, false)));
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = LogParams {
        container: Some("agent".into()),
        ..LogParams::default()
    };
    match pods.logs(&pod, &params).await {
        Ok(log) => crate::output::emit(&log),
        Err(e) if is_not_found(&e) => Err(PluginError::Agent(no_pod_message(namespace, name, &of, true))),
        Err(e) => Err(PluginError::api(format!("reading the log of pod {namespace}/{pod}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_whether_the_pod_is_gone_or_not_started() {
        let gone = AgentPodOf {
            kind: "BackupJob",
            pod: Some("j-backup-1".into()),
            phase: "Succeeded".into(),
        };
        let text = no_pod_message("demo", "j", &gone, true);
        assert!(
            text.starts_with("the agent pod j-backup-1 of BackupJob demo/j is gone"),
            "{text}"
        );
        assert!(text.contains("kubectl describe backupjob j -n demo"), "{text}");
        let pending = AgentPodOf {
            kind: "RestoreRequest",
            pod: None,
            phase: "Pending".into(),
        };
        let text = no_pod_message("demo", "r", &pending, false);
        assert!(
            text.contains("RestoreRequest demo/r has no agent pod yet (phase Pending)"),
            "{text}"
        );
    }
}
