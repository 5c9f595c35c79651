//! `BackupJob`: one backup run of a database or a volume into a storage group.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{AgentPodOverrides, DNS_SUBDOMAIN, DatabaseTls, GroupRef, Phase, Progress, SecretRef};
use crate::storage_group::Bandwidth;

/// One backup run: what to back up (`source`), where to (`storageGroupRef`), and how the agent
/// pod runs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hort.dev",
    version = "v1alpha1",
    kind = "BackupJob",
    doc = "One backup run of a PostgreSQL or MariaDB server or a volume into a StorageGroup.",
    namespaced,
    status = "BackupJobStatus",
    shortname = "hbj",
    shortname = "hbackup",
    category = "hort",
    printcolumn(name = "Source", type_ = "string", json_path = ".status.sourceKind"),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.storageGroupRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.percent"),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.stats.storedSize"),
    printcolumn(name = "Snapshot", type_ = "string", json_path = ".status.snapshotId", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("metadata.name of a BackupJob may have at most 63 characters: it labels the job's agent pods")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupJobSpec {
    /// The group that receives the backup: a StorageGroup of this namespace, or (with
    /// `kind: ClusterStorageGroup`) a shared group that allows this namespace.
    pub storage_group_ref: GroupRef,
    /// What to back up: exactly one of `postgres`, `mariadb` or `volume`.
    pub source: BackupSource,
    /// Commands run in application pods before and after the backup, e.g. to flush caches.
    /// Only pods annotated `hort.dev/allow-hooks: "true"` by whoever manages them run hooks;
    /// a hook aimed at any other pod fails without running. The hooks of one namespace's jobs
    /// run at most two at a time; the others wait their turn (the job's message says "running
    /// pre hooks" or "running post hooks" meanwhile). Each attempt's agent pod is created
    /// before its pre hooks and held back from scheduling (gate `hort.dev/pre-hooks`) until
    /// they passed, with `snapshot: CSI` until its snapshot is ready and the post hooks ran: a
    /// pod the namespace refuses (a quota, an admission check) ends the attempt before any hook
    /// ran, and a held pod whose attempt ends (a pre hook failed) is deleted without running.
    /// With `snapshot: Auto` the pod is created after the snapshot and the post hooks: only
    /// then is it known whether it reads the snapshot or the live volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Tags stored with the snapshot, used to find it again (e.g. by a RestoreRequest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9][-._:=A-Za-z0-9]*$"))
    )]
    pub tags: Vec<String>,
    /// Seconds an attempt may run before it is stopped and counted as failed; when unset, the
    /// operator's default (chart value `agent.activeDeadlineSeconds`, 6 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// How many times a failed attempt is retried, with exponential backoff, before the job
    /// fails. A pre hook that fails with `onError: Fail` ends the job at once, without retries.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: u32,
    /// Overrides for the agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentPodOverrides>,
    /// This job's own bandwidth limits: each rate set here replaces the storage group's
    /// `spec.bandwidth` rate for this job's agent pods (e.g. a slower daytime backup); a rate
    /// left unset keeps the group's. Same grammar and counting as the group's field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

fn default_backoff_limit() -> u32 {
    3
}

/// What a backup reads: exactly one of the fields is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.mariadb), has(self.volume)].filter(x, x).size() == 1")
    .message("set exactly one of source.postgres, source.mariadb or source.volume"))]
pub struct BackupSource {
    /// A PostgreSQL server, dumped with `pg_dump` (one consistent dump per database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSource>,
    /// A MariaDB or MySQL server, dumped with `mariadb-dump --single-transaction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mariadb: Option<MariadbSource>,
    /// The files of a PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeSource>,
}

impl BackupSource {
    /// The kind of source that is set: `postgres`, `mariadb` or `volume`.
    pub fn kind(&self) -> Option<SourceKind> {
        match (&self.postgres, &self.mariadb, &self.volume) {
            (Some(_), None, None) => Some(SourceKind::Postgres),
            (None, Some(_), None) => Some(SourceKind::Mariadb),
            (None, None, Some(_)) => Some(SourceKind::Volume),
            _ => None,
        }
    }
}

/// The kind of data a backup holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// PostgreSQL dumps.
    Postgres,
    /// MariaDB or MySQL dumps.
    Mariadb,
    /// Files of a volume.
    Volume,
}

/// A database server to connect to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSource {
    /// Host name or Service name of the server, e.g. `db-rw.prod.svc`.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port of the server.
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Databases to back up; all databases except templates when empty. Roles and
    /// tablespaces are always included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63)))]
    pub databases: Vec<String>,
    /// Secret with the keys `username` and `password` (e.g. a `kubernetes.io/basic-auth` Secret).
    /// Its owner allows Hort to use it with the label `hort.dev/usable: "true"`; without it the job fails (reason `InvalidReference`) before any data is read.
    pub credentials_secret_ref: SecretRef,
    /// TLS of the connections; `Prefer` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DatabaseTls>,
}

fn default_postgres_port() -> u16 {
    5432
}

/// A MariaDB or MySQL server to connect to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MariadbSource {
    /// Host name or Service name of the server, e.g. `mariadb.prod.svc`.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port of the server.
    #[serde(default = "default_mariadb_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Databases to back up; all databases except the system schemas when empty. Users and
    /// grants are always included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 64)))]
    pub databases: Vec<String>,
    /// Secret with the keys `username` and `password`. Its owner allows Hort to use it with the label `hort.dev/usable: "true"`;
    /// without it the job fails (reason `InvalidReference`) before any data is read.
    pub credentials_secret_ref: SecretRef,
    /// TLS of the connections; `Prefer` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DatabaseTls>,
}

fn default_mariadb_port() -> u16 {
    3306
}

/// The files of a PersistentVolumeClaim, or of several claims of one application selected by
/// their labels.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.claimName) != has(self.claimSelector)")
    .message("set exactly one of volume.claimName (one claim) or volume.claimSelector (every claim with these labels); remove the other"))]
#[x_kube(validation = Rule::new("self.snapshot != 'None' || !has(self.volumeSnapshotClassName)")
    .message("volume.volumeSnapshotClassName is set but volume.snapshot is None; remove the class or set snapshot to Auto or CSI")
    .field_path(".volumeSnapshotClassName"))]
#[x_kube(validation = Rule::new("!has(self.volumeGroupSnapshotClassName) || (has(self.claimSelector) && self.snapshot != 'None')")
    .message("volume.volumeGroupSnapshotClassName needs volume.claimSelector and snapshot Auto or CSI; remove the class or select the claims with claimSelector")
    .field_path(".volumeGroupSnapshotClassName"))]
pub struct VolumeSource {
    /// Name of the claim, in this namespace. Its owner allows Hort to use it with the label `hort.dev/usable: "true"`;
    /// without it the job fails (reason `InvalidReference`) before any data is read. The claim
    /// is mounted at the root of the backup (`/source`). Exactly one of `claimName` and
    /// `claimSelector` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub claim_name: Option<String>,
    /// Labels that select the claims to back up, like a pod's `nodeSelector`: every claim in
    /// this namespace that has all of them is backed up in one snapshot, at one point in time
    /// (one VolumeGroupSnapshot where the cluster serves them, else one VolumeSnapshot per claim,
    /// all between the same pre and post hooks). Each claim is mounted at `/source/CLAIM`, so
    /// `paths` and `exclude` start with the claim's name (`paths: [db]` is claim `db`). Every
    /// selected claim must be marked `hort.dev/usable: "true"` by its owner, else the job fails
    /// (reason `InvalidReference`) naming the claim; while no claim matches, the job waits
    /// (Pending). The backup's host name is `NAMESPACE/` and the labels as `k=v` sorted and
    /// joined by `,`, the same from run to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("volume.claimSelector needs at least one label"))]
    pub claim_selector: Option<BTreeMap<String, String>>,
    /// Paths inside the volume to back up, relative to its root; the whole volume when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(p, !p.startsWith('/') && !p.matches('(^|/)[.][.](/|$)'))")
        .message("volume.paths must be relative to the volume root and must not contain '..'"))]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub paths: Vec<String>,
    /// Patterns of files and directories to leave out, with the rules of `.gitignore` files: a
    /// pattern without a `/` matches a name at any depth (`*.log`, `node_modules`); a trailing
    /// `/` matches directories only, and so all below them (`cache/`); a `/` at the start or in
    /// the middle anchors the pattern at the volume root (`/tmp`, `data/cache`); `*` and `?`
    /// match within a name, `**` any number of directories (`**/*.tmp`, `logs/**`); `!pattern`
    /// includes again what an earlier pattern left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub exclude: Vec<String>,
    /// How a consistent view of the volume is taken. `CSI`: each attempt runs the pre hooks,
    /// creates a VolumeSnapshot of the claim, runs the post hooks as soon as it is ready to use
    /// (waiting at most 5 minutes), provisions a temporary claim from it and backs that up
    /// read-only; the snapshot, the temporary claim and the agent pod that read it are deleted
    /// when the attempt ends (its outcome is in status). A
    /// snapshot that fails fails the attempt (retried by `backoffLimit`). `Auto`: the same, but
    /// when the cluster cannot snapshot the claim (no VolumeSnapshot API, no class for its
    /// driver, not a CSI volume) the live volume is read, with the hooks around the whole
    /// backup, and the job's `VolumeSnapshot` condition (False) and a Warning Event say why.
    /// `None`: the live volume is read. A live read may copy files written meanwhile torn.
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// VolumeSnapshotClass of the snapshots (`Auto` and `CSI`); when unset, the cluster's default
    /// class for the claim's CSI driver. With `claimSelector` it is the class of the
    /// VolumeSnapshots taken one per claim where no VolumeGroupSnapshot can be taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// VolumeGroupSnapshotClass of the group snapshot of a `claimSelector` (`Auto` and `CSI`);
    /// when unset, the cluster's default group class for the claims' CSI driver. Where no class
    /// applies (or the cluster serves no `groupsnapshot.storage.k8s.io/v1`), the claims are
    /// snapshotted one by one between the same hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_class_name: Option<String>,
}

/// Whether a volume is backed up from a CSI VolumeSnapshot.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SnapshotMode {
    /// A CSI VolumeSnapshot when the cluster can take one of the claim, else the live volume
    /// (the job's `VolumeSnapshot` condition and a Warning Event say so).
    #[default]
    Auto,
    /// A CSI VolumeSnapshot or no backup: an attempt whose snapshot fails fails.
    #[serde(rename = "CSI")]
    Csi,
    /// Never use a snapshot: read the live volume.
    None,
}

/// Commands run around a backup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// Run before the data is read (before the VolumeSnapshot is taken), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub pre: Vec<Hook>,
    /// Run after the data was read (also when the backup failed), in order; with a volume
    /// snapshot, as soon as it is ready to use (or has failed), before the data is read from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub post: Vec<Hook>,
}

/// A command run in a container of an application pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pod) != has(self.selector)")
    .message("set exactly one of pod or selector"))]
pub struct Hook {
    /// Name of the hook, shown in events and errors.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Name of the pod to run the command in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Labels that select the pods to run the command in (every matching pod runs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// Container to run the command in; the pod's first container when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments, run without a shell.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Seconds the operator waits for the command; after that the hook counts as failed
    /// (timed out). The command itself is not stopped in the pod.
    #[serde(default = "default_hook_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u32,
    /// What a failing or timed-out command does to the backup.
    #[serde(default)]
    pub on_error: HookErrorPolicy,
}

fn default_hook_timeout() -> u32 {
    60
}

/// What a failed hook does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HookErrorPolicy {
    /// Fail the backup (a pre hook: before any data is read; a post hook: the snapshot is
    /// kept, but the job is marked failed).
    #[default]
    Fail,
    /// Record a warning event and carry on.
    Continue,
}

/// Observed state of a BackupJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupJobStatus {
    /// Pending, Running, Succeeded or Failed.
    #[serde(default)]
    pub phase: Phase,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The kind of source: postgres, mariadb or volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<SourceKind>,
    /// Conditions: `StorageGroupReady`, `GroupSlot` (when the group sets `maxConcurrentJobs`:
    /// False with reason `WaitingForGroupSlot` while the job waits for a slot), `VolumeSnapshot`
    /// (volume sources), `Complete`, `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// The attempt whose post hooks have run (they run once after each attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_hooks_attempt: Option<u32>,
    /// Name of the agent pod of the current or last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pod: Option<String>,
    /// The VolumeSnapshot of the current or last attempt of a volume source, if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot: Option<VolumeSnapshotRecord>,
    /// Id of the snapshot written, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Live progress while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Totals of a finished backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<BackupStats>,
    /// Human-readable summary of the current state or the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The CSI VolumeSnapshot an attempt backs up (or, for a `claimSelector`, its
/// VolumeGroupSnapshot or its VolumeSnapshots). The snapshots, the temporary claims and the
/// attempt's agent pod are deleted when the attempt ends; this record stays.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotRecord {
    /// The attempt that took it.
    pub attempt: u32,
    /// Name of the VolumeSnapshot, in the job's namespace (`claimName`); for a
    /// `claimSelector`, the attempt's name, which its agent pod and VolumeGroupSnapshot carry.
    pub name: String,
    /// Name of the temporary claim provisioned from it, which the agent pod reads
    /// (`claimName` only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claim_name: String,
    /// Name of the VolumeGroupSnapshot the claims of a `claimSelector` were taken with; unset
    /// when they were taken one VolumeSnapshot per claim (or for a `claimName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// For a `claimSelector`: each selected claim, the VolumeSnapshot of it (a member of
    /// `group`, or its own), and the temporary claim provisioned from that, which the agent
    /// pod mounts at `/source/CLAIM`. The snapshot names are filled in once they are taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimSnapshot>,
    /// When the snapshot was cut (the VolumeSnapshot's or the VolumeGroupSnapshot's
    /// `status.creationTime`; of several VolumeSnapshots, the last one's): the point in time
    /// the backup shows. Unset until the snapshot is ready to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Seconds from the end of the pre hooks to the end of the post hooks: how long the
    /// application was held for the snapshot. Unset for a job without hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks_pause_seconds: Option<f64>,
}

/// One claim of a `claimSelector` snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSnapshot {
    /// The selected claim.
    pub claim_name: String,
    /// The VolumeSnapshot of it; empty until it is taken.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub snapshot: String,
    /// The temporary claim provisioned from the snapshot.
    pub temporary_claim: String,
}

/// Totals of a finished backup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStats {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes of chunks that were not yet in the repository (before compression).
    pub bytes_new: u64,
    /// Bytes added to the storage group (after compression and encryption).
    pub bytes_stored: u64,
    /// `bytes_stored`, human readable (e.g. `1.2 GiB`).
    pub stored_size: String,
    /// Files (volume sources) or streams (database sources) backed up.
    pub files: u64,
    /// `bytes_read / bytes_stored`: how much dedup and compression saved.
    pub dedup_ratio: f64,
    /// Wall-clock seconds of the successful attempt.
    pub duration_seconds: f64,
}
