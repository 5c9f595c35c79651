//! The short-lived agent pod that reads a storage group's repository for `kubectl hort`
//! (`snapshots`, `ls`, `cat`, `download`, `diff`, `dr`) and the overview page's snapshot
//! browser (pure builder).
//!
//! The pod is the operator's own agent pod for the group, so the repository's Secrets reach
//! it only as references, exactly as for check pods: nothing secret passes through whoever
//! starts it. It idles (`sleep`) until its commands have run in it by exec, and ends by
//! itself after [`IDLE_SECONDS`] should its creator be gone before it deletes the pod.

use std::collections::BTreeMap;

use hort_crds::StorageGroup;
use hort_protocol::AgentCommand;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use super::pod::{AgentPod, AgentSettings, build, repository_access};

/// Seconds a browse pod lives at most.
pub const IDLE_SECONDS: i64 = 3600;
/// Label on browse pods: what created them (`kubectl-hort`, `hort-overview`).
pub const CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";

/// Image and pull policy of agent pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentImage {
    /// The image.
    pub image: String,
    /// Its pull policy.
    pub pull_policy: String,
}

/// A pod name for reading `group`'s repository, unique by `suffix`.
pub fn pod_name(group: &str, suffix: &str) -> String {
    let group: String = group.chars().take(200).collect();
    format!("{}-browse-{suffix}", group.trim_end_matches('-'))
}

/// Five characters that make a pod name unique enough for one user's runs.
pub fn suffix() -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id()) << 64;
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = seed;
    (0..5)
        .map(|_| {
            let c = alphabet[(n % alphabet.len() as u128) as usize] as char;
            n /= alphabet.len() as u128;
            c
        })
        .collect()
}

/// The pod that reads `group`'s repository: the operator's agent pod for `command` (its
/// environment, volumes, security and the group's `agent` overrides), idling so that the
/// commands can run in it by exec; owned by the group without being its controller, and
/// labelled with `created_by`.
pub fn browse_pod(
    group: &StorageGroup,
    image: &AgentImage,
    name: &str,
    created_by: &str,
    command: AgentCommand,
) -> Pod {
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
            labels: BTreeMap::from([(CREATED_BY_LABEL.to_string(), created_by.to_string())]),
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
            "kubectl-hort",
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
        let secret = password.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref());
        assert_eq!(secret.map(|s| s.name.as_str()), Some("repo-key"));
        assert!(
            env.iter()
                .all(|e| e.value.as_deref().is_none_or(|v| !v.contains("s3-creds")))
        );
    }

    #[test]
    fn names_are_bounded_and_suffixes_differ_in_time() {
        assert_eq!(pod_name(&"g".repeat(215), "x").len(), 200 + "-browse-x".len());
        let first = suffix();
        assert_eq!(first.len(), 5);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_ne!(first, suffix());
    }
}
