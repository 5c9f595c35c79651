//! The objects a ClusterStorageGroup makes for a tenant namespace (pure): the check pod that
//! creates and checks the namespace's repository, in the operator's namespace, and the
//! Secret with the namespace's derived repository password and the CA of the group's proxy,
//! in the tenant's namespace.

use std::collections::BTreeMap;

use hort_crds::ClusterStorageGroup;
use hort_crds::StorageGroup;
use hort_crds::cluster_storage_group::OperatorSecretKeyRef;
use hort_protocol::env;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, KeyToPath, Pod, Secret, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::tenants::TENANT_LABEL;
use crate::agent::pod::{self, AgentPod, AgentSettings};
use crate::storage_group::{CHECK_DEADLINE_SECONDS, check_command};

/// Where a tenant check pod finds the tenant root secret.
pub const ROOT_SECRET_FILE: &str = "/etc/hort/tenant-root/secret";
/// Name of the volume of the tenant root secret in a tenant check pod.
const ROOT_SECRET_VOLUME: &str = "tenant-root";
/// Key of the tenant password Secret that holds the namespace's repository password.
pub const PASSWORD_KEY: &str = "password";
/// Key of the tenant password Secret that holds the CA (PEM) that signed the certificate of
/// the group's proxy ([`super::proxy`]), which the tenant's agents check it against.
pub const CA_KEY: &str = "ca.crt";
/// Label on the objects the operator manages, and its value.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "hort-operator");

/// Name of the Secret, in each tenant namespace, that holds the namespace's repository
/// password for the group named `group`: `hort-tenant-<group>`.
pub fn password_secret_name(group: &str) -> String {
    format!("hort-tenant-{group}")
}

/// Name of a tenant check pod: the namespace, the start of the group's uid (two groups may
/// share a namespace) and the second it starts.
pub fn check_pod_name(group_uid: &str, namespace: &str, now: Timestamp) -> String {
    let uid: String = group_uid.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    format!("tenant-{namespace}-{uid}-{}", now.as_second())
}

/// What a tenant check pod is made from.
pub struct TenantCheck<'a> {
    /// The group.
    pub group: &'a ClusterStorageGroup,
    /// The StorageGroup it shares (its targets and agent overrides).
    pub storage_group: &'a StorageGroup,
    /// The operator's namespace, where the pod runs.
    pub operator_namespace: &'a str,
    /// The tenant namespace whose repository is checked.
    pub namespace: &'a str,
    /// Its recorded repository id: without one the check creates the repository.
    pub recorded: Option<String>,
    /// Now, for the pod's name.
    pub now: Timestamp,
}

/// The pod that creates (no recorded id) or checks a tenant's repository: the StorageGroup's
/// repository access, with `HORT_TENANT` set to the namespace and the tenant root secret
/// mounted from its Secret at [`ROOT_SECRET_FILE`] (`HORT_TENANT_ROOT_SECRET_FILE`) instead of
/// any `HORT_PASSWORD`.
pub fn check_pod(settings: &AgentSettings, check: TenantCheck<'_>) -> Pod {
    let spec = &check.storage_group.spec;
    let root: &OperatorSecretKeyRef = &check.group.spec.tenant_key_secret_ref;
    let mut repository = pod::repository_access(spec);
    repository.env.retain(|e| e.name != env::PASSWORD);
    repository.env.push(EnvVar {
        name: env::TENANT.into(),
        value: Some(check.namespace.into()),
        value_from: None,
    });
    // As a file, byte for byte: an environment variable cannot hold a NUL byte, which a
    // random root secret may.
    let (dir, file) = ROOT_SECRET_FILE.rsplit_once('/').expect("an absolute path");
    repository.volumes.push(Volume {
        name: ROOT_SECRET_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(root.name.clone()),
            items: Some(vec![KeyToPath {
                key: root.key.clone(),
                path: file.into(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    repository.mounts.push(VolumeMount {
        name: ROOT_SECRET_VOLUME.into(),
        mount_path: dir.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    repository.env.push(EnvVar {
        name: env::TENANT_ROOT_SECRET_FILE.into(),
        value: Some(ROOT_SECRET_FILE.into()),
        value_from: None,
    });
    let uid = check.group.uid().unwrap_or_default();
    pod::build(
        settings,
        AgentPod {
            name: check_pod_name(&uid, check.namespace, check.now),
            namespace: check.operator_namespace.into(),
            owner: check
                .group
                .controller_owner_ref(&())
                .expect("a stored object has a name and uid"),
            labels: [(TENANT_LABEL.to_string(), check.namespace.to_string())].into(),
            command: check_command(check.recorded, spec.strategy, false, true),
            repository,
            overrides: spec.agent.as_ref(),
            active_deadline_seconds: Some(CHECK_DEADLINE_SECONDS),
            node: None,
        },
    )
}

/// The Secret in `namespace` with the namespace's repository `password` under
/// [`PASSWORD_KEY`] and the proxy's CA certificate `ca` under [`CA_KEY`], owned by the group
/// (it goes when the group goes).
pub fn password_secret(group: &ClusterStorageGroup, namespace: &str, password: &str, ca: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(password_secret_name(&group.name_any())),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(MANAGED_BY.0.into(), MANAGED_BY.1.into())])),
            owner_references: Some(vec![
                group
                    .controller_owner_ref(&())
                    .expect("a stored object has a name and uid"),
            ]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (PASSWORD_KEY.into(), ByteString(password.as_bytes().to_vec())),
            (CA_KEY.into(), ByteString(ca.as_bytes().to_vec())),
        ])),
        ..Secret::default()
    }
}

/// What to do about a tenant's password Secret as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretAction {
    /// It holds the password and the group owns it.
    Keep,
    /// It is missing or differs: (re)write it.
    Write,
    /// A Secret of that name the group does not own: left alone.
    Foreign,
}

/// Compares the Secret found (if any) with the one [`password_secret`] makes.
pub fn secret_action(found: Option<&Secret>, wanted: &Secret) -> SecretAction {
    let Some(found) = found else {
        return SecretAction::Write;
    };
    let owner = |s: &Secret| s.owner_references().first().map(|o| o.uid.clone());
    if !found
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == owner(wanted).as_ref())
    {
        return SecretAction::Foreign;
    }
    let managed = found.labels().get(MANAGED_BY.0).is_some_and(|v| v == MANAGED_BY.1);
    if managed && found.data == wanted.data {
        SecretAction::Keep
    } else {
        SecretAction::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> ClusterStorageGroup {
        serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: ClusterStorageGroup\n\
             metadata: {name: shared, uid: 0a1b2c3d-4e5f-6789-abcd-ef0123456789}\n\
             spec: {storageGroupRef: {name: s3}, allowedNamespaces: {}, tenantKeySecretRef: {name: root, key: secret}}",
        )
        .unwrap()
    }

    fn storage_group() -> StorageGroup {
        serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: StorageGroup\nmetadata: {name: s3, namespace: hort-system}\n\
             spec: {strategy: Mirror,\n\
                    targets: [{name: a, s3: {endpoint: 'http://s3', bucket: b, credentialsSecretRef: {name: s3}}}],\n\
                    encryption: {keySecretRef: {name: key}}}",
        )
        .unwrap()
    }

    fn settings() -> AgentSettings {
        AgentSettings {
            image: "hort-agent:test".into(),
            pull_policy: "Never".into(),
            retry_backoff: std::time::Duration::from_secs(1),
            default_resources: None,
            default_deadline_seconds: None,
            max_pods_per_node: None,
        }
    }

    fn env_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a EnvVar> {
        pod.spec.as_ref().unwrap().containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
    }

    #[test]
    fn the_tenant_check_runs_in_the_operators_namespace_with_the_root_secret_by_reference() {
        let (group, storage_group) = (group(), storage_group());
        let check = |recorded: Option<&str>| {
            check_pod(
                &settings(),
                TenantCheck {
                    group: &group,
                    storage_group: &storage_group,
                    operator_namespace: "hort-system",
                    namespace: "team-a",
                    recorded: recorded.map(Into::into),
                    now: "2026-12-01T12:00:00Z".parse().unwrap(),
                },
            )
        };
        let pod = check(None);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("hort-system"));
        assert_eq!(pod.metadata.name.as_deref(), Some("tenant-team-a-0a1b2c3d-1796126400"));
        assert_eq!(pod.labels().get(TENANT_LABEL).map(String::as_str), Some("team-a"));
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ClusterStorageGroup", "shared")
        );
        assert_eq!(env_of(&pod, "HORT_TENANT").unwrap().value.as_deref(), Some("team-a"));
        assert!(
            env_of(&pod, "HORT_TENANT_ROOT_SECRET").is_none(),
            "never in the environment"
        );
        let file = env_of(&pod, "HORT_TENANT_ROOT_SECRET_FILE")
            .unwrap()
            .value
            .clone()
            .unwrap();
        assert_eq!(file, ROOT_SECRET_FILE);
        let spec = pod.spec.as_ref().unwrap();
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == ROOT_SECRET_VOLUME)
            .unwrap();
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("root"));
        let item = &secret.items.as_ref().unwrap()[0];
        let mount = spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == ROOT_SECRET_VOLUME)
            .unwrap();
        assert_eq!(format!("{}/{}", mount.mount_path, item.path), file);
        assert_eq!((item.key.as_str(), mount.read_only), ("secret", Some(true)));
        assert!(
            env_of(&pod, "HORT_PASSWORD").is_none(),
            "the group's own password is not passed"
        );
        assert!(
            env_of(&pod, "HORT_TARGET_0_AWS_ACCESS_KEY_ID").is_some(),
            "the targets' credentials are"
        );
        let args = |pod: &Pod| pod.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
        assert_eq!(
            args(&pod),
            ["check", "--init", "--snapshots"],
            "a tenant's check counts its snapshots"
        );
        assert_eq!(
            args(&check(Some("ab"))),
            ["check", "--resync", "--snapshots", "--repository-id", "ab"],
            "a recorded repository is never created again (a Mirror group brings targets level)"
        );
    }

    #[test]
    fn the_password_secret_is_owned_by_the_group_and_corrected_but_a_foreign_one_is_left_alone() {
        let group = group();
        let wanted = password_secret(&group, "team-a", "pw-a", "CA-1");
        assert_eq!(wanted.metadata.name.as_deref(), Some("hort-tenant-shared"));
        assert_eq!(wanted.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(wanted.data.as_ref().unwrap()["password"].0, b"pw-a");
        assert_eq!(wanted.data.as_ref().unwrap()["ca.crt"].0, b"CA-1");
        assert_eq!(wanted.owner_references()[0].kind, "ClusterStorageGroup");
        assert_eq!(secret_action(None, &wanted), SecretAction::Write);
        assert_eq!(secret_action(Some(&wanted), &wanted), SecretAction::Keep);
        let stale = password_secret(&group, "team-a", "old", "CA-1");
        assert_eq!(secret_action(Some(&stale), &wanted), SecretAction::Write);
        let old_ca = password_secret(&group, "team-a", "pw-a", "CA-0");
        assert_eq!(
            secret_action(Some(&old_ca), &wanted),
            SecretAction::Write,
            "a new CA is written"
        );
        let mut foreign = wanted.clone();
        foreign.metadata.owner_references = None;
        assert_eq!(secret_action(Some(&foreign), &wanted), SecretAction::Foreign);
    }
}
