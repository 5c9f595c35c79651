//! The objects the populator creates for a claim (pure): the prime claim, and the restore pod
//! built by the RestoreRequest's restore code with the prime claim as its volume target.

use std::collections::BTreeMap;

use hort_crds::restore_request::{OverwritePolicy, RestoreRequestSpec, RestoreTarget, VolumeRestoreTarget};
use hort_crds::volume_restore_source::VolumeRestoreSourceSpec;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{ATTEMPT_LABEL, CLAIM_LABEL, SELECTED_NODE};
use crate::agent::pod::{self, AgentPod, AgentSettings, RepositoryAccess};
use crate::agent::restore;

/// Name of the prime claim of the claim with `uid` (as lib-volume-populator names it).
pub fn prime_name(uid: &str) -> String {
    format!("hort-populate-{uid}")
}

/// Name of attempt `attempt` of the restore pod of the claim with `uid`.
pub fn pod_name(uid: &str, attempt: u32) -> String {
    format!("hort-populate-{uid}-{attempt}")
}

/// The prime claim of `claim`: its storage class, access modes, volume mode and requested size,
/// no data source, labelled with the claim's uid and owned by it (so it goes with the claim).
/// With WaitForFirstConsumer, `node` is the node the scheduler chose for the claim, passed on
/// to the provisioner as the claim's selected node.
pub fn prime_claim(claim: &PersistentVolumeClaim, owner: OwnerReference, node: Option<&str>) -> PersistentVolumeClaim {
    let spec = claim.spec.clone().unwrap_or_default();
    let labels = [
        ("app.kubernetes.io/created-by".to_string(), "hort-operator".to_string()),
        (CLAIM_LABEL.to_string(), owner.uid.clone()),
    ];
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(prime_name(&owner.uid)),
            namespace: claim.metadata.namespace.clone(),
            labels: Some(labels.into()),
            annotations: node.map(|n| [(SELECTED_NODE.to_string(), n.to_string())].into()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes,
            storage_class_name: spec.storage_class_name,
            volume_mode: spec.volume_mode,
            resources: spec
                .resources
                .map(|r| k8s_openapi::api::core::v1::VolumeResourceRequirements {
                    requests: r.requests,
                    limits: None,
                }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The RestoreRequest spec whose restore the populator runs: the source's snapshot and paths
/// into the root of the prime claim `prime`, replacing what a failed earlier attempt left there
/// (the prime claim is the populator's alone).
pub fn restore_spec(source: &VolumeRestoreSourceSpec, prime: &str) -> RestoreRequestSpec {
    RestoreRequestSpec {
        storage_group_ref: source.storage_group_ref.clone(),
        source: source.source.clone(),
        target: RestoreTarget {
            postgres: None,
            mariadb: None,
            volume: Some(VolumeRestoreTarget {
                claim_name: prime.into(),
                storage_class_name: None,
                size: None,
                paths: source.paths.clone(),
                sub_path: String::new(),
                overwrite: OverwritePolicy::Always,
            }),
        },
        active_deadline_seconds: None,
        archive_wait_minutes: None,
        agent: None,
    }
}

/// What a restore pod is built from.
pub struct RestorePod<'a> {
    /// The source's spec.
    pub source: &'a VolumeRestoreSourceSpec,
    /// The pod's access to the group's repository ([`crate::group_access::Group::access`]).
    pub access: RepositoryAccess,
    /// The snapshot id, or `None` for the newest with the source's tags.
    pub snapshot: Option<&'a str>,
    /// The claim being populated, as the pod's owner.
    pub owner: OwnerReference,
    /// Its namespace.
    pub namespace: String,
    /// The attempt.
    pub attempt: u32,
    /// The node the pod must run on (WaitForFirstConsumer).
    pub node: Option<String>,
}

/// The restore pod of attempt `attempt`: it mounts the prime claim read-write and restores into
/// it with the agent's `restore` command.
pub fn restore_pod(settings: &AgentSettings, what: RestorePod<'_>) -> Pod {
    let uid = what.owner.uid.clone();
    let spec = restore_spec(what.source, &prime_name(&uid));
    let mut access = what.access;
    let command = restore::command(&spec, what.snapshot, &mut access)
        .expect("a restore spec with a volume target always has a command");
    let labels = BTreeMap::from([
        (CLAIM_LABEL.to_string(), uid.clone()),
        (ATTEMPT_LABEL.to_string(), what.attempt.to_string()),
    ]);
    pod::build(
        settings,
        AgentPod {
            name: pod_name(&uid, what.attempt),
            namespace: what.namespace,
            owner: what.owner,
            labels,
            command,
            repository: access,
            overrides: None,
            active_deadline_seconds: None,
            node: what.node,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use hort_protocol::{AgentCommand, Overwrite};

    use crate::group_access::Group;
    use hort_crds::storage_group::StorageGroupSpec;

    const UID: &str = "0c7e1c2a-0000-4000-8000-000000000001";

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "PersistentVolumeClaim".into(),
            name: "data".into(),
            uid: UID.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn settings() -> AgentSettings {
        AgentSettings {
            image: "hort-agent:test".into(),
            pull_policy: "Never".into(),
            retry_backoff: Duration::from_secs(10),
            default_resources: None,
            default_deadline_seconds: Some(21600),
            max_pods_per_node: None,
        }
    }

    fn source(yaml: &str) -> VolumeRestoreSourceSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_prime_claim_copies_class_modes_volume_mode_and_size_and_no_data_source() {
        let claim: PersistentVolumeClaim = serde_yaml::from_str(
            "metadata: {name: data, namespace: app}\n\
             spec: {storageClassName: fast, accessModes: [ReadWriteOnce], volumeMode: Filesystem,\n\
                    resources: {requests: {storage: 5Gi}},\n\
                    dataSourceRef: {apiGroup: hort.dev, kind: VolumeRestoreSource, name: data}}",
        )
        .unwrap();
        let prime = prime_claim(&claim, owner(), Some("node-a"));
        assert_eq!(
            prime.metadata.name.as_deref(),
            Some(format!("hort-populate-{UID}").as_str())
        );
        assert_eq!(prime.metadata.namespace.as_deref(), Some("app"));
        assert_eq!(prime.metadata.owner_references, Some(vec![owner()]));
        assert_eq!(prime.metadata.labels.as_ref().unwrap()[CLAIM_LABEL], UID);
        assert_eq!(prime.metadata.annotations.as_ref().unwrap()[SELECTED_NODE], "node-a");
        let spec = prime.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".into()]));
        assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "5Gi");
        assert!(spec.data_source_ref.is_none() && spec.data_source.is_none());
        let immediate = prime_claim(&claim, owner(), None);
        assert!(immediate.metadata.annotations.is_none());
    }

    #[test]
    fn the_restore_pod_writes_the_chosen_paths_into_the_prime_claim_on_the_selected_node() {
        let source = source("storageGroupRef: {name: s3}\nsource: {snapshotId: ab12cd34}\npaths: [www, etc/app.conf]");
        let group: StorageGroupSpec = serde_yaml::from_str(
            "targets: [{name: s3, s3: {endpoint: 'http://s3:9000', bucket: b, credentialsSecretRef: {name: s3}}}]\n\
             encryption: {keySecretRef: {name: key}}",
        )
        .unwrap();
        let pod = restore_pod(
            &settings(),
            RestorePod {
                source: &source,
                access: pod::repository_access(&group),
                snapshot: Some("ab12cd34"),
                owner: owner(),
                namespace: "app".into(),
                attempt: 2,
                node: Some("node-a".into()),
            },
        );
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some(format!("hort-populate-{UID}-2").as_str())
        );
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (labels[CLAIM_LABEL].as_str(), labels[ATTEMPT_LABEL].as_str()),
            (UID, "2")
        );
        assert_eq!(labels["hort.dev/agent-role"], "restore");
        let spec = pod.spec.unwrap();
        let claims: Vec<_> = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
            .collect();
        assert_eq!(claims, [prime_name(UID)]);
        let args = spec.containers[0].args.clone().unwrap();
        let expected = AgentCommand::Restore {
            snapshot: "ab12cd34".into(),
            target: restore::TARGET_DIR.into(),
            paths: vec!["www".into(), "etc/app.conf".into()],
            overwrite: Overwrite::Always,
            tags: vec![],
        };
        assert_eq!(args, expected.to_args());
        let node_terms = format!("{:?}", spec.affinity);
        assert!(node_terms.contains("node-a"), "{node_terms}");
    }

    #[test]
    fn a_source_on_a_shared_group_restores_through_the_groups_proxy_only() {
        let source =
            source("storageGroupRef: {kind: ClusterStorageGroup, name: shared}\nsource: {snapshotId: ab12cd34}");
        assert_eq!(
            restore_spec(&source, "prime").storage_group_ref,
            source.storage_group_ref
        );
        let shared = Group::Shared {
            name: "shared".into(),
            operator_namespace: "hort".into(),
        };
        let pod = restore_pod(
            &settings(),
            RestorePod {
                source: &source,
                access: shared.access(None),
                snapshot: Some("ab12cd34"),
                owner: owner(),
                namespace: "app".into(),
                attempt: 1,
                node: None,
            },
        );
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
        assert_eq!(
            value("HORT_REPOSITORY").as_deref(),
            Some("hort+https://hort-store-shared.hort.svc:8443/shared")
        );
        let secrets: Vec<_> = env
            .iter()
            .filter_map(|e| Some(e.value_from.as_ref()?.secret_key_ref.as_ref()?.name.clone()))
            .collect();
        assert_eq!(secrets, ["hort-tenant-shared"]);
    }

    #[test]
    fn a_source_by_tags_restores_the_newest_snapshot_with_them() {
        let source = source("storageGroupRef: {name: s3}\nsource: {tags: [web, nightly]}");
        let spec = restore_spec(&source, "prime");
        let mut access = pod::RepositoryAccess::default();
        assert_eq!(
            restore::command(&spec, None, &mut access),
            Some(AgentCommand::Restore {
                snapshot: "latest".into(),
                target: restore::TARGET_DIR.into(),
                paths: vec![],
                overwrite: Overwrite::Always,
                tags: vec!["web".into(), "nightly".into()],
            })
        );
    }
}
