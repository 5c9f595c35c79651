//! `ClusterStorageGroup`: a StorageGroup of the operator's namespace shared with many
//! namespaces, each of which gets a repository of its own inside the group's targets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DNS_SUBDOMAIN, SECRET_KEY};
use crate::storage_group::Bandwidth;

/// A StorageGroup of the operator's namespace shared with the namespaces `allowedNamespaces`
/// selects. Each of them gets a repository of its own under `tenants/<namespace>/` of every
/// target, opened with a password derived from `tenantKeySecretRef`; tenants never see the
/// group's credentials or each other's data.
///
/// Reconciled only by an operator that watches the whole cluster: with
/// `HORT_WATCH_NAMESPACE` (the chart's `operator.watchNamespace`) the controller is not
/// started and these objects get no status. For each selected namespace the operator writes
/// a Secret `hort-tenant-<group name>` into that namespace (key `password`: the namespace's
/// repository password, owned by the group) and creates the namespace's repository with a
/// check pod in the operator's namespace; at most 4 such check pods of a group run at once.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hort.dev",
    version = "v1alpha1",
    kind = "ClusterStorageGroup",
    doc = "A StorageGroup of the operator's namespace shared with the namespaces allowedNamespaces selects, each with a repository of its own under tenants/<namespace>/.",
    status = "ClusterStorageGroupStatus",
    shortname = "hcsg",
    category = "hort",
    printcolumn(name = "StorageGroup", type_ = "string", json_path = ".spec.storageGroupRef.name"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Tenants", type_ = "integer", json_path = ".status.tenantCount"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStorageGroupSpec {
    /// The StorageGroup, in the operator's namespace, whose targets hold the tenants'
    /// repositories. Its checks, target health, strategy and bandwidth limits apply to every
    /// tenant; its own repository (at the root of the targets) is not shared.
    pub storage_group_ref: OperatorObjectRef,
    /// The namespaces that may use this group, by their labels (`{}`: every namespace;
    /// namespaces being deleted are left out). Each selected namespace gets its repository
    /// and its password Secret `hort-tenant-<group name>`. A namespace that stops matching
    /// keeps its repository (nothing in the storage is deleted) but leaves
    /// `status.tenants`, and the operator deletes its password Secret (it is derived again
    /// should the namespace match again; its repository is then found, not created anew).
    pub allowed_namespaces: LabelSelector,
    /// The Secret, in the operator's namespace, whose key holds the tenant root secret: at
    /// least 32 bytes, e.g. `openssl rand -hex 32`. Each namespace's repository password is
    /// derived from it (`hort_protocol::tenant::password`), so this one Secret and the
    /// targets' credentials restore every tenant after a disaster. Changing it makes every
    /// tenant repository unreadable: keep it like a repository password. Its owner marks it
    /// usable by Hort (label `hort.dev/usable: "true"`) like any other Secret. Secrets are
    /// not watched: a change to this one is seen at the group's next reconcile (a change of
    /// the group, a namespace or the StorageGroup, or the periodic one).
    pub tenant_key_secret_ref: OperatorSecretKeyRef,
    /// Bandwidth limits of the group's proxy (`hort-store-<group>`): bytes per second it may
    /// send to and receive from the targets for all namespaces together, in the grammar of
    /// the StorageGroup's `bandwidth`. Each namespace's transfers are also held to the
    /// StorageGroup's `bandwidth` on their own, so one tenant never takes the whole total.
    /// With several `replicas` each pod enforces its share of both limits (the limit divided
    /// by `replicas`, at least 1k), so together they never exceed them. No total limit when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// Pods of the group's proxy Deployment `hort-store-<group>`, 1 to 16 (default 1). Tenants'
    /// agents reach them through one Service, so a proxy pod that is restarted or evicted no
    /// longer stops every tenant's backups; `Ready` stays True while one pod is available and
    /// its message then says how many are. The pods never write a repository's `config` (the
    /// operator creates each namespace's repository at the targets), so they need no
    /// coordination. With PVC targets every pod mounts the same claims, so the pods are kept
    /// on one node (a ReadWriteOnce claim is mounted by one node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub replicas: Option<i32>,
}

/// An object of the operator's namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorObjectRef {
    /// Name of the object, in the operator's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
}

/// One key of a Secret in the operator's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorSecretKeyRef {
    /// Name of the Secret, in the operator's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
}

/// Observed state of a ClusterStorageGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStorageGroupStatus {
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of selected namespaces whose repository is recorded (`tenants[].repositoryId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_count: Option<u32>,
    /// One entry per namespace `allowedNamespaces` selected, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantStatus>,
    /// `Ready` is True when the StorageGroup is Ready and every selected namespace has its
    /// repository, its newest check passed and its password Secret is written; False names
    /// the StorageGroup, Secret or namespaces that are not (reasons `StorageGroupNotFound`,
    /// `StorageGroupNotReady`, `ReferenceNotFound`, `ReferenceNotUsable`, `TenantKeyInvalid`,
    /// `InvalidSelector`, `TenantsPending`, `TenantFailed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One namespace's repository in a ClusterStorageGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The namespace.
    pub namespace: String,
    /// Identifier of the namespace's repository once created. Recorded once: a later check
    /// that finds another repository (or none) fails and never creates a second one. Each
    /// repository is checked again after the StorageGroup's `checkIntervalSeconds` (a failed
    /// check after a minute, if that is sooner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<String>,
    /// Why the namespace has no repository yet, or why its last check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What the last check that could count them found in the namespace's repository (each
    /// check reads its snapshot files and measures the namespace's files on every target);
    /// unset until one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<TenantSnapshots>,
}

/// The snapshots and the size of a namespace's repository, as a check found them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSnapshots {
    /// Snapshots in the repository.
    pub count: u64,
    /// Id of the snapshot whose backup started last; unset when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot_id: Option<String>,
    /// When that backup started (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_time: Option<String>,
    /// Bytes of the namespace's repository files on all the group's targets together (a
    /// `Mirror` group's copies count each): directory targets walked, S3 targets listed under
    /// the namespace's prefix (current object versions). Unset when a target could not be
    /// measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_used: Option<u64>,
    /// When the check that counted them finished.
    pub checked_time: Time,
}
