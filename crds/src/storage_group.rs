//! `StorageGroup`: a set of backup targets and how a repository's data is spread over them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{AgentPodOverrides, CRON, DNS_SUBDOMAIN, SecretKeyRef, SecretRef, TIME_ZONE};
use crate::schedule::{HistoryLimit, VerificationRuns};

/// A named set of backup targets (S3 buckets, PVCs) that together hold one Hort repository.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hort.dev",
    version = "v1alpha1",
    kind = "StorageGroup",
    doc = "A named set of backup targets (S3 buckets, PVCs) that together hold one Hort repository.",
    namespaced,
    status = "StorageGroupStatus",
    shortname = "hsg",
    category = "hort",
    printcolumn(name = "Strategy", type_ = "string", json_path = ".spec.strategy"),
    printcolumn(name = "Targets", type_ = "integer", json_path = ".status.targetCount"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Used", type_ = "string", json_path = ".status.usedSize"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 215")
        .message("metadata.name of a StorageGroup may have at most 215 characters: its check pods are named <name>-check-<generation>-<time>"),
    validation = Rule::new("!has(self.spec.verification) || self.metadata.name.size() <= 63")
        .message("metadata.name of a StorageGroup with spec.verification may have at most 63 characters: it is the value of the label hort.dev/storage-group on the group's Verifications; shorten the name or remove spec.verification")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.strategy != 'Mirror' || self.targets.size() >= 2")
    .message("Mirror needs at least two entries in spec.targets; use Spread for a single target")
    .field_path(".strategy"))]
#[x_kube(validation = Rule::new("!has(self.minHealthyTargets) || (self.strategy == 'Mirror' && self.minHealthyTargets <= self.targets.size())")
    .message("spec.minHealthyTargets applies to Mirror only and can be at most the number of targets")
    .field_path(".minHealthyTargets"))]
#[x_kube(validation = Rule::new("self.targets.all(t, self.targets.exists_one(u, u.name == t.name))")
    .message("every target needs a unique name")
    .field_path(".targets"))]
pub struct StorageGroupSpec {
    /// The places where backup data is stored. One group holds one repository; its data is
    /// spread over, or mirrored across, these targets according to `strategy`.
    #[schemars(length(min = 1, max = 16))]
    pub targets: Vec<Target>,
    /// How data is distributed over the targets: `Spread` places each pack file on one target,
    /// chosen by weight, passing over a target that reports too little free space (PVCs) or
    /// fails the write; `Mirror` writes every file to every reachable target, so each target
    /// alone holds the repository once it is level (checks copy what a target that was down
    /// or added later lacks); `Failover` writes to the first healthy target in list order.
    /// Metadata (index, snapshots) goes to every target under every strategy. Backups run
    /// while at least one target is healthy (`Mirror`: `minHealthyTargets`); a restore under
    /// `Spread` or `Failover` needs the targets that hold its packs.
    #[serde(default)]
    pub strategy: Strategy,
    /// `Mirror` only: how many targets must take every file for a backup to succeed
    /// (default 1); the group is Ready while at least this many targets are healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub min_healthy_targets: Option<u32>,
    /// Encryption of the repository. Every stored object is encrypted with a key protected by
    /// this password; without it the backups cannot be read, so keep a copy outside the cluster.
    pub encryption: Encryption,
    /// Overrides for the group's check pods and the agent pods of its repository
    /// verifications (`verification`): resources, node selector, tolerations, priority class,
    /// as for a BackupJob's agent pods. The proxy pods of ClusterStorageGroups that share this
    /// group take the node selector, tolerations and priority class, and the resources when
    /// set (the proxy has no default resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentPodOverrides>,
    /// How often, in seconds, the operator re-checks that every target is reachable and writable.
    #[serde(default = "default_check_interval")]
    #[schemars(range(min = 30, max = 86400))]
    pub check_interval_seconds: u32,
    /// At most this many BackupJobs of this group run at once (1 to 1000; no limit when
    /// unset). A job holds a slot from the start of its first attempt until it succeeds or
    /// fails for good (its retries keep it). A job beyond the limit stays `Pending` with
    /// condition `GroupSlot` False, reason `WaitingForGroupSlot` (and an Event), and starts
    /// when a slot frees, oldest job (by creation time) first. RestoreRequests, Verifications
    /// (also the repository verifications of `verification`) and the group's own checks are
    /// not counted and never wait for a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_jobs: Option<u32>,
    /// Bandwidth limits of every agent pod that reads or writes this group's repository
    /// (backups, restores, checks, prunes, verifications, `kubectl hort` browsing and
    /// disaster-recovery catalog reads): bytes per second each pod may send to and receive
    /// from the targets, as quantity strings: digits, an optional fraction and a suffix `Ki`,
    /// `Mi`, `Gi`, `Ti` (powers of 1024) or `k`, `M`, `G`, `T` (powers of 1000), at least
    /// `"1k"`. No limit when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// Verifies the repository itself on a cron schedule of its own: each run creates a
    /// Verification named `<group>-verify-<unix time>`, owned by the group and labelled
    /// `hort.dev/storage-group: <group>`, that reads `readDataPercent` of the packs (see
    /// Verification `spec.repository`); the newest is shown in `status.lastVerification`. No
    /// repository verification when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<RepositoryVerificationPolicy>,
}

/// Bytes per second each agent pod of a StorageGroup may transfer (the grammar of
/// `hort_protocol::BytesPerSecond`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    /// Bytes per second a pod may send to the targets, e.g. `"20Mi"`: the files as stored
    /// (after compression and encryption), all of the pod's threads and all targets together,
    /// so a `Mirror` that writes to three targets sends each copy within the one limit. A
    /// pack larger than one second's worth is not refused: it waits for its share. No limit
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 24))]
    #[x_kube(validation = Rule::new(r"self.matches('^[0-9]+([.][0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$') && quantity(self).compareTo(quantity('1k')) >= 0")
        .message("spec.bandwidth.uploadPerSecond must be bytes per second of at least 1k, written as digits with an optional fraction and suffix Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000), e.g. \"20Mi\""))]
    pub upload_per_second: Option<String>,
    /// Bytes per second a pod may receive from the targets, e.g. `"50Mi"`, counted like
    /// `uploadPerSecond` (a restore reads each pack once, from one target). No limit when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 24))]
    #[x_kube(validation = Rule::new(r"self.matches('^[0-9]+([.][0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$') && quantity(self).compareTo(quantity('1k')) >= 0")
        .message("spec.bandwidth.downloadPerSecond must be bytes per second of at least 1k, written as digits with an optional fraction and suffix Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000), e.g. \"50Mi\""))]
    pub download_per_second: Option<String>,
}

/// When and how much of a StorageGroup's repository is verified.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryVerificationPolicy {
    /// Cron expression of the runs, read in `timeZone`, e.g. `0 4 * * 6` (Saturdays at
    /// 04:00), or one of `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. A run that is
    /// due while the previous one still runs starts when it ends; after an operator outage
    /// only the latest missed run happens.
    #[schemars(regex(pattern = CRON))]
    pub schedule: String,
    /// IANA time zone the schedule is read in, e.g. `Europe/Berlin`; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = TIME_ZONE))]
    pub time_zone: Option<String>,
    /// Percent of the packs each run reads and checks byte by byte, 1 to 100 (a random share
    /// picked anew on each run; `100`: every pack).
    #[schemars(range(min = 1, max = 100))]
    pub read_data_percent: u8,
    /// How many finished Verifications of this group are kept as objects.
    #[serde(default)]
    pub history_limit: HistoryLimit,
}

fn default_check_interval() -> u32 {
    300
}

/// How a storage group distributes pack files over its targets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Strategy {
    /// Each pack is stored on one target, chosen by weight, skipping full or failing ones.
    #[default]
    Spread,
    /// Each file is stored on every reachable target.
    Mirror,
    /// Each pack is stored on the first healthy target in list order.
    Failover,
}

/// One target of a storage group: exactly one of `s3` or `pvc`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.s3) != has(self.pvc)")
    .message("set exactly one of s3 or pvc"))]
pub struct Target {
    /// Name of the target, unique in the group; shown in status and metrics. At most 56
    /// characters: agent pods mount a PVC target as volume `target-<name>`, a DNS label.
    #[schemars(length(min = 1, max = 56), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Relative share of new data this target receives with the `Spread` strategy.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: u32,
    /// An S3-compatible object store bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Target>,
    /// A PersistentVolumeClaim in the group's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcTarget>,
}

fn default_weight() -> u32 {
    1
}

/// An S3-compatible bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Target {
    /// Endpoint URL, e.g. `https://s3.eu-central-1.amazonaws.com` or `http://s3.storage.svc:9000`.
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"))]
    pub endpoint: String,
    /// Bucket name. The bucket must exist.
    #[schemars(length(min = 3, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"))]
    pub bucket: String,
    /// Key prefix inside the bucket, so that several repositories can share a bucket.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/')")
        .message("spec.targets[].s3.prefix must not start with '/'; write e.g. 'hort/prod'"))]
    pub prefix: String,
    /// Region used to sign requests.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1))]
    pub region: String,
    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`; needed by most
    /// self-hosted S3 servers.
    #[serde(default)]
    pub force_path_style: bool,
    /// Storage class for new pack files (the bulk of the data), e.g. `STANDARD_IA` or
    /// `GLACIER_IR`; the server's default when empty. Config, keys, index files and
    /// snapshots always get the server's default class, so every command can read them.
    /// Packs of tree blobs stay in the default class too, so listing, prune and restore
    /// planning never wait for an archive. Archive classes (`GLACIER`, `DEEP_ARCHIVE`) cost
    /// least but are not readable until restored: a restore that needs such packs first
    /// requests the restore (RestoreObject, 7 days) of all of them and then fails naming
    /// the objects and the class (`hort-agent restore --archive-wait 12h` waits instead);
    /// run it again once the archive has restored them. Prune and verify go on (verify lists
    /// them as not readable now, not as damage). A cheap long-retention copy is a `Mirror`
    /// group whose first target is in a readable class and whose last target has an archive
    /// class (and `objectLock`): restores read the first target and need the archive only
    /// when it is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// S3 Object Lock: every pack, snapshot, key file and the config the agent writes here
    /// carries this retention, so nobody (`Compliance`) or nobody without the bypass
    /// permission (`Governance`) can delete or overwrite it for `retentionDays` days after it
    /// was written. Index files, prune markers and backup locks are not locked (they are
    /// rewritten or deleted as part of normal work, and the index can be rebuilt from the
    /// packs with `hort-agent repair index`). Prune never deletes an object whose retention
    /// has not expired (forget keeps such snapshots, unused packs wait) and deletes it in a
    /// later run once it has. The bucket must have been created with Object Lock enabled:
    /// the check reports it, and a target whose bucket lacks it is not writable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
    /// Secret with the keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Its owner allows Hort to use it with the label `hort.dev/usable: "true"`;
    /// without it the group is not Ready and says so.
    pub credentials_secret_ref: SecretRef,
}

/// S3 Object Lock retention for the objects of one target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLock {
    /// `Governance`: users with `s3:BypassGovernanceRetention` may still delete early;
    /// `Compliance`: nobody can, not even the account's root user, until the date passes.
    pub mode: ObjectLockMode,
    /// Days each object stays locked after it was written, 1 to 36500. Snapshots stay (and
    /// are not forgotten by retention rules) for at least this long.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 36500")
        .message("spec.targets[].s3.objectLock.retentionDays must be 1 to 36500 days (100 years)"))]
    pub retention_days: u32,
}

/// The S3 Object Lock retention mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ObjectLockMode {
    /// Deletable early by users with the bypass-governance permission.
    Governance,
    /// Deletable by nobody until the retention date.
    Compliance,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// A PersistentVolumeClaim used as a target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PvcTarget {
    /// Name of the claim, in the group's namespace. It must be ReadWriteMany when backups
    /// may run on several nodes at once. Its owner allows Hort to use it with the label `hort.dev/usable: "true"`;
    /// without it the group is not Ready and says so.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub claim_name: String,
    /// Directory inside the volume that holds the repository.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')")
        .message("spec.targets[].pvc.subPath must be a relative path without '..'"))]
    pub sub_path: String,
}

/// Repository encryption settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// Secret key that holds the repository password (key `password` unless set), at least
    /// 12 characters: a shorter one creates no repository, and the group says so. The
    /// Secret's owner allows Hort to use it with the label `hort.dev/usable: "true"`; without
    /// it the group is not Ready and says so.
    pub key_secret_ref: SecretKeyRef,
    /// Rotates the repository password: the Secret key holding the password the repository
    /// was opened with before `keySecretRef` changed (usually the old Secret, when
    /// `keySecretRef` now names a new one; change both in one apply). The group's next check
    /// adds a key file for `keySecretRef`'s password, unlocked with this one, then removes
    /// this one's key file; backups wait (`Ready` False, `KeyRotating`) until that check has
    /// run. Condition `KeyRotated` says what it did; once it is True, only `keySecretRef`'s
    /// password opens the repository and this field can be removed. Marked usable like
    /// `keySecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_secret_ref: Option<SecretKeyRef>,
}

/// Observed state of a StorageGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageGroupStatus {
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Identifier of the repository the group holds, once initialised. Recorded once: later
    /// checks fail (`RepositoryChanged`, or the agent's error) if the targets hold another
    /// repository or none, and never create a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<String>,
    /// Number of targets in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_count: Option<u32>,
    /// Bytes stored in all targets together, human readable (e.g. `12.5 GiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_size: Option<String>,
    /// Per-target health.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// `Ready` is True when the repository is initialised and enough targets are healthy for
    /// the strategy to accept backups. `VerificationScheduled` (with `spec.verification`) is
    /// False, naming the field, while its schedule or time zone is invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The repository Verifications of `spec.verification`.
    #[serde(flatten)]
    pub verification_runs: VerificationRuns,
}

/// Observed health of one target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Name of the target.
    pub name: String,
    /// Whether the target answered the last check.
    pub reachable: bool,
    /// Whether a test object could be written and deleted in the last check.
    pub writable: bool,
    /// Bytes of Hort data on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_used: Option<u64>,
    /// Free bytes on the target, where the target can tell (PVCs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_free: Option<u64>,
    /// `Mirror`: files the other targets hold that this one still lacked after the last
    /// check copied what it could (0: level with the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_files: Option<u64>,
    /// S3 targets: whether the bucket has Object Lock enabled (a target whose
    /// `objectLock` asks for retention in a bucket without it is not writable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock_enabled: Option<bool>,
    /// When the target was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<Time>,
    /// Why the last check failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    #[test]
    fn the_bandwidth_rules_use_the_agents_grammar_and_minimum() {
        let crd = serde_json::to_string(&super::StorageGroup::crd()).unwrap();
        let pattern = format!("self.matches('{}')", hort_protocol::bandwidth::PATTERN);
        let minimum = format!("quantity('{}')", hort_protocol::bandwidth::MIN);
        assert_eq!(crd.matches(&pattern).count(), 2, "{pattern} in both rules");
        assert_eq!(crd.matches(&minimum).count(), 2, "{minimum} in both rules");
    }
}
