//! Types shared by several Hort kinds: references, agent pod overrides, phases, progress.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Hort kind.
pub const GROUP: &str = "hort.dev";
/// The API version of every Hort kind.
pub const VERSION: &str = "v1alpha1";

/// Pattern of a cron expression: five fields, or one of the `@` macros.
pub(crate) const CRON: &str =
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+\s+\S+\s+\S+\s+\S+\s+\S+)$";
/// Pattern of an IANA time zone name, e.g. `Europe/Berlin`.
pub(crate) const TIME_ZONE: &str = r"^[A-Za-z][-+_/A-Za-z0-9]*$";
/// Pattern of a Kubernetes object name (RFC 1123 subdomain).
pub(crate) const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Pattern of a Secret data key.
pub(crate) const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// A reference to another object of the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// Name of the referenced object, in the namespace of the referring object.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
}

/// The kind of group a [`GroupRef`] names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum GroupKind {
    /// A StorageGroup in the namespace of the referring object.
    #[default]
    StorageGroup,
    /// A cluster-wide ClusterStorageGroup shared by the namespaces it allows.
    ClusterStorageGroup,
}

impl GroupKind {
    /// True for the default kind, which is left out when an object is written.
    pub fn is_storage_group(&self) -> bool {
        *self == GroupKind::StorageGroup
    }
}

/// The group whose repository a BackupJob writes to or a RestoreRequest reads from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupRef {
    /// `StorageGroup` (the default): a StorageGroup in this namespace. `ClusterStorageGroup`:
    /// a group the platform team shares with the namespaces its `allowedNamespaces` selects.
    /// This namespace then uses its own repository in the group (`tenants/<namespace>/` of
    /// each target), reached through the group's proxy `hort-store-<name>` with the
    /// password of the Secret `hort-tenant-<name>` the operator writes here; the storage
    /// credentials never reach this namespace. A namespace the group does not allow fails
    /// with reason `NamespaceNotAllowed`.
    #[serde(default, skip_serializing_if = "GroupKind::is_storage_group")]
    pub kind: GroupKind,
    /// Name of the group: a StorageGroup of this namespace, or a ClusterStorageGroup.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
}

impl GroupRef {
    /// A reference to the StorageGroup `name` of the referring object's namespace.
    pub fn storage_group(name: impl Into<String>) -> Self {
        GroupRef {
            kind: GroupKind::StorageGroup,
            name: name.into(),
        }
    }
}

/// A reference to a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the namespace of the referring object.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
}

/// A reference to one key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the namespace of the referring object.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Key inside the Secret's data.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".into()
}

/// Overrides for the agent pod that runs a backup, restore or check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPodOverrides {
    /// Compute resources of the agent container; when unset, the operator's defaults (chart
    /// value `agent.resources`: 100m CPU and 128Mi memory requested, 1Gi memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the agent pod must match. Ignored when the job's volume is ReadWriteOnce
    /// (or ReadWriteOncePod) and a running pod mounts it: the agent pod then runs on that
    /// pod's node, the only one that can mount the volume.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the agent pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// PriorityClass of the agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// TLS of the agent's connections to a database server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.caSecretRef) == (self.mode == 'VerifyFull')")
    .message("tls.caSecretRef goes with tls.mode VerifyFull: set both (a Secret with key ca.crt, the CA that signed the server's certificate) or neither")
    .field_path(".caSecretRef"))]
pub struct DatabaseTls {
    /// `Prefer`: TLS when the server offers it, its certificate not checked (safe from
    /// eavesdroppers, not from a server that impersonates the real one); plain otherwise.
    /// `VerifyFull`: TLS or no connection, and the server's certificate must chain to the CA
    /// of `caSecretRef` and name `host`. `Disable`: never TLS.
    #[serde(default)]
    pub mode: TlsMode,
    /// Secret with the key `ca.crt`: the PEM certificate of the CA that signed the server's
    /// certificate (only with `VerifyFull`). Its owner allows Hort to use it with the label
    /// `hort.dev/usable: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
}

/// Whether the agent's database connections use TLS, and how the server is checked.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TlsMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, its certificate not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate must chain to the given CA and name the host.
    VerifyFull,
}

/// Lifecycle phase of a run-once object (BackupJob, RestoreRequest).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted; waiting for its storage group or for an agent pod to start.
    #[default]
    Pending,
    /// An agent pod is working on it.
    Running,
    /// Finished successfully. Terminal.
    Succeeded,
    /// Finished unsuccessfully after all retries. Terminal.
    Failed,
}

impl Phase {
    /// Whether the object has reached a terminal phase and will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Live progress of a running agent, updated from the agent's progress lines.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Bytes processed so far.
    pub bytes_done: u64,
    /// Bytes expected in total, when known in advance (unknown for database dumps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Whole percent done, when the total is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
}
