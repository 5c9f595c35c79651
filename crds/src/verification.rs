//! `Verification`: one run that proves a snapshot restorable, by restoring it into a throwaway
//! database server or a temporary volume and checking what arrived.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::{
    api::resource::Quantity,
    apis::meta::v1::{Condition, Time},
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{AgentPodOverrides, GroupRef, Phase};
use crate::restore_request::RestoreSource;

/// Restores one snapshot into scratch space that exists only for the run and checks it (the
/// measured restore time is the recovery time objective (RTO) actually achieved), or reads
/// the repository's packs and checks them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hort.dev",
    version = "v1alpha1",
    kind = "Verification",
    doc = "Proves a snapshot restorable: restores it into a throwaway database server or a temporary volume, checks it, and records what was checked and how long the restore took; or checks the repository itself by reading a share of its packs.",
    namespaced,
    status = "VerificationStatus",
    shortname = "hver",
    shortname = "hverify",
    category = "hort",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Snapshot", type_ = "string", json_path = ".status.snapshotId"),
    printcolumn(name = "Result", type_ = "string", json_path = ".status.message"),
    printcolumn(name = "RTO", type_ = "number", json_path = ".status.restoreDurationSeconds"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 246")
        .message("metadata.name of a Verification may have at most 246 characters: its agent pod is named <name>-verify")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.database) ? 1 : 0) + (has(self.volume) ? 1 : 0) + (has(self.repository) ? 1 : 0) == 1")
    .message("set exactly one of spec.database (the snapshot holds PostgreSQL or MariaDB dumps), spec.volume (it holds files) or spec.repository (read the repository's packs)"))]
#[x_kube(validation = Rule::new("has(self.source) != has(self.repository)")
    .message("spec.source names the snapshot that spec.database or spec.volume restores and is required with them; spec.repository verifies the whole repository and takes no spec.source: remove it"))]
pub struct VerificationSpec {
    /// The group that holds the snapshot (or, with `repository`, the repository to verify):
    /// a StorageGroup of this namespace, or a ClusterStorageGroup that allows this namespace
    /// (`kind: ClusterStorageGroup`), whose repository of this namespace is then read
    /// through the group's proxy, as a RestoreRequest's is.
    pub storage_group_ref: GroupRef,
    /// Which snapshot to verify: exactly one of `backupJobRef`, `snapshotId` or `tags`.
    /// Required with `database` or `volume`; not allowed with `repository`, which checks
    /// every snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RestoreSource>,
    /// Verify database dumps by restoring them into a throwaway server started in the agent
    /// pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseVerification>,
    /// Verify files by restoring them into a temporary claim and comparing every file's
    /// content with the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeVerification>,
    /// Verify the repository itself instead of one snapshot: its index and every snapshot's
    /// trees and blobs, and a share of its packs read byte by byte. Nothing is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryVerification>,
    /// Seconds the run may take before it is stopped and counted as failed; when unset, the
    /// operator's default (chart value `agent.activeDeadlineSeconds`, 6 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Overrides for the agent pod (the agent container; the database server has its own
    /// `database.resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentPodOverrides>,
}

/// How a snapshot of database dumps is verified.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseVerification {
    /// The server the dumps are restored into: `Postgres` or `Mariadb`; it must match the
    /// dumps in the snapshot.
    pub kind: DatabaseKind,
    /// Image of the throwaway server, started as a sidecar of the agent pod and listening on
    /// 127.0.0.1 only; when unset `postgres:17` (Postgres) or `mariadb:11` (Mariadb). Any
    /// image that reads the official images' `POSTGRES_PASSWORD` / `MARIADB_ROOT_PASSWORD`
    /// works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Compute resources of the throwaway server; when unset 250m CPU and 256Mi memory
    /// requested, 1 CPU and 1Gi memory at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The user's own checks, run after the restore: each query must return one row with one
    /// column that is true, e.g. `SELECT sum(amount) = 0 FROM ledger`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub assertions: Vec<SqlAssertion>,
}

/// The kind of throwaway database server.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DatabaseKind {
    /// PostgreSQL.
    Postgres,
    /// MariaDB (also for MySQL dumps).
    Mariadb,
}

/// A query that must return true on the restored data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlAssertion {
    /// Name of the check, shown in `status.checked` and `status.failures`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The restored database the query runs in.
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// The query; it passes when it returns exactly one row of one column that is true.
    #[schemars(length(min = 1, max = 4096))]
    pub sql: String,
}

/// The temporary claim a snapshot of files is restored into.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeVerification {
    /// StorageClass of the temporary claim; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Size of the temporary claim, e.g. `10Gi`: at least the size of the snapshot's files.
    pub size: Quantity,
    /// Your own check of the restored files, run after every file's content matched the
    /// snapshot: a container of your image that sees the files read-only at `/restore` and
    /// passes when its command exits 0. It does not run when the agent's checks failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<VerificationCommand>,
}

/// A command of the user's that checks a volume verification's restored files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.command.size() > 0 && self.command[0].size() > 0")
    .message("command must name the program to run, e.g. [\"sh\", \"-c\", \"test -s /restore/app.db\"]"))]
pub struct VerificationCommand {
    /// Image of the container that runs the command, e.g. `alpine:3.20` or one with `sqlite3`.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// The program and its arguments (the container's entrypoint), e.g. `["sh", "-c",
    /// "sqlite3 /restore/app.db 'PRAGMA integrity_check' | grep -qx ok"]`. Exit code 0 passes;
    /// any other fails the Verification with the exit code and the end of the output.
    #[schemars(length(max = 64))]
    pub command: Vec<String>,
    /// Further arguments, after `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub args: Vec<String>,
    /// Compute resources of the container; when unset 100m CPU and 128Mi memory requested, 1
    /// CPU and 512Mi memory at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Seconds the command may run; when it has not ended by then, it is stopped and the
    /// Verification fails. When unset only the run's `activeDeadlineSeconds` bounds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i64>,
    /// The user id the command runs as (never root; its group id is the same), e.g. the owner
    /// of the files it reads: restored files keep their owners and modes. 65532 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_user: Option<i64>,
}

/// A check of the whole repository (`hort-agent verify`): every snapshot's trees and data
/// blobs are indexed, every indexed pack exists, and a share of the packs is read, decrypted
/// and hashed blob by blob. The run fails naming each damaged pack and the snapshot files or
/// streams that lose data with it. Nothing is restored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryVerification {
    /// Percent of the packs read and checked byte by byte, 1 to 100: a random share (at least
    /// one pack) picked anew on each run, so repeated runs cover the repository over time;
    /// `100` reads every pack. Reading costs one download of each pack read.
    #[schemars(range(min = 1, max = 100))]
    pub read_data_percent: u8,
}

/// Observed state of a Verification.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// Pending, Running, Succeeded (every check passed) or Failed.
    #[serde(default)]
    pub phase: Phase,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `SnapshotResolved`, `Complete`, `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The snapshot verified, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Name of the agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pod: Option<String>,
    /// When the agent pod was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Seconds the restore took, measured by the agent: the recovery time achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_duration_seconds: Option<f64>,
    /// Seconds the checks after the restore took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_duration_seconds: Option<f64>,
    /// What was restored: files, bytes and tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<RestoredTotals>,
    /// What a repository verification read: snapshots walked, packs stored and read, bytes
    /// read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryTotals>,
    /// What was checked, e.g. `table shop.orders: 1200 rows` or `assertion balanced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checked: Vec<String>,
    /// The checks that failed (the first ones, when there are many).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<VerificationFailure>,
    /// How many checks failed in all.
    #[serde(default)]
    pub failures_total: u64,
    /// Human-readable summary of the current state or of the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Totals of what a verification restored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredTotals {
    /// Files (volumes) or dump streams (databases).
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
    /// Tables (databases).
    pub tables: u64,
}

/// One check that failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationFailure {
    /// What failed: a file, a table, a database or an assertion.
    pub subject: String,
    /// How it failed.
    pub detail: String,
}

/// What a repository verification read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryTotals {
    /// Snapshots whose trees and blobs were checked against the index.
    pub snapshots: u64,
    /// Packs the repository stores.
    pub packs_stored: u64,
    /// Packs read, decrypted and hashed.
    pub packs_read: u64,
    /// Bytes of the packs read and found intact.
    pub bytes_read: u64,
}
