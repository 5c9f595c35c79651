//! A Verification's agent run (pure): the command, the throwaway database server beside the
//! agent or the temporary claim it restores into, and what its report becomes in status.
//!
//! A database is restored into a server started as a native sidecar of the agent pod (an init
//! container with `restartPolicy: Always`): it listens on 127.0.0.1 only, its superuser
//! password comes from a Secret the operator generates for the run, and it ends with the pod.
//! Files are restored into a generic ephemeral volume: its claim is created with the pod and
//! deleted with it.

use std::collections::BTreeMap;

use hort_crds::verification::{
    DatabaseKind as CrdDatabaseKind, DatabaseVerification, RestoredTotals, VerificationFailure, VerificationSpec,
    VerificationStatus, VolumeVerification,
};
use hort_protocol::command::LATEST;
use hort_protocol::{AgentCommand, DatabaseKind, SqlAssertion, VerificationReport};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EphemeralVolumeSource, PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate,
    Pod, PodSecurityContext, ResourceRequirements, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pod::{self, RepositoryAccess, secret_env};

/// Where the temporary claim of a volume verification is mounted in the agent pod.
pub const SCRATCH_DIR: &str = "/scratch";
/// The directory the snapshot is restored into: below the mount, as the agent wants an empty
/// or absent directory and a fresh file system may hold `lost+found`.
pub const RESTORE_DIR: &str = "/scratch/restore";
/// The user (and group) the official PostgreSQL and MariaDB images run their server as.
pub const SERVER_USER: i64 = 999;
/// Name of the throwaway server's container.
pub const SERVER_CONTAINER: &str = "database";
/// Keys of the generated Secret: the superuser's name and password.
pub const SECRET_KEYS: [&str; 2] = ["username", "password"];
/// At most this many failures are kept in `status.failures` (`failuresTotal` counts all).
const FAILURES_SHOWN: usize = 20;

/// Name of a Verification's agent pod, and of the Secret with its server's password.
pub fn pod_name(verification: &str) -> String {
    format!("{verification}-verify")
}

/// The protocol's database kind of a verification's server.
pub fn kind(db: &DatabaseVerification) -> DatabaseKind {
    match db.kind {
        CrdDatabaseKind::Postgres => DatabaseKind::Postgres,
        CrdDatabaseKind::Mariadb => DatabaseKind::Mariadb,
    }
}

/// The superuser of the throwaway server: the official images' `postgres` and `root`.
pub fn superuser(db: &DatabaseVerification) -> &'static str {
    match db.kind {
        CrdDatabaseKind::Postgres => "postgres",
        CrdDatabaseKind::Mariadb => "root",
    }
}

/// The kind of data verified, as the `kind` label of `hort_restore_duration_seconds`:
/// `postgres`, `mariadb` or `volume`.
pub fn data_kind(spec: &VerificationSpec) -> &'static str {
    match &spec.database {
        Some(db) => kind(db).source_tag(),
        None => "volume",
    }
}

/// The command that verifies `snapshot` (an id, or `None` for the newest snapshot with the
/// spec's tags), adding the scratch volume (files) or the server's credentials (databases) to
/// `access`. `None` for a spec with neither `database` nor `volume` (which the API server
/// refuses).
pub fn command(
    spec: &VerificationSpec,
    snapshot: Option<&str>,
    secret: &str,
    access: &mut RepositoryAccess,
) -> Option<AgentCommand> {
    let snapshot = snapshot.unwrap_or(LATEST).to_string();
    let tags = match &spec.source {
        Some(source) if source.snapshot_id.is_none() && source.backup_job_ref.is_none() => source.tags.clone(),
        _ => Vec::new(),
    };
    if let Some(db) = &spec.database {
        access.database_credentials(secret);
        let kind = kind(db);
        return Some(AgentCommand::VerifyRestoreDatabase {
            kind,
            snapshot,
            tags,
            host: "127.0.0.1".into(),
            port: kind.default_port(),
            assertions: db
                .assertions
                .iter()
                .map(|a| SqlAssertion {
                    name: a.name.clone(),
                    database: a.database.clone(),
                    sql: a.sql.clone(),
                })
                .collect(),
        });
    }
    let volume = spec.volume.as_ref()?;
    mount_scratch(access, volume);
    Some(AgentCommand::VerifyRestore {
        snapshot,
        tags,
        scratch: RESTORE_DIR.into(),
        // The user's command reads the files after the agent.
        keep: volume.command.is_some(),
    })
}

/// Mounts a generic ephemeral volume of `volume`'s class and size at [`SCRATCH_DIR`]: its
/// claim (`<pod>-scratch`) is created with the pod and deleted with it.
fn mount_scratch(access: &mut RepositoryAccess, volume: &VolumeVerification) {
    let labels = BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "hort-operator".to_string())]);
    access.volumes.push(Volume {
        name: "scratch".into(),
        ephemeral: Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: volume.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some([("storage".to_string(), volume.size.clone())].into()),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                },
            }),
        }),
        ..Volume::default()
    });
    access.mounts.push(VolumeMount {
        name: "scratch".into(),
        mount_path: SCRATCH_DIR.into(),
        ..VolumeMount::default()
    });
}

/// The throwaway server's image: the spec's, else `postgres:17` or `mariadb:11`.
pub fn image(db: &DatabaseVerification) -> String {
    db.image.clone().unwrap_or_else(|| {
        match db.kind {
            CrdDatabaseKind::Postgres => "postgres:17",
            CrdDatabaseKind::Mariadb => "mariadb:11",
        }
        .into()
    })
}

/// The throwaway server's resources: the spec's, else 250m CPU and 256Mi memory requested and
/// 1 CPU and 1Gi memory at most.
pub fn server_resources(db: &DatabaseVerification) -> ResourceRequirements {
    db.resources
        .clone()
        .unwrap_or_else(|| bounded(("250m", "256Mi"), ("1", "1Gi")))
}

/// Resources that request `(cpu, memory)` and may use `limit` at most.
pub fn bounded(request: (&str, &str), limit: (&str, &str)) -> ResourceRequirements {
    let quantities = |(cpu, memory): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])
    };
    ResourceRequirements {
        requests: Some(quantities(request)),
        limits: Some(quantities(limit)),
        ..ResourceRequirements::default()
    }
}

/// Adds the throwaway server of `db` to the agent pod: a native sidecar that starts before the
/// agent and ends with it, its password from key `password` of Secret `secret`, its data in an
/// emptyDir. It runs as [`SERVER_USER`] without capabilities, so the pod passes the Pod
/// Security Standard "restricted"; the pod's `fsGroup` makes the data directory its own.
pub fn add_server(pod: &mut Pod, db: &DatabaseVerification, secret: &str) {
    let (password_variable, data_dir, args, mut env) = match db.kind {
        CrdDatabaseKind::Postgres => (
            "POSTGRES_PASSWORD",
            "/var/lib/postgresql/data",
            vec!["-c".to_string(), "listen_addresses=127.0.0.1".into()],
            // A subdirectory: initdb must own the data directory, and the mount point is root's.
            vec![k8s_openapi::api::core::v1::EnvVar {
                name: "PGDATA".into(),
                value: Some("/var/lib/postgresql/data/pgdata".into()),
                value_from: None,
            }],
        ),
        CrdDatabaseKind::Mariadb => (
            "MARIADB_ROOT_PASSWORD",
            "/var/lib/mysql",
            vec!["--bind-address=127.0.0.1".to_string()],
            Vec::new(),
        ),
    };
    env.push(secret_env(password_variable, secret, "password"));
    let server = Container {
        name: SERVER_CONTAINER.into(),
        image: Some(image(db)),
        restart_policy: Some("Always".into()),
        args: Some(args),
        env: Some(env),
        resources: Some(server_resources(db)),
        volume_mounts: Some(vec![VolumeMount {
            name: "database-data".into(),
            mount_path: data_dir.into(),
            ..VolumeMount::default()
        }]),
        // A database server writes its socket and lock files outside its data directory.
        security_context: Some(pod::restricted(SERVER_USER, false)),
        ..Container::default()
    };
    let spec = pod.spec.get_or_insert_default();
    spec.init_containers.get_or_insert_default().push(server);
    spec.volumes.get_or_insert_default().push(Volume {
        name: "database-data".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });
    let security = spec.security_context.get_or_insert_with(PodSecurityContext::default);
    security.fs_group = Some(SERVER_USER);
}

/// Times the throwaway server may end before the verification gives up on it.
pub const SERVER_START_ATTEMPTS: i32 = 3;

/// Why the throwaway server of a verification's `pod` will not start, once it ended
/// [`SERVER_START_ATTEMPTS`] times without the agent ever running (the kubelet restarts it
/// without end, and the agent waits for it): its last exit code and reason.
pub fn server_failed(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    let server = statuses.iter().find(|s| s.name == SERVER_CONTAINER)?;
    if server.restart_count < SERVER_START_ATTEMPTS || server.state.as_ref().is_some_and(|s| s.running.is_some()) {
        return None;
    }
    let last = server.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let how = match last {
        Some(t) => format!(
            ", last with exit code {}{}",
            t.exit_code,
            t.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        None => String::new(),
    };
    Some(format!(
        "the throwaway database server (image {}) did not start: it ended {} times{how}",
        server.image, server.restart_count
    ))
}

/// Records a finished run's report in `status`: the snapshot, durations, totals, what was
/// checked and what failed, and a message naming the first failure. Returns whether every
/// check passed.
pub fn record(report: &VerificationReport, status: &mut VerificationStatus) -> bool {
    if let Some(id) = &report.snapshot_id {
        status.snapshot_id = Some(id.clone());
    }
    status.restore_duration_seconds = Some(report.restore_seconds);
    status.check_duration_seconds = Some(report.check_seconds);
    status.restored = Some(RestoredTotals {
        files: report.files,
        bytes: report.bytes,
        tables: report.tables,
    });
    status.checked = report.checked.clone();
    status.failures = report
        .failures
        .iter()
        .take(FAILURES_SHOWN)
        .map(|f| VerificationFailure {
            subject: f.subject.clone(),
            detail: f.detail.clone(),
        })
        .collect();
    let total = report.failures_total.max(report.failures.len() as u64);
    status.failures_total = total;
    let snapshot = report.snapshot_id.as_deref().unwrap_or("?");
    let passed = report.ok && total == 0;
    status.message = Some(match report.failures.first() {
        _ if passed => format!(
            "snapshot {snapshot} verified: {} checks passed; the restore took {:.1}s",
            report.checked.len(),
            report.restore_seconds
        ),
        Some(first) => {
            let more = match total {
                0 | 1 => String::new(),
                n => format!(" (and {} more failures)", n - 1),
            };
            format!(
                "snapshot {snapshot} failed verification: {}: {}{more}",
                first.subject, first.detail
            )
        }
        None => format!("snapshot {snapshot} failed verification (the agent named no failing check)"),
    });
    passed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::pod::{AgentPod, AgentSettings, build};
    use hort_protocol::env;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn spec(yaml: &str) -> VerificationSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn settings() -> AgentSettings {
        AgentSettings {
            image: "hort-agent:1".into(),
            pull_policy: "IfNotPresent".into(),
            retry_backoff: std::time::Duration::from_secs(1),
            default_resources: None,
            default_deadline_seconds: None,
            max_pods_per_node: None,
        }
    }

    /// The pod the operator builds for `spec` (snapshot `ab12cd34`).
    fn pod_of(spec: &VerificationSpec) -> Pod {
        let mut access = RepositoryAccess::default();
        let command = command(spec, Some("ab12cd34"), "v-verify", &mut access).unwrap();
        let mut pod = build(
            &settings(),
            AgentPod {
                name: "v-verify".into(),
                namespace: "demo".into(),
                owner: OwnerReference::default(),
                labels: BTreeMap::new(),
                command,
                repository: access,
                overrides: spec.agent.as_ref(),
                active_deadline_seconds: spec.active_deadline_seconds,
                node: None,
            },
        );
        if let Some(db) = &spec.database {
            add_server(&mut pod, db, "v-verify");
        }
        pod
    }

    #[test]
    fn a_database_verification_runs_its_server_as_a_restricted_sidecar_with_the_password_by_reference() {
        let spec = spec(
            "storageGroupRef: {name: g}\nsource: {tags: [nightly]}\n\
             database: {kind: Postgres, assertions: [{name: balanced, database: shop, sql: 'select true'}]}",
        );
        let pod = pod_of(&spec);
        let pod_spec = pod.spec.unwrap();
        let agent = &pod_spec.containers[0];
        assert_eq!(
            agent.args.as_deref().unwrap()[..6],
            [
                "verify-restore-postgres",
                "ab12cd34",
                "--host",
                "127.0.0.1",
                "--port",
                "5432"
            ]
        );
        assert!(agent.args.as_ref().unwrap().iter().any(|a| a.contains("\"balanced\"")));
        let server = &pod_spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(server.name, SERVER_CONTAINER);
        assert_eq!(server.restart_policy.as_deref(), Some("Always"), "a native sidecar");
        assert_eq!(server.image.as_deref(), Some("postgres:17"));
        assert_eq!(
            server.args.as_deref().unwrap(),
            ["-c", "listen_addresses=127.0.0.1"],
            "reachable from the agent only"
        );
        let limits = server.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(
            (&limits["cpu"].0[..], &limits["memory"].0[..]),
            ("1", "1Gi"),
            "bounded by default"
        );
        // Every password by reference: the env holds no value for any credential.
        let agent_env = agent.env.as_ref().unwrap();
        let server_env = server.env.as_ref().unwrap();
        for (variable, env) in [
            (env::DB_PASSWORD, agent_env),
            (env::DB_USER, agent_env),
            ("POSTGRES_PASSWORD", server_env),
        ] {
            let var = env.iter().find(|e| e.name == variable).unwrap();
            assert!(var.value.is_none(), "{variable} has a value");
            let selector = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
            assert_eq!(selector.name, "v-verify");
        }
        // Pod Security "restricted": both containers non-root, no capabilities, no escalation.
        for container in [agent, server] {
            let security = container.security_context.as_ref().unwrap();
            assert_eq!(security.run_as_non_root, Some(true), "{}", container.name);
            assert_eq!(security.allow_privilege_escalation, Some(false));
            let caps = security.capabilities.as_ref().unwrap();
            assert_eq!(
                (caps.drop.as_deref(), caps.add.as_ref()),
                (Some(&["ALL".to_string()][..]), None)
            );
        }
        let pod_security = pod_spec.security_context.unwrap();
        assert_eq!(pod_security.fs_group, Some(SERVER_USER));
        assert_eq!(pod_security.seccomp_profile.unwrap().type_, "RuntimeDefault");
        assert!(
            pod_spec
                .volumes
                .unwrap()
                .iter()
                .all(|v| v.empty_dir.is_some() || v.secret.is_some()),
            "restricted allows these volume types"
        );
    }

    #[test]
    fn a_mariadb_server_takes_the_image_and_resources_given() {
        let spec = spec(
            "storageGroupRef: {name: g}\nsource: {snapshotId: ab12cd34}\n\
             database: {kind: Mariadb, image: 'mariadb:10.11', resources: {limits: {memory: 2Gi}}}",
        );
        let pod = pod_of(&spec);
        let pod_spec = pod.spec.unwrap();
        let server = &pod_spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(server.image.as_deref(), Some("mariadb:10.11"));
        assert_eq!(server.args.as_deref().unwrap(), ["--bind-address=127.0.0.1"]);
        assert!(
            server
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "MARIADB_ROOT_PASSWORD")
        );
        let limits = server.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "2Gi");
        assert!(!limits.contains_key("cpu"), "the spec's resources replace the defaults");
        assert_eq!(
            pod_spec.containers[0].args.as_deref().unwrap()[..6],
            [
                "verify-restore-mariadb",
                "ab12cd34",
                "--host",
                "127.0.0.1",
                "--port",
                "3306"
            ]
        );
    }

    #[test]
    fn a_volume_verification_restores_into_an_ephemeral_claim_of_the_class_and_size_given() {
        let spec = spec(
            "storageGroupRef: {name: g}\nsource: {tags: [a, b]}\nvolume: {storageClassName: fast, size: 5Gi}\n\
             activeDeadlineSeconds: 900",
        );
        let mut access = RepositoryAccess::default();
        assert_eq!(
            command(&spec, None, "unused", &mut access),
            Some(AgentCommand::VerifyRestore {
                snapshot: "latest".into(),
                tags: vec!["a".into(), "b".into()],
                scratch: RESTORE_DIR.into(),
                keep: false,
            })
        );
        assert!(access.env.is_empty(), "no database credentials");
        let pod = pod_of(&spec);
        let pod_spec = pod.spec.unwrap();
        let scratch = pod_spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "scratch")
            .unwrap();
        let template = scratch
            .ephemeral
            .as_ref()
            .unwrap()
            .volume_claim_template
            .as_ref()
            .unwrap();
        assert_eq!(template.spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            template.spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "5Gi"
        );
        assert!(
            pod_spec.containers[0]
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "scratch" && m.mount_path == SCRATCH_DIR)
        );
        assert!(pod_spec.init_containers.is_none(), "no server");
        // Like a volume restore: root with the file capabilities only, to write the snapshot's
        // owners and modes into the fresh claim.
        let security = pod_spec.containers[0].security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, None);
        let added = security.capabilities.as_ref().unwrap().add.clone().unwrap();
        assert_eq!(added, crate::agent::pod::FILE_CAPABILITIES.map(String::from));
        assert_eq!(pod_spec.active_deadline_seconds, Some(900));
        assert_eq!(pod.metadata.labels.unwrap()[crate::agent::ROLE_LABEL], "verify");
    }

    fn report(ok: bool, failures: &[(&str, &str)], total: u64) -> VerificationReport {
        VerificationReport {
            snapshot_id: Some("ab12cd34".into()),
            ok,
            restore_seconds: 12.5,
            check_seconds: 1.0,
            checked: vec!["database shop: 2 tables, row counts match the backup".into()],
            failures: failures
                .iter()
                .map(|(subject, detail)| hort_protocol::VerificationFailure {
                    subject: (*subject).into(),
                    detail: (*detail).into(),
                })
                .collect(),
            failures_total: total,
            files: 3,
            bytes: 100,
            tables: 2,
            packs: None,
        }
    }

    #[test]
    fn a_report_becomes_status_and_a_failure_is_named_in_the_message() {
        let mut status = VerificationStatus::default();
        assert!(record(&report(true, &[], 0), &mut status));
        assert_eq!(status.restore_duration_seconds, Some(12.5));
        assert_eq!(status.restored.as_ref().unwrap().tables, 2);
        assert_eq!(
            status.message.as_deref(),
            Some("snapshot ab12cd34 verified: 1 checks passed; the restore took 12.5s")
        );

        let mut status = VerificationStatus::default();
        let failed = report(
            false,
            &[("table shop.orders", "1199 rows, 1200 at backup"), ("x", "y")],
            7,
        );
        assert!(!record(&failed, &mut status));
        assert_eq!(status.failures_total, 7);
        assert_eq!(status.failures[0].subject, "table shop.orders");
        assert_eq!(
            status.message.as_deref(),
            Some(
                "snapshot ab12cd34 failed verification: table shop.orders: 1199 rows, 1200 at backup (and 6 more failures)"
            )
        );
        // A report that says not ok fails even without named failures.
        assert!(!record(&report(false, &[], 0), &mut VerificationStatus::default()));
    }
    #[test]
    fn a_server_that_keeps_ending_fails_the_run_naming_its_image_and_exit_code() {
        let pod = |restarts: i32, state: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"status": {"initContainerStatuses": [
                {"name": SERVER_CONTAINER, "image": "mariadb:11", "imageID": "", "ready": false,
                 "restartCount": restarts, "state": state,
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}))
            .unwrap()
        };
        let backoff = serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(
            server_failed(&pod(3, backoff.clone())).as_deref(),
            Some(
                "the throwaway database server (image mariadb:11) did not start: it ended 3 times, last with exit code 1 (Error)"
            )
        );
        assert_eq!(server_failed(&pod(2, backoff)), None, "it may still start");
        let running = serde_json::json!({"running": {}});
        assert_eq!(server_failed(&pod(5, running)), None, "it runs now");
    }
}
