//! The pod spec that runs `hort-agent` against a storage group's repository (pure).
//!
//! The repository is described to the agent through its environment (`hort_protocol::env`):
//! one location per target (an S3 bucket, or a path under `/targets/<name>` where the target's
//! claim is mounted), the strategy and the weights. Secrets reach the pod only as
//! `secretKeyRef`s: the operator never reads or copies their values. The agent reports its
//! result in its termination message, which the kubelet copies into the pod's status, so the
//! agent needs no access to the Kubernetes API and its ServiceAccount token is not mounted.

use std::collections::BTreeMap;

use hort_crds::common::{AgentPodOverrides, DatabaseTls, TlsMode};
use hort_crds::storage_group::{Bandwidth, ObjectLock, ObjectLockMode, StorageGroupSpec, Strategy};
use hort_protocol::command::DATABASE_CA_FILE;
use hort_protocol::{AgentCommand, BytesPerSecond, Location, PROTOCOL_VERSION, S3Location, env};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimVolumeSource, Pod,
    PodSecurityContext, PodSpec, ResourceRequirements, SecretKeySelector, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{ROLE_LABEL, Role};
use crate::node_slots::NODE_SLOT_GATE;
use crate::storage_group::S3_CREDENTIAL_KEYS;
/// The capabilities of agent containers that restore users' files with their owners and modes
/// (volume restores and volume Verifications): all are allowed by the Pod Security Standard
/// "baseline". A volume backup, which only reads users' files, keeps `DAC_OVERRIDE` (reading
/// any file and searching any directory; "baseline" does not allow the narrower
/// `DAC_READ_SEARCH`), and `CHOWN` only when it writes a PVC target (see [`root_capabilities`]).
///
/// Agent pods that mount no claim of users' files (database backups and restores, checks and
/// prunes, also of groups with PVC targets) need none of root's powers: they run as
/// [`NON_ROOT_USER`] with no capabilities and a read-only root file system, and pass the Pod
/// Security Standard "restricted". The repository on a PVC target belongs to that user: those
/// pods get it as their `fsGroup`, and pods that run as root hand it what they create there
/// ([`hort_protocol::env::REPOSITORY_OWNER`]).
pub const FILE_CAPABILITIES: [&str; 4] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"];
/// The user (and group) agent pods that mount no claim run as.
pub const NON_ROOT_USER: i64 = 65532;
/// Start of the names of the pod volumes of target claims (the claim of a PVC target).
const TARGET_VOLUME_PREFIX: &str = "target-";
/// Directory under which target claims are mounted in agent pods.
pub const TARGETS_DIR: &str = "/targets";
/// Where agent pods spool packs while they fill and upload (an `emptyDir`).
pub const SPOOL_DIR: &str = "/spool";
/// Size limit of the spool volume: a few packs of 16 MiB are in it at a time.
const SPOOL_SIZE_LIMIT: &str = "1Gi";
/// Name of the container that runs `hort-agent`.
pub const AGENT_CONTAINER: &str = "agent";
/// The ServiceAccount agent pods run as, created by the operator in each namespace it runs
/// agents in. It has no roles and its token is never mounted: the agent needs no Kubernetes API.
pub const SERVICE_ACCOUNT: &str = "hort-agent";

/// How agent pods are run; from the operator's configuration.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// Image of the `hort-agent` container.
    pub image: String,
    /// Its pull policy (`IfNotPresent`, `Always`, `Never`).
    pub pull_policy: String,
    /// Pause before the second attempt of a failed backup; doubled for each further one.
    pub retry_backoff: std::time::Duration,
    /// Resources of agent containers whose object sets no `agent.resources`.
    pub default_resources: Option<ResourceRequirements>,
    /// Seconds an agent pod may run when its object sets no `activeDeadlineSeconds`.
    pub default_deadline_seconds: Option<i64>,
    /// At most this many agent pods on one node: each pod is created held back by
    /// [`NODE_SLOT_GATE`] until [`crate::node_slots`] releases it. No limit when `None`.
    pub max_pods_per_node: Option<u32>,
}

/// The environment, volumes and mounts that give an agent access to a group's repository.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepositoryAccess {
    /// Environment variables (values or Secret references).
    pub env: Vec<EnvVar>,
    /// Volumes of the target claims.
    pub volumes: Vec<Volume>,
    /// Mounts of the target claims.
    pub mounts: Vec<VolumeMount>,
}

impl RepositoryAccess {
    /// Passes a database's user and password from keys `username` and `password` of Secret
    /// `secret` as `HORT_DB_USER` and `HORT_DB_PASSWORD` (by reference, never by value).
    pub fn database_credentials(&mut self, secret: &str) {
        self.env.push(secret_env(env::DB_USER, secret, "username"));
        self.env.push(secret_env(env::DB_PASSWORD, secret, "password"));
    }

    /// The TLS settings of a database connection as the agent takes them; with a CA, key
    /// `ca.crt` of the Secret is mounted read-only at [`DATABASE_CA_FILE`].
    pub fn database_tls(&mut self, tls: Option<&DatabaseTls>) -> hort_protocol::DatabaseTls {
        let tls = tls.cloned().unwrap_or_default();
        let mode = match tls.mode {
            TlsMode::Disable => hort_protocol::TlsMode::Disable,
            TlsMode::Prefer => hort_protocol::TlsMode::Prefer,
            TlsMode::VerifyFull => hort_protocol::TlsMode::VerifyFull,
        };
        let ca_file = tls.ca_secret_ref.map(|secret| {
            let (dir, file) = DATABASE_CA_FILE.rsplit_once('/').expect("an absolute path");
            self.volumes.push(Volume {
                name: "database-ca".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.name),
                    items: Some(vec![KeyToPath {
                        key: "ca.crt".into(),
                        path: file.into(),
                        mode: None,
                    }]),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            self.mounts.push(VolumeMount {
                name: "database-ca".into(),
                mount_path: dir.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            DATABASE_CA_FILE.to_string()
        });
        hort_protocol::DatabaseTls { mode, ca_file }
    }

    /// Mounts claim `claim` at `path` through a volume named `volume`.
    pub fn mount_claim(&mut self, volume: &str, claim: &str, path: &str, read_only: bool) {
        self.volumes.push(Volume {
            name: volume.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: Some(read_only),
            }),
            ..Volume::default()
        });
        self.mounts.push(VolumeMount {
            name: volume.into(),
            mount_path: path.into(),
            read_only: read_only.then_some(true),
            ..VolumeMount::default()
        });
    }
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An environment variable set from one key of a Secret (by reference, never by value).
pub fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// A target's Object Lock as the agent reads it in its location.
fn object_lock(lock: &ObjectLock) -> hort_protocol::ObjectLock {
    hort_protocol::ObjectLock {
        mode: match lock.mode {
            ObjectLockMode::Governance => hort_protocol::LockMode::Governance,
            ObjectLockMode::Compliance => hort_protocol::LockMode::Compliance,
        },
        days: lock.retention_days,
    }
}

/// How the agent reaches the repository of the group with `spec`.
pub fn repository_access(spec: &StorageGroupSpec) -> RepositoryAccess {
    let mut access = RepositoryAccess::default();
    let mut locations = Vec::new();
    for (i, target) in spec.targets.iter().enumerate() {
        if let Some(s3) = &target.s3 {
            // Each S3 target reads its own credentials from variables with its own prefix.
            let prefix = env::target_credentials(i);
            for (key, variable) in S3_CREDENTIAL_KEYS
                .iter()
                .zip([env::ACCESS_KEY_ID, env::SECRET_ACCESS_KEY])
            {
                access.env.push(secret_env(
                    &env::credential_variable(&prefix, variable),
                    &s3.credentials_secret_ref.name,
                    key,
                ));
            }
            locations.push(Location::S3(S3Location {
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                endpoint: Some(s3.endpoint.clone()),
                region: Some(s3.region.clone()),
                path_style: Some(s3.force_path_style),
                storage_class: s3.storage_class.clone(),
                object_lock: s3.object_lock.as_ref().map(object_lock),
                credentials: Some(prefix),
            }));
        }
        if let Some(pvc) = &target.pvc {
            let mount = format!("{TARGETS_DIR}/{}", target.name);
            access.mount_claim(
                &format!("{TARGET_VOLUME_PREFIX}{}", target.name),
                &pvc.claim_name,
                &mount,
                false,
            );
            let path = if pvc.sub_path.is_empty() {
                mount
            } else {
                format!("{mount}/{}", pvc.sub_path.trim_end_matches('/'))
            };
            locations.push(Location::Path(path));
        }
    }
    let strategy = match spec.strategy {
        Strategy::Spread => hort_protocol::Strategy::Spread,
        Strategy::Mirror => hort_protocol::Strategy::Mirror,
        Strategy::Failover => hort_protocol::Strategy::Failover,
    };
    let locations: Vec<String> = locations.iter().map(Location::to_string).collect();
    let weights: Vec<String> = spec.targets.iter().map(|t| t.weight.to_string()).collect();
    let key = &spec.encryption.key_secret_ref;
    access.env.extend([
        value(env::REPOSITORY, locations.join(",")),
        value(env::STRATEGY, strategy.as_str()),
        value(env::WEIGHTS, weights.join(",")),
        secret_env(env::PASSWORD, &key.name, &key.key),
        value(env::AWS_EC2_METADATA_DISABLED, "true"),
    ]);
    if let Some(n) = spec.min_healthy_targets {
        access.env.push(value(env::MIN_HEALTHY_TARGETS, n.to_string()));
    }
    let limits = [env::LIMIT_UPLOAD, env::LIMIT_DOWNLOAD];
    access.env.extend(bandwidth_env(spec.bandwidth.as_ref(), limits, 1));
    access
}

/// The group's spec with a BackupJob's `spec.bandwidth` applied: each rate the job sets
/// replaces the group's, a rate it leaves unset keeps the group's.
pub fn with_job_bandwidth(spec: &StorageGroupSpec, job: Option<&Bandwidth>) -> StorageGroupSpec {
    let mut spec = spec.clone();
    if let Some(job) = job {
        let group = spec.bandwidth.get_or_insert_default();
        if job.upload_per_second.is_some() {
            group.upload_per_second.clone_from(&job.upload_per_second);
        }
        if job.download_per_second.is_some() {
            group.download_per_second.clone_from(&job.download_per_second);
        }
    }
    spec
}

/// `bandwidth`'s upload and download limits as the variables `names` (upload, download) in
/// plain bytes per second, each cut to one of `parts` shares ([`BytesPerSecond::share`], for
/// proxy replicas). Text that is not a rate (the API server refuses it) is passed as written,
/// for the agent or proxy to refuse by name: a limit is never dropped.
pub fn bandwidth_env(bandwidth: Option<&Bandwidth>, names: [&str; 2], parts: u64) -> Vec<EnvVar> {
    let Some(bandwidth) = bandwidth else {
        return Vec::new();
    };
    let rates = [&bandwidth.upload_per_second, &bandwidth.download_per_second];
    names
        .into_iter()
        .zip(rates)
        .filter_map(|(name, rate)| {
            let rate = rate.as_ref()?;
            let text = rate
                .parse::<BytesPerSecond>()
                .map_or_else(|_| rate.clone(), |r| r.share(parts).to_string());
            Some(value(name, text))
        })
        .collect()
}

/// What one agent pod does.
#[derive(Clone, Debug)]
pub struct AgentPod<'a> {
    /// Pod name.
    pub name: String,
    /// Namespace (that of the owning object).
    pub namespace: String,
    /// The owning Hort object; the pod is deleted with it.
    pub owner: OwnerReference,
    /// Further labels.
    pub labels: BTreeMap<String, String>,
    /// What the agent runs.
    pub command: AgentCommand,
    /// Repository access.
    pub repository: RepositoryAccess,
    /// Overrides from the owning object's spec.
    pub overrides: Option<&'a AgentPodOverrides>,
    /// Seconds the pod may run.
    pub active_deadline_seconds: Option<i64>,
    /// The node the pod must run on (where a ReadWriteOnce source volume is mounted).
    pub node: Option<String>,
}

/// The capabilities an agent container that mounts users' files keeps (it runs as root): a
/// backup reads them (`DAC_OVERRIDE`) and hands what it writes to a PVC target's owner
/// (`CHOWN`); restores write them with their owners and modes ([`FILE_CAPABILITIES`]).
fn root_capabilities(command: &AgentCommand, mounts_targets: bool) -> Vec<&'static str> {
    match command {
        AgentCommand::Backup { .. } if mounts_targets => vec!["CHOWN", "DAC_OVERRIDE"],
        AgentCommand::Backup { .. } => vec!["DAC_OVERRIDE"],
        _ => FILE_CAPABILITIES.to_vec(),
    }
}

/// The agent container's security context: with a claim of users' files mounted, root with
/// only `capabilities`; without, "restricted".
fn container_security(capabilities: Option<Vec<&str>>) -> SecurityContext {
    let Some(capabilities) = capabilities else {
        return restricted(NON_ROOT_USER, true);
    };
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: Some(capabilities.iter().map(|c| c.to_string()).collect()),
        }),
        ..SecurityContext::default()
    }
}

/// A container security context that passes Pod Security "restricted": no capabilities, no
/// privilege escalation, user and group `user` (not root); with `read_only_root`, also a
/// read-only root file system.
pub fn restricted(user: i64, read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        read_only_root_filesystem: read_only_root.then_some(true),
        ..SecurityContext::default()
    }
}

/// Mounts the claims of PVC targets read-only (for a command that only reads the repository).
fn target_claims_read_only(repository: &mut RepositoryAccess) {
    let targets: Vec<String> = repository
        .volumes
        .iter_mut()
        .filter(|v| v.name.starts_with(TARGET_VOLUME_PREFIX))
        .filter_map(|v| {
            let claim = v.persistent_volume_claim.as_mut()?;
            claim.read_only = Some(true);
            Some(v.name.clone())
        })
        .collect();
    for mount in &mut repository.mounts {
        if targets.contains(&mount.name) {
            mount.read_only = Some(true);
        }
    }
}

/// The pod that runs `hort-agent` as described.
pub fn build(settings: &AgentSettings, agent: AgentPod<'_>) -> Pod {
    let mut labels = agent.labels;
    labels.insert("app.kubernetes.io/name".into(), "hort-agent".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "hort-operator".into());
    labels.insert(ROLE_LABEL.into(), Role::of(&agent.command).as_str().into());
    let overrides = agent.overrides.cloned().unwrap_or_default();
    let mut repository = agent.repository;
    repository.env.extend([
        value(env::SPOOL_DIR, SPOOL_DIR),
        value(env::PROTOCOL_VERSION, PROTOCOL_VERSION.to_string()),
        // Temporary files (e.g. a restore's table list) go to the spool volume: the root file
        // system may be read-only.
        value("TMPDIR", SPOOL_DIR),
    ]);
    // Claims of users' files (a volume source, a restore target, the temporary claim of a
    // verification's scratch space), and claims of PVC targets, which hold the repository.
    let mounts = |targets: bool| {
        repository.volumes.iter().any(|v| {
            (v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
                && v.name.starts_with(TARGET_VOLUME_PREFIX) == targets
        })
    };
    let (mounts_claim, mounts_targets) = (mounts(false), mounts(true));
    if !agent.command.writes_repository() {
        target_claims_read_only(&mut repository);
    }
    if mounts_claim && mounts_targets {
        // Root writes the repository for the restricted pods that share it.
        let owner = hort_protocol::RepositoryOwner {
            uid: NON_ROOT_USER as u32,
            gid: NON_ROOT_USER as u32,
        };
        repository.env.push(value(env::REPOSITORY_OWNER, owner.to_string()));
    }
    repository.mounts.push(VolumeMount {
        name: "spool".into(),
        mount_path: SPOOL_DIR.into(),
        ..VolumeMount::default()
    });
    repository.volumes.push(Volume {
        name: "spool".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(SPOOL_SIZE_LIMIT.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    });
    let container = Container {
        name: AGENT_CONTAINER.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some(settings.pull_policy.clone()),
        command: Some(vec!["hort-agent".into()]),
        args: Some(agent.command.to_args()),
        env: Some(repository.env),
        volume_mounts: Some(repository.mounts),
        resources: overrides.resources.or_else(|| settings.default_resources.clone()),
        termination_message_path: Some(env::TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(container_security(
            mounts_claim.then(|| root_capabilities(&agent.command, mounts_targets)),
        )),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(agent.name),
            namespace: Some(agent.namespace),
            labels: Some(labels),
            owner_references: Some(vec![agent.owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(repository.volumes),
            restart_policy: Some("Never".into()),
            service_account_name: Some(SERVICE_ACCOUNT.into()),
            automount_service_account_token: Some(false),
            active_deadline_seconds: agent.active_deadline_seconds.or(settings.default_deadline_seconds),
            // A pod pinned to the node that mounts its ReadWriteOnce volume can run only there:
            // the node selector, which could contradict it, is left out (as the field says).
            node_selector: (agent.node.is_none() && !overrides.node_selector.is_empty())
                .then_some(overrides.node_selector),
            tolerations: (!overrides.tolerations.is_empty()).then_some(overrides.tolerations),
            priority_class_name: overrides.priority_class_name,
            affinity: agent.node.map(on_node),
            scheduling_gates: settings.max_pods_per_node.map(|_| {
                vec![k8s_openapi::api::core::v1::PodSchedulingGate {
                    name: NODE_SLOT_GATE.into(),
                }]
            }),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                // A restricted pod's user may write the target claims where the volume lets
                // the kubelet set their group (a repository made by root before, or a fresh
                // volume whose root directory only root may write).
                fs_group: (mounts_targets && !mounts_claim).then_some(NON_ROOT_USER),
                fs_group_change_policy: (mounts_targets && !mounts_claim).then(|| "OnRootMismatch".into()),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// Node affinity that places a pod on node `name` (through the scheduler, so resources and
/// taints are still respected).
fn on_node(name: String) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![name]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(yaml: &str) -> StorageGroupSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn env<'a>(access: &'a RepositoryAccess, name: &str) -> &'a EnvVar {
        access
            .env
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn mirrored_s3_and_pvc_targets() {
        let spec = group(
            r#"
strategy: Mirror
targets:
  - name: disk
    pvc: {claimName: backup-disk, subPath: hort/}
  - name: offsite
    weight: 3
    s3: {endpoint: "https://s3.example.com", bucket: backups, prefix: k8s, region: eu-west-1,
         forcePathStyle: true, storageClass: STANDARD_IA, credentialsSecretRef: {name: offsite},
         objectLock: {mode: Compliance, retentionDays: 30}}
encryption: {keySecretRef: {name: repo-key, key: pw}}
"#,
        );
        let access = repository_access(&spec);
        assert_eq!(
            env(&access, "HORT_REPOSITORY").value.as_deref(),
            Some(
                "/targets/disk/hort,s3://backups/k8s?endpoint=https://s3.example.com&region=eu-west-1\
                 &path-style=true&storage-class=STANDARD_IA&object-lock=compliance:30&credentials=HORT_TARGET_1"
            )
        );
        assert_eq!(env(&access, "HORT_STRATEGY").value.as_deref(), Some("mirror"));
        assert_eq!(env(&access, "HORT_WEIGHTS").value.as_deref(), Some("1,3"));
        assert!(
            access.env.iter().all(|e| e.name != "HORT_MIN_HEALTHY_TARGETS"),
            "the agent's default, 1"
        );
        let strict = repository_access(&StorageGroupSpec {
            min_healthy_targets: Some(2),
            ..spec.clone()
        });
        assert_eq!(env(&strict, "HORT_MIN_HEALTHY_TARGETS").value.as_deref(), Some("2"));
        // Secrets only by reference, never by value.
        let password = env(&access, "HORT_PASSWORD");
        assert!(password.value.is_none());
        let selector = password.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((selector.name.as_str(), selector.key.as_str()), ("repo-key", "pw"));
        let key_id = env(&access, "HORT_TARGET_1_AWS_ACCESS_KEY_ID");
        assert!(key_id.value.is_none());
        assert_eq!(
            key_id
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "offsite"
        );
        assert_eq!(access.mounts[0].mount_path, "/targets/disk");
        assert_eq!(
            access.volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "backup-disk"
        );
    }

    /// The operator's agent settings in these tests, with default resources `defaults`.
    fn test_settings(defaults: Option<ResourceRequirements>) -> AgentSettings {
        AgentSettings {
            image: "hort-agent:1".into(),
            pull_policy: "IfNotPresent".into(),
            retry_backoff: std::time::Duration::from_secs(10),
            default_resources: defaults,
            default_deadline_seconds: None,
            max_pods_per_node: None,
        }
    }

    /// A check pod with `overrides` (YAML), the object's deadline and the node it is pinned to,
    /// built with the operator's default resources `defaults`.
    fn check_pod(
        defaults: Option<ResourceRequirements>,
        overrides: &str,
        deadline: Option<i64>,
        node: Option<&str>,
    ) -> Pod {
        let spec = group("targets: [{name: disk, pvc: {claimName: d}}]\nencryption: {keySecretRef: {name: k}}");
        let overrides: AgentPodOverrides = serde_yaml::from_str(overrides).unwrap();
        let settings = AgentSettings {
            default_deadline_seconds: Some(3600),
            ..test_settings(defaults)
        };
        check_pod_of(&settings, &spec, Some(&overrides), deadline, node)
    }

    #[test]
    fn with_a_node_limit_every_agent_pod_is_created_gated() {
        let spec = group("targets: [{name: disk, pvc: {claimName: d}}]\nencryption: {keySecretRef: {name: k}}");
        let gates = |settings: &AgentSettings| {
            check_pod_of(settings, &spec, None, None, None)
                .spec
                .unwrap()
                .scheduling_gates
        };
        assert_eq!(gates(&test_settings(None)), None);
        let limited = AgentSettings {
            max_pods_per_node: Some(2),
            ..test_settings(None)
        };
        let gates = gates(&limited).unwrap();
        assert_eq!(gates.len(), 1);
        assert_eq!(gates[0].name, NODE_SLOT_GATE);
        // The pre-hooks gate goes beside it, not over it.
        let both = crate::agent::api::gated(check_pod_of(&limited, &spec, None, None, None));
        let names: Vec<String> = both
            .spec
            .unwrap()
            .scheduling_gates
            .unwrap()
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(names, [NODE_SLOT_GATE, crate::agent::api::PRE_HOOKS_GATE]);
    }

    #[test]
    fn the_groups_bandwidth_reaches_every_agent_pod_as_bytes_per_second() {
        let limited = group(
            "targets: [{name: s3, s3: {endpoint: \"http://s3:9000\", bucket: b, credentialsSecretRef: {name: c}}}]\n\
             encryption: {keySecretRef: {name: k}}\n\
             bandwidth: {uploadPerSecond: 20Mi, downloadPerSecond: \"1.5G\"}",
        );
        let pod = check_pod_of(&test_settings(None), &limited, None, None, None);
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let limit = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(limit(env::LIMIT_UPLOAD), "20971520");
        assert_eq!(limit(env::LIMIT_DOWNLOAD), "1500000000");
        for name in [env::LIMIT_UPLOAD, env::LIMIT_DOWNLOAD] {
            let rate: BytesPerSecond = limit(name).parse().expect("the agent reads what the operator writes");
            assert!(rate.get().get() >= 1000);
        }
        let upload_only = repository_access(&StorageGroupSpec {
            bandwidth: Some(hort_crds::storage_group::Bandwidth {
                upload_per_second: Some("500Ki".into()),
                download_per_second: None,
            }),
            ..limited.clone()
        });
        assert_eq!(env_value(&upload_only, env::LIMIT_UPLOAD), Some("512000"));
        assert_eq!(env_value(&upload_only, env::LIMIT_DOWNLOAD), None, "no download limit");
        let unlimited = repository_access(&StorageGroupSpec {
            bandwidth: None,
            ..limited.clone()
        });
        assert_eq!(env_value(&unlimited, env::LIMIT_UPLOAD), None);
        // Text the API server would refuse is passed as written: the agent refuses it by name
        // instead of running without the limit.
        let wrong = repository_access(&StorageGroupSpec {
            bandwidth: Some(hort_crds::storage_group::Bandwidth {
                upload_per_second: Some("20MB".into()),
                download_per_second: None,
            }),
            ..limited
        });
        assert_eq!(env_value(&wrong, env::LIMIT_UPLOAD), Some("20MB"));
    }

    #[test]
    fn a_jobs_bandwidth_replaces_the_rates_it_sets_and_keeps_the_groups_others() {
        let group_spec = group(
            "targets: [{name: a, pvc: {claimName: a}}]\nencryption: {keySecretRef: {name: k}}\n\
             bandwidth: {uploadPerSecond: 20Mi, downloadPerSecond: 50Mi}",
        );
        let slower = Bandwidth {
            upload_per_second: Some("1Mi".into()),
            download_per_second: None,
        };
        let access = repository_access(&with_job_bandwidth(&group_spec, Some(&slower)));
        assert_eq!(env_value(&access, env::LIMIT_UPLOAD), Some("1048576"));
        assert_eq!(env_value(&access, env::LIMIT_DOWNLOAD), Some("52428800"), "the group's");
        let unlimited_group = StorageGroupSpec {
            bandwidth: None,
            ..group_spec.clone()
        };
        let access = repository_access(&with_job_bandwidth(&unlimited_group, Some(&slower)));
        assert_eq!(env_value(&access, env::LIMIT_UPLOAD), Some("1048576"));
        assert_eq!(env_value(&access, env::LIMIT_DOWNLOAD), None);
        assert_eq!(with_job_bandwidth(&group_spec, None), group_spec);
    }

    fn env_value<'a>(access: &'a RepositoryAccess, name: &str) -> Option<&'a str> {
        access.env.iter().find(|e| e.name == name)?.value.as_deref()
    }

    /// The check pod of group `spec`, as the operator builds it with `settings`.
    fn check_pod_of(
        settings: &AgentSettings,
        spec: &StorageGroupSpec,
        overrides: Option<&AgentPodOverrides>,
        deadline: Option<i64>,
        node: Option<&str>,
    ) -> Pod {
        build(
            settings,
            AgentPod {
                name: "disk-check-1".into(),
                namespace: "demo".into(),
                owner: OwnerReference::default(),
                labels: BTreeMap::new(),
                command: AgentCommand::Check {
                    init: true,
                    repository_id: None,
                    resync: false,
                    rotate_key: false,
                    snapshots: false,
                },
                repository: repository_access(spec),
                overrides,
                active_deadline_seconds: deadline,
                node: node.map(str::to_owned),
            },
        )
    }

    fn assert_restricted(spec: &PodSpec) {
        let restricted = spec.containers[0].security_context.clone().unwrap();
        assert_eq!(restricted.run_as_non_root, Some(true));
        assert_eq!(restricted.run_as_user, Some(NON_ROOT_USER));
        assert_eq!(restricted.read_only_root_filesystem, Some(true));
        assert_eq!(restricted.allow_privilege_escalation, Some(false));
        let caps = restricted.capabilities.unwrap();
        assert_eq!((caps.drop.as_deref(), caps.add), (Some(&["ALL".to_string()][..]), None));
        let pod = spec.security_context.clone().unwrap();
        assert_eq!(pod.seccomp_profile.unwrap().type_, "RuntimeDefault");
    }

    fn env_of(spec: &PodSpec, name: &str) -> Option<String> {
        let env = spec.containers[0].env.clone().unwrap();
        env.into_iter().find(|e| e.name == name).and_then(|e| e.value)
    }

    #[test]
    fn pods_without_a_claim_of_users_files_pass_restricted_also_with_pvc_targets() {
        let s3_only = group(
            "targets: [{name: s3, s3: {endpoint: \"http://s3:9000\", bucket: b, credentialsSecretRef: {name: c}}}]\n\
             encryption: {keySecretRef: {name: k}}",
        );
        let spec = check_pod_of(&test_settings(None), &s3_only, None, None, None)
            .spec
            .unwrap();
        assert_restricted(&spec);
        assert_eq!(spec.security_context.clone().unwrap().fs_group, None);
        assert_eq!(env_of(&spec, "TMPDIR").as_deref(), Some(SPOOL_DIR));

        // A PVC target: the same user, who gets the claim's group where the volume allows it.
        let spec = check_pod(None, "{}", None, None).spec.unwrap();
        assert_restricted(&spec);
        let pod = spec.security_context.clone().unwrap();
        assert_eq!(pod.fs_group, Some(NON_ROOT_USER));
        assert_eq!(pod.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
        assert_eq!(env_of(&spec, env::REPOSITORY_OWNER), None, "the pod is not root");
    }

    #[test]
    fn pvc_targets_are_mounted_read_only_for_commands_that_only_read() {
        let spec = group("targets: [{name: disk, pvc: {claimName: d}}]\nencryption: {keySecretRef: {name: k}}");
        let target_mount = |command: AgentCommand| {
            let pod = build(
                &test_settings(None),
                AgentPod {
                    name: "p".into(),
                    namespace: "demo".into(),
                    owner: OwnerReference::default(),
                    labels: BTreeMap::new(),
                    command,
                    repository: repository_access(&spec),
                    overrides: None,
                    active_deadline_seconds: None,
                    node: None,
                },
            );
            let spec = pod.spec.unwrap();
            let volume = spec
                .volumes
                .unwrap()
                .into_iter()
                .find(|v| v.name == "target-disk")
                .unwrap();
            let mount = spec.containers[0]
                .volume_mounts
                .clone()
                .unwrap()
                .into_iter()
                .find(|m| m.name == "target-disk")
                .unwrap();
            (volume.persistent_volume_claim.unwrap().read_only, mount.read_only)
        };
        let check = AgentCommand::Check {
            init: false,
            repository_id: None,
            resync: false,
            rotate_key: false,
            snapshots: false,
        };
        assert_eq!(target_mount(check), (Some(false), None));
        let listing = AgentCommand::Snapshots { tags: vec![] };
        assert_eq!(target_mount(listing), (Some(true), Some(true)));
        let verify = AgentCommand::Verify {
            read_data: hort_protocol::command::ReadData::All,
        };
        assert_eq!(target_mount(verify), (Some(true), Some(true)));
    }

    /// A pod of group `spec` running `command` with claim `data` mounted at `/source`.
    fn pod_with_users_claim(spec: &StorageGroupSpec, command: AgentCommand) -> PodSpec {
        let mut repository = repository_access(spec);
        repository.mount_claim("source", "data", "/source", true);
        let pod = build(
            &test_settings(None),
            AgentPod {
                name: "job-1".into(),
                namespace: "demo".into(),
                owner: OwnerReference::default(),
                labels: BTreeMap::new(),
                command,
                repository,
                overrides: None,
                active_deadline_seconds: None,
                node: None,
            },
        );
        pod.spec.unwrap()
    }

    fn added_capabilities(spec: &PodSpec) -> Vec<String> {
        let context = spec.containers[0].security_context.clone().unwrap();
        assert_eq!(context.run_as_non_root, None, "root");
        context.capabilities.unwrap().add.unwrap()
    }

    #[test]
    fn pods_that_read_or_write_users_files_run_as_root_with_only_the_capabilities_they_use() {
        let pvc = group("targets: [{name: disk, pvc: {claimName: d}}]\nencryption: {keySecretRef: {name: k}}");
        let s3 = group(
            "targets: [{name: s3, s3: {endpoint: \"http://s3:9000\", bucket: b, credentialsSecretRef: {name: c}}}]\n\
             encryption: {keySecretRef: {name: k}}",
        );
        let backup = AgentCommand::Backup {
            dir: "/source".into(),
            paths: vec![],
            excludes: vec![],
            host: "h".into(),
            tags: vec![],
        };
        // A backup into a PVC target writes the repository for its user.
        let spec = pod_with_users_claim(&pvc, backup.clone());
        assert_eq!(added_capabilities(&spec), ["CHOWN", "DAC_OVERRIDE"]);
        // The user's claim keeps its owners: no fsGroup on a pod that mounts it.
        assert_eq!(spec.security_context.clone().unwrap().fs_group, None);
        assert_eq!(
            env_of(&spec, env::REPOSITORY_OWNER),
            Some(format!("{NON_ROOT_USER}:{NON_ROOT_USER}"))
        );
        // Into S3 it only reads files.
        let spec = pod_with_users_claim(&s3, backup);
        assert_eq!(added_capabilities(&spec), ["DAC_OVERRIDE"]);
        assert_eq!(env_of(&spec, env::REPOSITORY_OWNER), None);
        // A restore writes files with their owners and modes.
        let restore = AgentCommand::Restore {
            snapshot: "latest".into(),
            target: "/source".into(),
            paths: vec![],
            overwrite: hort_protocol::command::Overwrite::Never,
            tags: vec![],
        };
        let spec = pod_with_users_claim(&pvc, restore);
        assert_eq!(added_capabilities(&spec), FILE_CAPABILITIES);
    }

    #[test]
    fn pod_runs_once_without_api_access_and_applies_overrides() {
        let pod = check_pod(
            None,
            "nodeSelector: {disk: ssd}\nresources: {limits: {memory: 512Mi}}\n\
             tolerations: [{key: dedicated, operator: Equal, value: backup, effect: NoSchedule, tolerationSeconds: 60}]\n\
             priorityClassName: backup-low",
            Some(600),
            Some("node-a"),
        );
        let pod_spec = pod.spec.unwrap();
        let toleration = &pod_spec.tolerations.as_ref().unwrap()[0];
        assert_eq!(
            (
                toleration.key.as_deref(),
                toleration.operator.as_deref(),
                toleration.value.as_deref(),
                toleration.effect.as_deref(),
                toleration.toleration_seconds
            ),
            (
                Some("dedicated"),
                Some("Equal"),
                Some("backup"),
                Some("NoSchedule"),
                Some(60)
            )
        );
        assert_eq!(pod_spec.priority_class_name.as_deref(), Some("backup-low"));
        let spool = pod_spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "spool")
            .unwrap();
        assert!(spool.empty_dir.is_some(), "packs are spooled to an emptyDir");
        let agent = &pod_spec.containers[0];
        assert!(
            agent
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "spool" && m.mount_path == SPOOL_DIR)
        );
        assert!(
            agent
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "HORT_SPOOL_DIR" && e.value.as_deref() == Some(SPOOL_DIR))
        );
        assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod_spec.automount_service_account_token, Some(false));
        assert_eq!(pod_spec.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
        assert_eq!(
            pod_spec.active_deadline_seconds,
            Some(600),
            "the object's deadline wins"
        );
        assert_eq!(
            pod_spec.node_selector, None,
            "pinned to the node that mounts the volume: the node selector is left out"
        );
        let terms = pod_spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(
            terms[0].match_fields.as_ref().unwrap()[0].values.as_deref(),
            Some(&["node-a".to_string()][..])
        );
        let container = &pod_spec.containers[0];
        assert_eq!(
            container.args.as_deref(),
            Some(&["check".to_string(), "--init".into()][..])
        );
        assert!(
            container
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == env::PROTOCOL_VERSION && e.value.as_deref() == Some(&*PROTOCOL_VERSION.to_string())),
            "the agent learns the protocol version"
        );
        assert!(
            container
                .resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()
                .contains_key("memory")
        );
        assert_eq!(pod.metadata.labels.unwrap()[ROLE_LABEL], "check");
    }

    #[test]
    fn defaults_apply_where_the_object_sets_nothing_and_node_selectors_where_nothing_pins() {
        let defaults: ResourceRequirements =
            serde_yaml::from_str("{requests: {cpu: 100m}, limits: {memory: 1Gi}}").unwrap();
        let pod = check_pod(Some(defaults.clone()), "nodeSelector: {disk: ssd}", None, None);
        let pod_spec = pod.spec.unwrap();
        assert_eq!(
            pod_spec.active_deadline_seconds,
            Some(3600),
            "the operator's default deadline"
        );
        assert_eq!(
            pod_spec.containers[0].resources.as_ref(),
            Some(&defaults),
            "not BestEffort"
        );
        assert_eq!(
            pod_spec.node_selector.unwrap()["disk"],
            "ssd",
            "nothing pins it: the selector applies"
        );
    }
}
