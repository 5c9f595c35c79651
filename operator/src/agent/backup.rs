//! A BackupJob's agent run: the command for its source (and the volumes and credentials the
//! source needs), the progress it prints, what its report becomes in status, and the backoff
//! between attempts.
//!
//! Volume sources are mounted read-only at [`SOURCE_DIR`] and backed up with the host name
//! `NAMESPACE/CLAIM`, the same from pod to pod, so the agent finds the claim's previous snapshot
//! and skips unchanged files. Database sources get their credentials by Secret reference.

use std::time::Duration;

use hort_crds::backup_job::{BackupJobSpec, BackupStats, SnapshotMode, VolumeSource};
use hort_protocol::{AgentCommand, BackupReport, DatabaseKind};

use super::check::human_bytes;
use super::pod::RepositoryAccess;
use crate::conditions::{Observation, Status};
use crate::references::{Reference, database_references};

/// Where a volume source is mounted in the agent pod.
pub const SOURCE_DIR: &str = "/source";
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Name of the condition that says whether a volume source is read from a snapshot.
pub const VOLUME_SNAPSHOT: &str = "VolumeSnapshot";

/// The Secret or claim the job's agent pod would use: each must exist and be marked usable by
/// its owner before the pod is made.
pub fn references(spec: &BackupJobSpec) -> Vec<Reference> {
    let source = &spec.source;
    let mut references = vec![];
    if let Some(p) = &source.postgres {
        references.extend(database_references(
            &p.credentials_secret_ref,
            p.tls.as_ref(),
            "spec.source.postgres",
        ));
    }
    if let Some(m) = &source.mariadb {
        references.extend(database_references(
            &m.credentials_secret_ref,
            m.tls.as_ref(),
            "spec.source.mariadb",
        ));
    }
    if let Some(volume) = &source.volume {
        references.push(Reference::claim(&volume.claim_name, "spec.source.volume.claimName"));
    }
    references
}

/// The `VolumeSnapshot` condition of a volume backup that reads the live volume: `False`,
/// saying why (`because`) and that files written during the backup may be copied torn.
pub fn live_read(volume: &VolumeSource, because: &str) -> Observation {
    let reason = match volume.snapshot {
        SnapshotMode::None => "SnapshotDisabled",
        _ => "SnapshotUnavailable",
    };
    Observation {
        type_: VOLUME_SNAPSHOT,
        status: Status::False,
        reason,
        message: format!(
            "claim {:?} is read live ({because}): files written while the backup runs may be copied in a torn state",
            volume.claim_name
        ),
    }
}

/// The `VolumeSnapshot` condition of an attempt that reads the claim from `snapshot`, cut at
/// `cut`: `True`.
pub fn snapshot_taken(volume: &VolumeSource, snapshot: &str, cut: &str, pause: Option<f64>) -> Observation {
    let held = pause.map_or(String::new(), |s| {
        format!("; the hooks held the application for {s:.1}s")
    });
    Observation {
        type_: VOLUME_SNAPSHOT,
        status: Status::True,
        reason: "SnapshotTaken",
        message: format!(
            "claim {:?} is read from VolumeSnapshot {snapshot:?}, cut at {cut}{held}",
            volume.claim_name
        ),
    }
}

/// What a succeeded backup's message adds when a `Mirror` group's targets missed some of
/// its files: which ones, and what brings them level.
pub fn targets_behind(report: &BackupReport) -> Option<String> {
    (!report.targets_behind.is_empty()).then(|| {
        format!(
            "; targets behind (the StorageGroup's next check copies what they lack): {}",
            report.targets_behind.join(", ")
        )
    })
}

/// The stats shown in the BackupJob's status.
pub fn stats(report: &BackupReport) -> BackupStats {
    BackupStats {
        bytes_read: report.bytes_read,
        bytes_new: report.bytes_new,
        bytes_stored: report.bytes_stored,
        stored_size: human_bytes(report.bytes_stored),
        files: report.files,
        dedup_ratio: if report.bytes_stored == 0 {
            0.0
        } else {
            (report.bytes_read as f64 / report.bytes_stored as f64 * 100.0).round() / 100.0
        },
        duration_seconds: report.duration_seconds,
    }
}

/// The command that backs up the source of a job in `namespace`, with `tags`; the volumes,
/// mounts and credentials its source needs are added to `access`. A volume source is read
/// from `read_claim` when given (the temporary claim of a snapshot), else from its own claim.
/// `None` for a spec without a source (which the API server refuses).
pub fn command(
    spec: &BackupJobSpec,
    namespace: &str,
    tags: &[String],
    access: &mut RepositoryAccess,
    read_claim: Option<&str>,
) -> Option<AgentCommand> {
    let source = &spec.source;
    if let Some(volume) = &source.volume {
        access.mount_claim("source", read_claim.unwrap_or(&volume.claim_name), SOURCE_DIR, true);
        return Some(AgentCommand::Backup {
            dir: SOURCE_DIR.into(),
            paths: volume.paths.clone(),
            excludes: volume.exclude.clone(),
            host: format!("{namespace}/{}", volume.claim_name),
            tags: tags.to_vec(),
        });
    }
    let (kind, host, port, databases, credentials, tls) = match (&source.postgres, &source.mariadb) {
        (Some(p), _) => (
            DatabaseKind::Postgres,
            &p.host,
            p.port,
            &p.databases,
            &p.credentials_secret_ref.name,
            &p.tls,
        ),
        (None, Some(m)) => (
            DatabaseKind::Mariadb,
            &m.host,
            m.port,
            &m.databases,
            &m.credentials_secret_ref.name,
            &m.tls,
        ),
        (None, None) => return None,
    };
    access.database_credentials(credentials);
    Some(AgentCommand::BackupDatabase {
        kind,
        host: host.clone(),
        port,
        tls: access.database_tls(tls.as_ref()),
        databases: databases.clone(),
        tags: tags.to_vec(),
    })
}

/// The pause before attempt `next` (2, 3, …): `base` doubled per failed attempt, at most five
/// minutes.
pub fn backoff(base: Duration, next: u32) -> Duration {
    let doublings = next.saturating_sub(2).min(16);
    base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &str) -> BackupJobSpec {
        serde_yaml::from_str(&format!("storageGroupRef: {{name: s3}}\nsource: {source}")).unwrap()
    }

    #[test]
    fn each_source_names_the_secret_or_claim_its_pod_uses() {
        let postgres = spec(
            "{postgres: {host: db, credentialsSecretRef: {name: pg-creds}, \
             tls: {mode: VerifyFull, caSecretRef: {name: pg-ca}}}}",
        );
        assert_eq!(
            references(&postgres),
            [
                Reference::secret(
                    "pg-creds",
                    &["username", "password"],
                    "spec.source.postgres.credentialsSecretRef"
                ),
                Reference::secret("pg-ca", &["ca.crt"], "spec.source.postgres.tls.caSecretRef")
            ]
        );
        let mariadb = spec("{mariadb: {host: db, credentialsSecretRef: {name: maria}}}");
        let field = "spec.source.mariadb.credentialsSecretRef";
        assert_eq!(
            references(&mariadb),
            [Reference::secret("maria", &["username", "password"], field)]
        );
        let volume = spec("{volume: {claimName: data}}");
        assert_eq!(
            references(&volume),
            [Reference::claim("data", "spec.source.volume.claimName")]
        );
    }

    #[test]
    fn volume_source_is_mounted_read_only() {
        let mut access = RepositoryAccess::default();
        let command = command(
            &spec("{volume: {claimName: data, paths: [media], exclude: ['*.tmp']}}"),
            "shop",
            &["manual".into()],
            &mut access,
            None,
        )
        .unwrap();
        assert_eq!(
            command,
            AgentCommand::Backup {
                dir: "/source".into(),
                paths: vec!["media".into()],
                excludes: vec!["*.tmp".into()],
                host: "shop/data".into(),
                tags: vec!["manual".into()],
            }
        );
        assert_eq!(access.mounts[0].read_only, Some(true));
        let claim = access.volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("data", Some(true)));
        // From a snapshot, the temporary claim is read, under the source claim's host name (so
        // the agent finds the claim's previous snapshot).
        let mut access = RepositoryAccess::default();
        let spec = spec("{volume: {claimName: data}}");
        let from_snapshot = super::command(&spec, "shop", &[], &mut access, Some("job-1")).unwrap();
        assert!(matches!(from_snapshot, AgentCommand::Backup { host, .. } if host == "shop/data"));
        let claim = access.volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("job-1", Some(true)));
    }

    #[test]
    fn database_credentials_come_from_the_secret_by_reference() {
        let mut access = RepositoryAccess::default();
        let command = command(
            &spec(
                "{postgres: {host: db, databases: [app], credentialsSecretRef: {name: db-creds}, \
                 tls: {mode: VerifyFull, caSecretRef: {name: db-ca}}}}",
            ),
            "shop",
            &[],
            &mut access,
            None,
        )
        .unwrap();
        assert_eq!(
            command,
            AgentCommand::BackupDatabase {
                kind: DatabaseKind::Postgres,
                host: "db".into(),
                port: 5432,
                tls: hort_protocol::DatabaseTls {
                    mode: hort_protocol::TlsMode::VerifyFull,
                    ca_file: Some(hort_protocol::command::DATABASE_CA_FILE.into()),
                },
                databases: vec!["app".into()],
                tags: vec![],
            }
        );
        // The CA reaches the agent as a read-only file from the Secret's key ca.crt.
        let ca = access.volumes.iter().find(|v| v.name == "database-ca").unwrap();
        let source = ca.secret.as_ref().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some("db-ca"));
        assert_eq!(source.items.as_ref().unwrap()[0].key, "ca.crt");
        let mount = access.mounts.iter().find(|m| m.name == "database-ca").unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/etc/hort/database-ca", Some(true))
        );
        assert!(!command.to_args().iter().any(|a| a.contains("password")));
        let password = access.env.iter().find(|e| e.name == "HORT_DB_PASSWORD").unwrap();
        assert!(password.value.is_none());
        let selector = password.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(
            (selector.name.as_str(), selector.key.as_str()),
            ("db-creds", "password")
        );
    }

    #[test]
    fn the_volume_snapshot_condition_says_how_the_claim_was_read() {
        let volume = |yaml: &str| -> VolumeSource { serde_yaml::from_str(yaml).unwrap() };
        let auto = live_read(&volume("{claimName: data}"), "no snapshot controller answered");
        assert_eq!((auto.status, auto.reason), (Status::False, "SnapshotUnavailable"));
        assert!(
            auto.message
                .contains("claim \"data\" is read live (no snapshot controller answered)"),
            "{}",
            auto.message
        );
        let none = live_read(&volume("{claimName: data, snapshot: None}"), "snapshot is None");
        assert_eq!(none.reason, "SnapshotDisabled");
        let taken = snapshot_taken(
            &volume("{claimName: data, snapshot: CSI}"),
            "job-1",
            "2026-11-30T05:00:00Z",
            Some(0.25),
        );
        assert_eq!((taken.status, taken.reason), (Status::True, "SnapshotTaken"));
        assert_eq!(
            taken.message,
            "claim \"data\" is read from VolumeSnapshot \"job-1\", cut at 2026-11-30T05:00:00Z; the hooks held the application for 0.2s"
        );
    }

    #[test]
    fn stats_and_targets_behind_from_the_report() {
        let report = BackupReport {
            snapshot_id: "5eed".into(),
            bytes_read: 900,
            bytes_new: 600,
            bytes_stored: 300,
            files: 2,
            duration_seconds: 0.5,
            targets_behind: Vec::new(),
        };
        let stats = stats(&report);
        assert_eq!(stats.dedup_ratio, 3.0);
        assert_eq!(targets_behind(&report), None);
        let behind = BackupReport {
            targets_behind: vec!["s3://backups/hort".into()],
            ..report
        };
        assert!(targets_behind(&behind).unwrap().contains("s3://backups/hort"));
        assert_eq!(stats.stored_size, "300 B");
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 3), Duration::from_secs(20));
        assert_eq!(backoff(base, 4), Duration::from_secs(40));
        assert_eq!(backoff(base, 11), Duration::from_secs(300));
    }
}
