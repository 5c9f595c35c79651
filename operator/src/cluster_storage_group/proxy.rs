//! The proxy of a ClusterStorageGroup (pure): the `hort-store` Deployment in the operator's
//! namespace that serves the tenants' repositories over HTTPS, its Service
//! `hort-store-<group>` (port [`PROXY_PORT`]) and the Secret with its certificates; when the
//! group's name can make their names; and whether the proxy is ready.
//!
//! Tenant agent pods reach it at `hort-store-<group>.<operator namespace>.svc:8443` and check
//! its certificate against key [`CA_KEY`](super::build::CA_KEY) of their tenant Secret.

use std::collections::BTreeMap;

use hort_crds::{ClusterStorageGroup, StorageGroup};
use hort_protocol::env;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, KeyToPath, PodAffinity, PodAffinityTerm,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, Secret, SecretVolumeSource, Service,
    ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use super::certs::{self, ProxyTls};
use crate::agent::pod::{self, AgentSettings, NON_ROOT_USER, SPOOL_DIR};
use crate::conditions::{Observation, Status};
use crate::storage_group::READY;

/// Port of the proxy's Service and container (HTTPS).
pub const PROXY_PORT: u16 = 8443;
/// Name of that port.
pub const PORT_NAME: &str = "https";
/// The ServiceAccount proxy pods run as (created by the chart in the operator's namespace,
/// with `tokenreviews create` and `get` on ClusterStorageGroups and Namespaces).
pub const SERVICE_ACCOUNT: &str = "hort-store";
/// The proxy binary in the agent image.
pub const COMMAND: &str = "/usr/local/bin/hort-store";
/// Label `app.kubernetes.io/name` of the proxy's objects and pods, and its value.
pub const APP: (&str, &str) = ("app.kubernetes.io/name", "hort-store");
/// Label `app.kubernetes.io/instance` of the proxy's objects and pods: the group's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Annotation of the proxy's pod template: a hash of its certificates, so that new ones roll
/// the pods.
pub const TLS_HASH_ANNOTATION: &str = "hort.dev/tls-hash";
/// Where the proxy's certificate and key are mounted.
pub const TLS_DIR: &str = "/etc/hort-store/tls";
/// Name of the proxy's container.
pub const CONTAINER: &str = "hort-store";
/// Longest group name: `hort-store-` and it must fit a DNS-1035 label (63 characters).
pub const MAX_NAME: usize = 63 - SERVICE_PREFIX.len();
/// Start of the proxy's Service (and Deployment) name.
const SERVICE_PREFIX: &str = "hort-store-";
/// Label on the operator's own objects, and its value.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "hort-operator");

/// Name of the proxy's Service and Deployment of group `group`: `hort-store-<group>`.
pub fn proxy_service_name(group: &str) -> String {
    format!("{SERVICE_PREFIX}{group}")
}

/// Name of the Secret with the proxy's certificates: `hort-store-<group>-tls`.
pub fn tls_secret_name(group: &str) -> String {
    format!("{}-tls", proxy_service_name(group))
}

/// The DNS names the proxy of `group` is reached under, from the operator's namespace
/// `namespace`: `<service>.<namespace>.svc` first.
pub fn dns_names(group: &str, namespace: &str) -> Vec<String> {
    let service = proxy_service_name(group);
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
    ]
}

/// The `Ready` condition of a group whose name cannot make its proxy's Service name (a
/// DNS-1035 label of at most 63 characters); `None` if it can.
pub fn invalid_name(group: &str) -> Option<Observation> {
    let observation = |reason, message| Observation {
        type_: READY,
        status: Status::False,
        reason,
        message,
    };
    if group.len() > MAX_NAME {
        return Some(observation(
            "NameTooLong",
            format!(
                "metadata.name {group:?} has {} characters; at most {MAX_NAME} make the name of the group's proxy \
                 Service {SERVICE_PREFIX}<name> (a DNS-1035 label of at most 63): recreate the group with a shorter name",
                group.len()
            ),
        ));
    }
    let allowed = group
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if group.is_empty() || !allowed || !group.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some(observation(
            "InvalidName",
            format!(
                "metadata.name {group:?} cannot make the name of the group's proxy Service {SERVICE_PREFIX}<name>, a \
                 DNS-1035 label: use at most {MAX_NAME} lowercase letters, digits and '-', ending with a letter or \
                 digit"
            ),
        ));
    }
    None
}

/// Labels that select the proxy pods of `group`.
pub fn selector(group: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(APP.0.into(), APP.1.into()), (INSTANCE_LABEL.into(), group.into())])
}

/// Metadata of one of the proxy's objects: in `namespace`, owned by the group, labelled.
fn metadata(group: &ClusterStorageGroup, name: String, namespace: &str) -> ObjectMeta {
    let mut labels = selector(&group.name_any());
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.into()),
        labels: Some(labels),
        owner_references: Some(vec![owner(group)]),
        ..ObjectMeta::default()
    }
}

fn owner(group: &ClusterStorageGroup) -> OwnerReference {
    group
        .controller_owner_ref(&())
        .expect("a stored object has a name and uid")
}

/// The Secret `hort-store-<group>-tls` in `namespace` with the proxy's certificates.
pub fn tls_secret(group: &ClusterStorageGroup, namespace: &str, tls: &ProxyTls) -> Secret {
    Secret {
        metadata: metadata(group, tls_secret_name(&group.name_any()), namespace),
        type_: Some("Opaque".into()),
        data: Some(tls.to_data()),
        ..Secret::default()
    }
}

/// A short hash of the proxy's certificates, for [`TLS_HASH_ANNOTATION`].
pub fn tls_hash(tls: &ProxyTls) -> String {
    let mut hasher = blake3::Hasher::new();
    for (key, value) in tls.to_data() {
        hasher.update(key.as_bytes()).update(&[0]).update(&value.0).update(&[0]);
    }
    hasher.finalize().to_hex()[..16].to_string()
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// What the proxy's Deployment is made from.
pub struct ProxyDeployment<'a> {
    /// The group.
    pub group: &'a ClusterStorageGroup,
    /// The StorageGroup it shares (its targets).
    pub storage_group: &'a StorageGroup,
    /// The operator's namespace, where the proxy runs.
    pub namespace: &'a str,
    /// [`tls_hash`] of its certificates.
    pub tls_hash: String,
}

/// The proxy's Deployment: `spec.replicas` `hort-store` pods (default 1) with the
/// StorageGroup's repository access but no repository password (the proxy never opens a
/// repository), each pod held to its share of the bandwidth limits, its certificate and key
/// mounted from the TLS Secret (not the CA's key), its spool on an `emptyDir`, running as
/// the agents' non-root user with no capabilities and a read-only root file system (the
/// claims of PVC targets are the kubelet's to hand to that user's group, as for check pods;
/// pods that mount claims are kept on one node).
pub fn deployment(settings: &AgentSettings, proxy: ProxyDeployment<'_>) -> Deployment {
    let group = proxy.group.name_any();
    // The StorageGroup's overrides (e.g. the nodes that reach its storage); resources only
    // when set, since the proxy's memory grows with its tenants, not with one job.
    let overrides = proxy.storage_group.spec.agent.clone().unwrap_or_default();
    let name = proxy_service_name(&group);
    let replicas = proxy.group.spec.replicas.unwrap_or(1).max(1);
    let parts = u64::try_from(replicas).unwrap_or(1);
    let mut access = pod::repository_access(&proxy.storage_group.spec);
    // No password; each namespace's limits again below, as this pod's share of them.
    let limits = [env::LIMIT_UPLOAD, env::LIMIT_DOWNLOAD];
    access
        .env
        .retain(|e| e.name != env::PASSWORD && !limits.contains(&e.name.as_str()));
    let cert = format!("{TLS_DIR}/{}", certs::TLS_CERT);
    let key = format!("{TLS_DIR}/{}", certs::TLS_KEY);
    access.env.extend([
        value("HORT_STORE_GROUP", &group),
        value("HORT_STORE_LISTEN", format!("0.0.0.0:{PROXY_PORT}")),
        value("HORT_STORE_TLS_CERT", cert),
        value("HORT_STORE_TLS_KEY", key),
        value(env::SPOOL_DIR, SPOOL_DIR),
        value("TMPDIR", SPOOL_DIR),
    ]);
    let storage_limits = proxy.storage_group.spec.bandwidth.as_ref();
    access.env.extend(pod::bandwidth_env(storage_limits, limits, parts));
    let total = ["HORT_STORE_TOTAL_LIMIT_UPLOAD", "HORT_STORE_TOTAL_LIMIT_DOWNLOAD"];
    access
        .env
        .extend(pod::bandwidth_env(proxy.group.spec.bandwidth.as_ref(), total, parts));
    let mounts_targets = !access.volumes.is_empty();
    access.volumes.extend([
        Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls_secret_name(&group)),
                items: Some(
                    [certs::TLS_CERT, certs::TLS_KEY]
                        .map(|k| KeyToPath {
                            key: k.into(),
                            path: k.into(),
                            mode: None,
                        })
                        .into(),
                ),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "spool".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]);
    access.mounts.extend([
        VolumeMount {
            name: "tls".into(),
            mount_path: TLS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "spool".into(),
            mount_path: SPOOL_DIR.into(),
            ..VolumeMount::default()
        },
    ]);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some(settings.pull_policy.clone()),
        command: Some(vec![COMMAND.into()]),
        env: Some(access.env),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: PROXY_PORT.into(),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(PROXY_PORT.into()),
                host: None,
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        volume_mounts: Some(access.mounts),
        security_context: Some(pod::restricted(NON_ROOT_USER, true)),
        resources: overrides.resources,
        ..Container::default()
    };
    let labels = selector(&group);
    let affinity = (mounts_targets && replicas > 1).then(|| same_node(&labels));
    Deployment {
        metadata: metadata(proxy.group, name, proxy.namespace),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(TLS_HASH_ANNOTATION.into(), proxy.tls_hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(access.volumes),
                    service_account_name: Some(SERVICE_ACCOUNT.into()),
                    automount_service_account_token: Some(true),
                    node_selector: (!overrides.node_selector.is_empty()).then_some(overrides.node_selector),
                    tolerations: (!overrides.tolerations.is_empty()).then_some(overrides.tolerations),
                    priority_class_name: overrides.priority_class_name,
                    affinity,
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        // Lets the user read the mounted key (mode 0440) and write the
                        // claims of PVC targets, as check pods do.
                        fs_group: Some(NON_ROOT_USER),
                        fs_group_change_policy: mounts_targets.then(|| "OnRootMismatch".into()),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Keeps pods with `labels` on one node: they mount the same claims, which may be
/// ReadWriteOnce (a first pod schedules anywhere; the others follow it).
fn same_node(labels: &BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(labels.clone()),
                    match_expressions: None,
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..PodAffinityTerm::default()
            }]),
            ..PodAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The proxy's Service `hort-store-<group>`: port [`PROXY_PORT`] (`https`) of its pods.
pub fn service(group: &ClusterStorageGroup, namespace: &str) -> Service {
    let name = group.name_any();
    Service {
        metadata: metadata(group, proxy_service_name(&name), namespace),
        spec: Some(ServiceSpec {
            selector: Some(selector(&name)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: PROXY_PORT.into(),
                target_port: Some(IntOrString::String(PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Whether the proxy's Deployment `found` (as applied) has an available replica (with a note
/// naming it when fewer than all its replicas are available); what it lacks otherwise.
pub fn ready(found: &Deployment) -> Result<Option<String>, String> {
    let status = found.status.clone().unwrap_or_default();
    let name = found.name_any();
    let namespace = found.namespace().unwrap_or_default();
    let available = status.available_replicas.unwrap_or(0);
    let wanted = found.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if available >= 1 {
        return Ok((available < wanted).then(|| {
            format!(
                "the proxy's Deployment {name:?} in namespace {namespace:?} has {available} of {wanted} pods available"
            )
        }));
    }
    // Why its pods cannot be made (e.g. no ServiceAccount `hort-store`), else why it is not
    // available.
    let conditions = status.conditions.unwrap_or_default();
    let condition = |type_: &str, value: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == value)
            .and_then(|c| c.message.clone())
    };
    let why = condition("ReplicaFailure", "True")
        .or_else(|| condition("Available", "False"))
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Err(format!(
        "the proxy's Deployment {name:?} in namespace {namespace:?} has no available replica yet{why}"
    ))
}

/// The group's `Ready` condition with its proxy `proxy`: one that would be True is False with
/// reason `ProxyNotReady` while the proxy is not ready, and stays True with the note added
/// while only some of its pods are available; another is kept (it names what comes first).
pub fn with_proxy(observation: Observation, proxy: Result<Option<String>, String>) -> Observation {
    match (observation.status, proxy) {
        (Status::True, Err(why)) => Observation {
            type_: READY,
            status: Status::False,
            reason: "ProxyNotReady",
            message: why,
        },
        (Status::True, Ok(Some(note))) => Observation {
            message: format!("{}; {note}", observation.message),
            ..observation
        },
        _ => observation,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    use super::*;
    use crate::cluster_storage_group::certs::Renewal;

    fn group(name: &str) -> ClusterStorageGroup {
        serde_yaml::from_str(&format!(
            "apiVersion: hort.dev/v1alpha1\nkind: ClusterStorageGroup\n\
             metadata: {{name: {name}, uid: 0a1b2c3d-4e5f-6789-abcd-ef0123456789}}\n\
             spec: {{storageGroupRef: {{name: s3}}, allowedNamespaces: {{}}, tenantKeySecretRef: {{name: root, key: secret}}}}"
        ))
        .unwrap()
    }

    fn storage_group(targets: &str) -> StorageGroup {
        serde_yaml::from_str(&format!(
            "apiVersion: hort.dev/v1alpha1\nkind: StorageGroup\nmetadata: {{name: s3, namespace: hort-system}}\n\
             spec: {{strategy: Mirror, targets: {targets}, encryption: {{keySecretRef: {{name: key}}}}}}"
        ))
        .unwrap()
    }

    const S3: &str = "[{name: a, s3: {endpoint: 'http://s3', bucket: b, credentialsSecretRef: {name: s3}}}]";
    const S3_AND_PVC: &str = "[{name: a, s3: {endpoint: 'http://s3', bucket: b, credentialsSecretRef: {name: s3}}}, \
                              {name: disk, pvc: {claimName: backups}}]";

    fn settings() -> AgentSettings {
        AgentSettings {
            image: "hort-agent:test".into(),
            pull_policy: "IfNotPresent".into(),
            retry_backoff: std::time::Duration::from_secs(1),
            default_resources: None,
            default_deadline_seconds: None,
            max_pods_per_node: None,
        }
    }

    fn build(targets: &str) -> Deployment {
        build_for(&storage_group(targets))
    }

    /// The Deployment of group `shared` sharing `storage_group`.
    fn build_for(storage_group: &StorageGroup) -> Deployment {
        build_with(&group("shared"), storage_group)
    }

    /// The Deployment of `group` sharing `storage_group`.
    fn build_with(group: &ClusterStorageGroup, storage_group: &StorageGroup) -> Deployment {
        deployment(
            &settings(),
            ProxyDeployment {
                group,
                storage_group,
                namespace: "hort-system",
                tls_hash: "abc".into(),
            },
        )
    }

    fn pod_spec(deployment: &Deployment) -> &PodSpec {
        deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn env_of<'a>(deployment: &'a Deployment, name: &str) -> Option<&'a EnvVar> {
        pod_spec(deployment).containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
    }

    fn value_of(deployment: &Deployment, name: &str) -> Option<String> {
        env_of(deployment, name)?.value.clone()
    }

    #[test]
    fn names_follow_the_group() {
        assert_eq!(proxy_service_name("shared"), "hort-store-shared");
        assert_eq!(tls_secret_name("shared"), "hort-store-shared-tls");
        assert_eq!(PROXY_PORT, 8443);
        assert_eq!(
            dns_names("shared", "hort-system"),
            [
                "hort-store-shared.hort-system.svc",
                "hort-store-shared.hort-system.svc.cluster.local",
                "hort-store-shared.hort-system"
            ]
        );
    }

    #[test]
    fn a_name_that_cannot_make_a_service_name_is_named_with_the_limit() {
        assert_eq!(invalid_name(&"a".repeat(52)), None);
        assert_eq!(invalid_name("shared-1"), None);
        let long = invalid_name(&"a".repeat(53)).unwrap();
        assert_eq!((long.status, long.reason), (Status::False, "NameTooLong"));
        assert!(
            long.message.contains("metadata.name") && long.message.contains("at most 52"),
            "{}",
            long.message
        );
        for bad in ["team.shared", "Shared", "shared-", ""] {
            let invalid = invalid_name(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert_eq!(invalid.reason, "InvalidName", "{bad:?}");
            assert!(invalid.message.contains("metadata.name") && invalid.message.contains("at most 52"));
        }
    }

    #[test]
    fn the_proxy_gets_the_targets_but_no_repository_password() {
        let deployment = build(S3);
        assert!(env_of(&deployment, "HORT_PASSWORD").is_none());
        for e in pod_spec(&deployment).containers[0].env.iter().flatten() {
            if e.name.contains("AWS_ACCESS_KEY_ID") || e.name.contains("AWS_SECRET_ACCESS_KEY") {
                assert!(e.value.is_none(), "{} is passed by reference only", e.name);
                let key = e.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
                assert_eq!(key.name, "s3");
            }
        }
        assert!(env_of(&deployment, "HORT_TARGET_0_AWS_ACCESS_KEY_ID").is_some());
        assert!(value_of(&deployment, "HORT_REPOSITORY").unwrap().contains("s3:"));
        assert_eq!(value_of(&deployment, "HORT_STRATEGY").as_deref(), Some("mirror"));
        assert_eq!(value_of(&deployment, "HORT_STORE_GROUP").as_deref(), Some("shared"));
        assert_eq!(
            value_of(&deployment, "HORT_STORE_LISTEN").as_deref(),
            Some("0.0.0.0:8443")
        );
        assert_eq!(
            value_of(&deployment, "HORT_STORE_TLS_CERT").as_deref(),
            Some("/etc/hort-store/tls/tls.crt")
        );
        assert_eq!(
            value_of(&deployment, "HORT_STORE_TLS_KEY").as_deref(),
            Some("/etc/hort-store/tls/tls.key")
        );
        assert_eq!(value_of(&deployment, "HORT_SPOOL_DIR").as_deref(), Some("/spool"));
    }

    #[test]
    fn the_proxy_runs_restricted_with_its_certificate_but_not_the_cas_key() {
        let deployment = build(S3);
        assert_eq!(deployment.metadata.name.as_deref(), Some("hort-store-shared"));
        assert_eq!(deployment.metadata.namespace.as_deref(), Some("hort-system"));
        let owner = &deployment.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ClusterStorageGroup", "shared", Some(true))
        );
        let spec = deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        let template = spec.template.metadata.as_ref().unwrap();
        assert_eq!(spec.selector.match_labels.as_ref(), template.labels.as_ref());
        assert_eq!(template.annotations.as_ref().unwrap()[TLS_HASH_ANNOTATION], "abc");
        let pod = pod_spec(&deployment);
        assert_eq!(pod.service_account_name.as_deref(), Some("hort-store"));
        assert_eq!(pod.automount_service_account_token, Some(true));
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("hort-agent:test"));
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            container.command.as_deref(),
            Some(&["/usr/local/bin/hort-store".to_string()][..])
        );
        let port = &container.ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.container_port), (Some("https"), 8443));
        let probe = container.readiness_probe.as_ref().unwrap().tcp_socket.as_ref().unwrap();
        assert_eq!(probe.port, IntOrString::Int(8443));
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(security.capabilities.as_ref().unwrap().add, None);
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let volumes = pod.volumes.as_ref().unwrap();
        let tls = volumes
            .iter()
            .find(|v| v.name == "tls")
            .unwrap()
            .secret
            .as_ref()
            .unwrap();
        assert_eq!(tls.secret_name.as_deref(), Some("hort-store-shared-tls"));
        let keys: Vec<&str> = tls.items.iter().flatten().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["tls.crt", "tls.key"], "never ca.key");
        assert!(volumes.iter().any(|v| v.name == "spool" && v.empty_dir.is_some()));
        let mounts: Vec<(&str, &str)> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(mounts, [("tls", "/etc/hort-store/tls"), ("spool", "/spool")]);
    }

    #[test]
    fn pvc_targets_are_mounted_for_the_nonroot_user_as_for_check_pods() {
        let deployment = build(S3_AND_PVC);
        let pod = pod_spec(&deployment);
        let volume = pod.volumes.iter().flatten().find(|v| v.name == "target-disk").unwrap();
        let claim = volume.persistent_volume_claim.as_ref().unwrap();
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("backups", Some(false)));
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "target-disk")
            .unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/targets/disk", None));
        assert!(
            value_of(&deployment, "HORT_REPOSITORY")
                .unwrap()
                .contains("/targets/disk")
        );
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!(security.fs_group, Some(NON_ROOT_USER));
        assert_eq!(security.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
        assert_eq!(
            pod.containers[0].security_context.as_ref().unwrap().run_as_user,
            Some(NON_ROOT_USER)
        );
    }

    #[test]
    fn the_proxy_takes_the_storage_groups_agent_overrides() {
        let plain = build(S3);
        let plain_pod = pod_spec(&plain);
        assert!(plain_pod.node_selector.is_none() && plain_pod.tolerations.is_none());
        assert!(plain_pod.containers[0].resources.is_none(), "no default resources");
        let mut storage_group = storage_group(S3);
        storage_group.spec.agent = Some(
            serde_yaml::from_str(
                "{nodeSelector: {zone: storage}, tolerations: [{key: backup, operator: Exists}], \
                 priorityClassName: high, resources: {limits: {memory: 2Gi}}}",
            )
            .unwrap(),
        );
        let deployment = build_for(&storage_group);
        let pod = pod_spec(&deployment);
        assert_eq!(pod.node_selector.as_ref().unwrap()["zone"], "storage");
        assert_eq!(pod.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("backup"));
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        let limits = pod.containers[0].resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "2Gi");
    }

    #[test]
    fn the_groups_bandwidth_is_the_proxys_total_and_the_storage_groups_each_namespaces() {
        let mut storage_group = storage_group(S3);
        storage_group.spec.bandwidth = serde_yaml::from_str("{uploadPerSecond: 1Mi}").unwrap();
        let mut shared = group("shared");
        shared.spec.bandwidth = serde_yaml::from_str("{uploadPerSecond: 20Mi, downloadPerSecond: 50M}").unwrap();
        let deployment = build_with(&shared, &storage_group);
        assert_eq!(
            value_of(&deployment, "HORT_STORE_TOTAL_LIMIT_UPLOAD").as_deref(),
            Some("20971520")
        );
        assert_eq!(
            value_of(&deployment, "HORT_STORE_TOTAL_LIMIT_DOWNLOAD").as_deref(),
            Some("50000000")
        );
        assert_eq!(value_of(&deployment, "HORT_LIMIT_UPLOAD").as_deref(), Some("1048576"));
        assert_eq!(value_of(&deployment, "HORT_LIMIT_DOWNLOAD"), None);
        let unlimited = build(S3);
        assert_eq!(value_of(&unlimited, "HORT_STORE_TOTAL_LIMIT_UPLOAD"), None);
        assert_eq!(value_of(&unlimited, "HORT_STORE_TOTAL_LIMIT_DOWNLOAD"), None);
    }

    #[test]
    fn replicas_share_the_limits_and_pods_with_claims_share_a_node() {
        let mut storage_group = storage_group(S3_AND_PVC);
        storage_group.spec.bandwidth = serde_yaml::from_str("{uploadPerSecond: 3M, downloadPerSecond: 2k}").unwrap();
        let mut shared = group("shared");
        shared.spec.bandwidth = serde_yaml::from_str("{uploadPerSecond: 30M}").unwrap();
        shared.spec.replicas = Some(3);
        let three = build_with(&shared, &storage_group);
        assert_eq!(three.spec.as_ref().unwrap().replicas, Some(3));
        // Each pod enforces a third; together they never pass the limits.
        assert_eq!(
            value_of(&three, "HORT_STORE_TOTAL_LIMIT_UPLOAD").as_deref(),
            Some("10000000")
        );
        assert_eq!(value_of(&three, "HORT_LIMIT_UPLOAD").as_deref(), Some("1000000"));
        assert_eq!(
            value_of(&three, "HORT_LIMIT_DOWNLOAD").as_deref(),
            Some("1000"),
            "at least 1k"
        );
        let limits = pod_spec(&three).containers[0].env.iter().flatten();
        assert_eq!(
            limits.filter(|e| e.name == "HORT_LIMIT_UPLOAD").count(),
            1,
            "one value, the share"
        );
        // They mount the same claim, so they run on the node of the first.
        let affinity = pod_spec(&three)
            .affinity
            .as_ref()
            .unwrap()
            .pod_affinity
            .as_ref()
            .unwrap();
        let term = &affinity
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()[0];
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        let template = three.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
        assert_eq!(term.label_selector.as_ref().unwrap().match_labels, template.labels);
        // Without claims, or with one pod, nothing ties them to a node.
        assert!(
            pod_spec(&build_with(&shared, &self::storage_group(S3)))
                .affinity
                .is_none()
        );
        shared.spec.replicas = None;
        let one = build_with(&shared, &storage_group);
        assert_eq!(one.spec.as_ref().unwrap().replicas, Some(1));
        assert!(pod_spec(&one).affinity.is_none());
        assert_eq!(
            value_of(&one, "HORT_STORE_TOTAL_LIMIT_UPLOAD").as_deref(),
            Some("30000000")
        );
    }

    #[test]
    fn the_service_selects_the_proxy_pods_on_port_8443() {
        let group = group("shared");
        let service = service(&group, "hort-system");
        assert_eq!(service.metadata.name.as_deref(), Some("hort-store-shared"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("hort-system"));
        assert_eq!(service.owner_references()[0].name, "shared");
        let spec = service.spec.as_ref().unwrap();
        let deployment = build(S3);
        let template = deployment.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(spec.selector.as_ref(), Some(&template));
        let port = &spec.ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("https"), 8443));
        assert_eq!(port.target_port, Some(IntOrString::String("https".into())));
    }

    #[test]
    fn the_tls_secret_is_owned_and_its_hash_follows_its_data() {
        let group = group("shared");
        let names = dns_names("shared", "hort-system");
        let now = "2026-12-01T12:00:00Z".parse().unwrap();
        let tls = certs::issue(None, Renewal::NewCa, "shared", &names, now).unwrap();
        let secret = tls_secret(&group, "hort-system", &tls);
        assert_eq!(secret.metadata.name.as_deref(), Some("hort-store-shared-tls"));
        assert_eq!(secret.owner_references()[0].kind, "ClusterStorageGroup");
        assert_eq!(secret.labels()["app.kubernetes.io/managed-by"], "hort-operator");
        assert_eq!(secret.data, Some(tls.to_data()));
        let renewed = certs::issue(Some(&tls), Renewal::NewLeaf, "shared", &names, now).unwrap();
        assert_eq!(tls_hash(&tls), tls_hash(&tls.clone()));
        assert_ne!(tls_hash(&tls), tls_hash(&renewed), "a new certificate rolls the pods");
    }

    #[test]
    fn the_proxy_is_ready_with_an_available_replica() {
        let mut deployment = build(S3);
        let why = ready(&deployment).unwrap_err();
        assert!(
            why.contains("\"hort-store-shared\" in namespace \"hort-system\""),
            "{why}"
        );
        deployment.status = Some(DeploymentStatus {
            available_replicas: Some(1),
            ..DeploymentStatus::default()
        });
        assert_eq!(ready(&deployment), Ok(None));
        deployment.spec.as_mut().unwrap().replicas = Some(2);
        let note = ready(&deployment).unwrap().unwrap();
        assert!(
            note.contains("\"hort-store-shared\"") && note.ends_with("has 1 of 2 pods available"),
            "{note}"
        );
        deployment.status.as_mut().unwrap().available_replicas = Some(2);
        assert_eq!(ready(&deployment), Ok(None));
        deployment.spec.as_mut().unwrap().replicas = Some(1);
        deployment.status = serde_yaml::from_str(
            "conditions: [{type: Available, status: 'False', message: Deployment does not have minimum availability.},\n\
                          {type: ReplicaFailure, status: 'True', message: serviceaccount \"hort-store\" not found}]",
        )
        .unwrap();
        let why_not = ready(&deployment).unwrap_err();
        assert!(
            why_not.ends_with(": serviceaccount \"hort-store\" not found"),
            "{why_not}"
        );

        let tenants_ready = Observation {
            type_: READY,
            status: Status::True,
            reason: "TenantsReady",
            message: "all there".into(),
        };
        let waiting = with_proxy(tenants_ready.clone(), Err(why.clone()));
        assert_eq!(
            (waiting.status, waiting.reason, waiting.message),
            (Status::False, "ProxyNotReady", why.clone())
        );
        assert_eq!(with_proxy(tenants_ready.clone(), Ok(None)), tenants_ready);
        let degraded = with_proxy(tenants_ready.clone(), Ok(Some("1 of 2 pods".into())));
        assert_eq!(
            (degraded.status, degraded.reason, degraded.message.as_str()),
            (Status::True, "TenantsReady", "all there; 1 of 2 pods")
        );
        let pending = Observation {
            status: Status::False,
            reason: "TenantsPending",
            ..tenants_ready
        };
        assert_eq!(
            with_proxy(pending.clone(), Err(why)),
            pending,
            "what comes first is named"
        );
    }
}
