//! `VolumeRestoreSource`: a snapshot named as the data source of a new claim (a volume
//! populator), so that one set of manifests recreates an application and its data.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::GroupRef;
use crate::restore_request::RestoreSource;

/// A snapshot that a PersistentVolumeClaim of this namespace names as its data source.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hort.dev",
    version = "v1alpha1",
    kind = "VolumeRestoreSource",
    doc = "A snapshot of a StorageGroup that a new PersistentVolumeClaim in this namespace names in `spec.dataSourceRef` (apiGroup hort.dev, kind VolumeRestoreSource): the operator, run with the chart value `populator.enabled`, restores the snapshot into a volume of the claim's size and class and binds that volume to the claim. Progress and problems are Events on the claim.",
    namespaced,
    status = "VolumeRestoreSourceStatus",
    shortname = "hvrs",
    category = "hort",
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.storageGroupRef.name"),
    printcolumn(name = "Snapshot", type_ = "string", json_path = ".status.snapshotId"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRestoreSourceSpec {
    /// The group that holds the snapshot: a StorageGroup of this namespace, which must be
    /// Ready (its Secrets marked `hort.dev/usable: "true"` by their owner) before a claim is
    /// populated, or a ClusterStorageGroup that allows this namespace (`kind:
    /// ClusterStorageGroup`), whose repository of this namespace is then read through the
    /// group's proxy. A claim waits (Event `NamespaceNotAllowed`) while the group does not
    /// select this namespace.
    pub storage_group_ref: GroupRef,
    /// Which snapshot to restore: exactly one of `backupJobRef`, `snapshotId` or `tags` (the
    /// newest snapshot with the tags when a claim is populated).
    pub source: RestoreSource,
    /// Restore only these paths of the snapshot (files or directories, relative to its root);
    /// the whole snapshot when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(p, !p.startsWith('/') && !p.matches('(^|/)[.][.](/|$)'))")
        .message("paths must be relative to the snapshot root and must not contain '..'"))]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub paths: Vec<String>,
}

/// Observed state of a VolumeRestoreSource: whether its snapshot and group can be used, and
/// how the last population of a claim went.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRestoreSourceStatus {
    /// Conditions: `SnapshotResolved`, `StorageGroupReady`, and `Populated` (the last claim
    /// populated from this source, or why the last attempt failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The snapshot, once resolved (a source by tags is resolved by each restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Human-readable summary of the current state or the last problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
