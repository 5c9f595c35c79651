//! The short-lived agent pod that reads a storage group's repository for `snapshots`, `ls`,
//! `cat` and `download` (pure builder), and the agent image it runs.
//!
//! The pod is built with the operator's own builders from the StorageGroup's spec, so the
//! repository's Secrets reach it only as references, exactly as for the operator's check
//! pods: nothing secret passes through this machine. It idles (`sleep`) until the plugin has
//! run its commands in it by exec, and ends by itself after [`IDLE_SECONDS`] should the
//! plugin be killed before it deletes the pod.

use std::collections::BTreeMap;

use hort_crds::StorageGroup;
use hort_operator::agent::pod::{AgentPod, AgentSettings, build, repository_access};
use hort_protocol::AgentCommand;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// Seconds a browse pod lives at most.
pub const IDLE_SECONDS: i64 = 3600;
/// Label on browse pods: what created them.
pub const CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";
/// The agent image when neither `--agent-image` nor the operator's Deployment names one: the
/// chart's default for this release.
pub const DEFAULT_IMAGE: &str = concat!("hort-agent:", env!("CARGO_PKG_VERSION"));
/// The operator's variable that names the agent image.
const IMAGE_VARIABLE: &str = "HORT_AGENT_IMAGE";
/// The operator's variable that names the agent image's pull policy.
const PULL_POLICY_VARIABLE: &str = "HORT_AGENT_IMAGE_PULL_POLICY";

/// Image and pull policy of agent pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentImage {
    /// The image.
    pub image: String,
    /// Its pull policy.
    pub pull_policy: String,
}

/// The agent image the operator of `deployments` runs (the chart's operator Deployment sets
/// it in the environment of its container), if one of them names it.
pub fn image_of_operator(deployments: &[Deployment]) -> Option<AgentImage> {
    deployments.iter().find_map(|d| {
        let containers = &d.spec.as_ref()?.template.spec.as_ref()?.containers;
        containers.iter().find_map(|c| {
            let env = c.env.as_ref()?;
            let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
            Some(AgentImage {
                image: value(IMAGE_VARIABLE)?,
                pull_policy: value(PULL_POLICY_VARIABLE).unwrap_or_else(|| "IfNotPresent".into()),
            })
        })
    })
}

/// A pod name for reading `group`'s repository, unique by `suffix`.
pub fn pod_name(group: &str, suffix: &str) -> String {
    let group: String = group.chars().take(200).collect();
    format!("{}-browse-{suffix}", group.trim_end_matches('-'))
}

/// The pod that reads `group`'s repository: the operator's agent pod for `command` (its
/// environment, volumes, security and the group's `agent` overrides), idling so that the
/// plugin can exec the command; owned by the group without being its controller.
pub fn browse_pod(group: &StorageGroup, image: &AgentImage, name: &str, command: AgentCommand) -> Pod {
    let settings = AgentSettings {
        image: image.image.clone(),
        pull_policy: image.pull_policy.clone(),
        retry_backoff: std::time::Duration::ZERO,
        default_resources: None,
        default_deadline_seconds: Some(IDLE_SECONDS),
        // Browse pods are not held for a node slot: they are counted once bound.
        max_pods_per_node: None,
    };
    let owner = OwnerReference {
        api_version: StorageGroup::api_version(&()).into_owned(),
        kind: StorageGroup::kind(&()).into_owned(),
        name: group.name_any(),
        uid: group.uid().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    };
    let mut pod = build(
        &settings,
        AgentPod {
            name: name.into(),
            namespace: group.namespace().unwrap_or_default(),
            owner,
            labels: BTreeMap::from([(CREATED_BY_LABEL.to_string(), "kubectl-hort".to_string())]),
            command,
            repository: repository_access(&group.spec),
            overrides: group.spec.agent.as_ref(),
            active_deadline_seconds: Some(IDLE_SECONDS),
            node: None,
        },
    );
    let container = &mut pod.spec.as_mut().expect("built with a spec").containers[0];
    container.command = Some(vec!["sleep".into(), IDLE_SECONDS.to_string()]);
    container.args = None;
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_is_the_operators_agent_pod_idling_with_secrets_by_reference() {
        let group: StorageGroup = serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: StorageGroup\nmetadata: {name: s3, namespace: demo, uid: g1}\n\
             spec: {targets: [{name: a, s3: {endpoint: 'http://s3:9000', bucket: bkt, credentialsSecretRef: {name: s3-creds}}}],\n\
               encryption: {keySecretRef: {name: repo-key}}, agent: {priorityClassName: low}}",
        )
        .unwrap();
        let image = AgentImage {
            image: "hort-agent:test".into(),
            pull_policy: "Never".into(),
        };
        let pod = browse_pod(
            &group,
            &image,
            &pod_name("s3", "x1"),
            AgentCommand::Snapshots { tags: vec![] },
        );
        assert_eq!(pod.metadata.name.as_deref(), Some("s3-browse-x1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("demo"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["hort.dev/agent-role"], "browse");
        assert_eq!(labels[CREATED_BY_LABEL], "kubectl-hort");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("StorageGroup", "g1", None)
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(IDLE_SECONDS));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("low"),
            "the group's overrides apply"
        );
        assert_eq!(spec.automount_service_account_token, Some(false));
        let agent = &spec.containers[0];
        assert_eq!(agent.image.as_deref(), Some("hort-agent:test"));
        assert_eq!(
            agent.command.as_deref(),
            Some(&["sleep".to_string(), "3600".into()][..])
        );
        let env = agent.env.as_ref().unwrap();
        let password = env.iter().find(|e| e.name == "HORT_PASSWORD").unwrap();
        assert!(password.value.is_none(), "the password only by reference");
        assert_eq!(
            password
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "repo-key"
        );
        assert!(
            env.iter()
                .all(|e| e.value.as_deref().is_none_or(|v| !v.contains("s3-creds")))
        );
    }

    #[test]
    fn the_image_comes_from_the_operators_deployment() {
        let deployment: Deployment = serde_yaml::from_str(
            "metadata: {name: hort-operator}\nspec:\n  selector: {}\n  template:\n    spec:\n      containers:\n\
             \x20       - name: operator\n          env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}},\n\
             \x20           {name: HORT_AGENT_IMAGE, value: 'registry/hort-agent:0.1.0'}, {name: HORT_AGENT_IMAGE_PULL_POLICY, value: Always}]",
        )
        .unwrap();
        assert_eq!(
            image_of_operator(&[deployment]),
            Some(AgentImage {
                image: "registry/hort-agent:0.1.0".into(),
                pull_policy: "Always".into()
            })
        );
        assert_eq!(image_of_operator(&[]), None);
        assert_eq!(pod_name(&"g".repeat(215), "x").len(), 200 + "-browse-x".len());
    }
}
