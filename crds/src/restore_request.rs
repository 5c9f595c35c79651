//! `RestoreRequest`: restore a snapshot, or part of it, into a database server or a volume.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{
    api::resource::Quantity,
    apis::meta::v1::{Condition, Time},
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    AgentPodOverrides, DNS_SUBDOMAIN, DatabaseTls, GroupRef, LocalObjectRef, Phase, Progress, SecretRef,
};

/// Restores one snapshot of a StorageGroup, or part of it, into a database server or a volume.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hort.dev",
    version = "v1alpha1",
    kind = "RestoreRequest",
    doc = "Restores a snapshot, or chosen databases, tables or paths of it, into a database server or a volume.",
    namespaced,
    status = "RestoreRequestStatus",
    shortname = "hrr",
    shortname = "hrestore",
    category = "hort",
    printcolumn(name = "Target", type_ = "string", json_path = ".status.targetKind"),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.storageGroupRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.percent"),
    printcolumn(name = "Snapshot", type_ = "string", json_path = ".status.snapshotId"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 245")
        .message("metadata.name of a RestoreRequest may have at most 245 characters: its agent pod is named <name>-restore"),
    validation = Rule::new("!has(self.spec.archiveWaitMinutes) || !has(self.spec.activeDeadlineSeconds) || self.spec.activeDeadlineSeconds > self.spec.archiveWaitMinutes * 60")
        .message("spec.activeDeadlineSeconds must be longer than spec.archiveWaitMinutes (in seconds), or the pod is stopped while it waits for the archive: raise it, or leave it unset to get the default plus the wait")
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequestSpec {
    /// The group that holds the snapshot: a StorageGroup of this namespace, or (with
    /// `kind: ClusterStorageGroup`) a shared group that allows this namespace, whose
    /// repository for this namespace holds only this namespace's snapshots. To restore into
    /// another namespace or cluster, create a StorageGroup there with the same targets and key.
    pub storage_group_ref: GroupRef,
    /// Which snapshot to restore: exactly one of `backupJobRef`, `snapshotId` or `tags`.
    pub source: RestoreSource,
    /// Where to restore to: exactly one of `postgres`, `mariadb` or `volume`.
    pub target: RestoreTarget,
    /// Seconds the restore may run before it is stopped and counted as failed; when unset, the
    /// operator's default (chart value `agent.activeDeadlineSeconds`, 6 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Minutes the restore waits for packs in an S3 target's archive storage class (`GLACIER`,
    /// `DEEP_ARCHIVE`): the agent requests their restore, then waits up to this long before it
    /// reads them. Unset: it requests their restore and fails at once, naming the objects (run
    /// the restore again once they are readable). Without `activeDeadlineSeconds` the pod's
    /// deadline becomes the operator's default plus this wait; with it, the deadline must be
    /// longer than the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20160))]
    pub archive_wait_minutes: Option<u32>,
    /// Overrides for the agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentPodOverrides>,
}

/// Which snapshot to restore.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.backupJobRef), has(self.snapshotId), has(self.tags) && size(self.tags) > 0].filter(x, x).size() == 1")
    .message("set exactly one of source.backupJobRef, source.snapshotId or source.tags"))]
pub struct RestoreSource {
    /// The snapshot written by this BackupJob (in this namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_job_ref: Option<LocalObjectRef>,
    /// A snapshot id, as shown by `hort-agent snapshots` or a BackupJob's status (a unique
    /// prefix of at least 8 characters is enough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 64), regex(pattern = r"^[0-9a-f]+$"))]
    pub snapshot_id: Option<String>,
    /// The newest snapshot that carries all of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 128)))]
    pub tags: Vec<String>,
}

/// Where to restore to: exactly one of the fields is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.mariadb), has(self.volume)].filter(x, x).size() == 1")
    .message("set exactly one of target.postgres, target.mariadb or target.volume"))]
pub struct RestoreTarget {
    /// A PostgreSQL server; the snapshot must hold PostgreSQL dumps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<DatabaseRestoreTarget>,
    /// A MariaDB or MySQL server; the snapshot must hold MariaDB dumps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mariadb: Option<DatabaseRestoreTarget>,
    /// A PersistentVolumeClaim; the snapshot must hold files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeRestoreTarget>,
}

/// A database server to restore into.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tables) || size(self.tables) == 0 || (has(self.databases) && size(self.databases) == 1)")
    .message("tables needs exactly one entry in databases: name the database the tables come from")
    .field_path(".tables"))]
pub struct DatabaseRestoreTarget {
    /// Host name or Service name of the server.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port of the server; 5432 for PostgreSQL and 3306 for MariaDB when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Secret with the keys `username` and `password` of a user allowed to create databases.
    /// Its owner allows Hort to use it with the label `hort.dev/usable: "true"`; without it the request fails (reason `InvalidReference`) before anything is written.
    pub credentials_secret_ref: SecretRef,
    /// TLS of the connections; `Prefer` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DatabaseTls>,
    /// Databases to restore, each optionally under a new name; every database in the
    /// snapshot (and the roles or users) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(d, self.exists_one(e, (has(e.to) ? e.to : e.from) == (has(d.to) ? d.to : d.from)))")
        .message("two entries restore into the same database name"))]
    #[schemars(length(max = 64))]
    pub databases: Vec<DatabaseMapping>,
    /// Restore only these tables (`table` or `schema.table`) of the one database named in
    /// `databases`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 128)))]
    pub tables: Vec<String>,
    /// Drop objects that the restore replaces. Without it, restoring over an existing database
    /// or table fails and names what exists.
    #[serde(default)]
    pub clean: bool,
}

/// One database to restore, optionally renamed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.to) || self.to != self.from")
    .message("databases[].to must differ from databases[].from; leave `to` out to restore under the same name")
    .field_path(".to"))]
pub struct DatabaseMapping {
    /// Name of the database in the snapshot.
    #[schemars(length(min = 1, max = 63))]
    pub from: String,
    /// Name to restore it under; the same name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub to: Option<String>,
}

/// A PersistentVolumeClaim to restore files into.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(self.size)")
    .message("volume.storageClassName and volume.size go together: set both to create the claim when it is missing, or neither to require an existing claim")
    .field_path(".size"))]
pub struct VolumeRestoreTarget {
    /// Name of the claim, in this namespace. An existing claim is written to only when its
    /// owner allows it with the label `hort.dev/usable: "true"`; otherwise the request fails
    /// (reason `InvalidReference`) before anything is written. A claim Hort creates gets the
    /// label.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub claim_name: String,
    /// StorageClass of the claim created when it does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Size of the claim created when it does not exist, e.g. `10Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// Restore only these paths of the snapshot (files or directories, relative to its root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(p, !p.startsWith('/') && !p.matches('(^|/)[.][.](/|$)'))")
        .message("volume.paths must be relative to the snapshot root and must not contain '..'"))]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub paths: Vec<String>,
    /// Directory inside the claim to restore into; its root when empty.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')")
        .message("volume.subPath must be a relative path without '..'"))]
    pub sub_path: String,
    /// What happens to a file, link or directory that already exists: `Never` keeps it (a
    /// directory keeps its owner, mode and time), `IfNewer` replaces it when the snapshot's copy
    /// is newer, `Always` replaces it. The kept entries are counted in `status.stats.skipped`; a
    /// restore that kept every entry it was asked for and wrote none fails and says so.
    #[serde(default)]
    pub overwrite: OverwritePolicy,
}

/// When a restore replaces an existing file.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OverwritePolicy {
    /// Keep existing files.
    #[default]
    Never,
    /// Replace files older than the snapshot's copy.
    IfNewer,
    /// Replace every existing file.
    Always,
}

/// The kind of place a restore writes to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A PostgreSQL server.
    Postgres,
    /// A MariaDB or MySQL server.
    Mariadb,
    /// A volume.
    Volume,
}

/// Observed state of a RestoreRequest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequestStatus {
    /// Pending, Running, Succeeded or Failed.
    #[serde(default)]
    pub phase: Phase,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The kind of target: postgres, mariadb or volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kind: Option<TargetKind>,
    /// Conditions: `SnapshotResolved`, `Complete`, `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The snapshot being restored, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// When the restore started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the restore reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Name of the agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pod: Option<String>,
    /// Live progress while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Totals of a finished restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<RestoreStats>,
    /// Human-readable summary of the current state or the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Totals of a finished restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStats {
    /// Bytes written to the target.
    pub bytes_restored: u64,
    /// Files (volume targets) or streams (database targets) restored.
    pub files: u64,
    /// Existing files and links of a volume target that `spec.target.volume.overwrite` kept as
    /// they were. A restore that kept every entry it was asked for and wrote none fails.
    #[serde(default)]
    pub skipped: u64,
    /// Rows per restored table, counted in the target after the restore (database targets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub row_counts: BTreeMap<String, u64>,
    /// Wall-clock seconds of the restore.
    pub duration_seconds: f64,
}
