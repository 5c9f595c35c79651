//! A BackupJob's agent run: the command for its source (and the volumes and credentials the
//! source needs), the progress it prints, what its report becomes in status, and the backoff
//! between attempts.
//!
//! Volume sources are mounted read-only at [`SOURCE_DIR`] (a `claimSelector`'s claims each at
//! `SOURCE_DIR/CLAIM`) and backed up with the host name `NAMESPACE/CLAIM` (or
//! `NAMESPACE/k=v,…` for a selector), the same from pod to pod, so the agent finds the previous
//! snapshot and skips unchanged files. Database sources get their credentials by Secret
//! reference.

use std::time::Duration;

use hort_crds::backup_job::{BackupJobSpec, BackupStats, ClaimSnapshot, SnapshotMode, VolumeSource};
use hort_protocol::{AgentCommand, BackupReport, DatabaseKind};

use super::pod::RepositoryAccess;
use crate::conditions::{Observation, Status};
use crate::references::{self, Reference, database_references};
use hort_protocol::units::Bytes;

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
        match (&volume.claim_name, &volume.claim_selector) {
            (Some(name), _) => references.push(Reference::claim(name, "spec.source.volume.claimName")),
            (None, Some(labels)) => references.push(Reference::ClaimSelector {
                labels: labels.clone(),
                field: "spec.source.volume.claimSelector".into(),
            }),
            (None, None) => {}
        }
    }
    references
}

/// The backup's host name for a volume source in `namespace`: `NAMESPACE/CLAIM`, or for a
/// selector `NAMESPACE/` and its labels as `k=v` sorted by key and joined by `,` (so the agent
/// finds the previous snapshot of the same claims).
pub fn volume_host(namespace: &str, volume: &VolumeSource) -> String {
    match (&volume.claim_name, &volume.claim_selector) {
        (Some(name), _) => format!("{namespace}/{name}"),
        (None, Some(labels)) => format!("{namespace}/{}", references::selector(labels)),
        (None, None) => namespace.to_string(),
    }
}

/// What a volume source reads, for messages: `claim "data"`, or `the claims with labels app=shop`.
pub fn describe(volume: &VolumeSource) -> String {
    match (&volume.claim_name, &volume.claim_selector) {
        (Some(name), _) => format!("claim {name:?}"),
        (None, Some(labels)) => format!("the claims with labels {}", references::selector(labels)),
        (None, None) => "no claim".into(),
    }
}

/// A claim the agent pod of a volume backup mounts: the claim backed up, and the claim
/// mounted for it (the same, or the temporary claim provisioned from its snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceClaim {
    /// The claim backed up (its name is its directory under [`SOURCE_DIR`] for a selector).
    pub claim: String,
    /// The claim mounted.
    pub read: String,
}

impl SourceClaim {
    /// `claim` read as it is (live).
    pub fn live(claim: &str) -> Self {
        SourceClaim {
            claim: claim.into(),
            read: claim.into(),
        }
    }
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
            "{} {} read live ({because}): files written while the backup runs may be copied in a torn state",
            describe(volume),
            if volume.claim_name.is_some() { "is" } else { "are" },
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
            "{} is read from VolumeSnapshot {snapshot:?}, cut at {cut}{held}",
            describe(volume)
        ),
    }
}

/// The `VolumeSnapshot` condition of an attempt that reads the claims of a selector from
/// their snapshots: one VolumeGroupSnapshot (`group`), or one VolumeSnapshot per claim between
/// the same hooks (`fallback` says why no group snapshot was taken); `True`.
pub fn claims_taken(
    claims: &[ClaimSnapshot],
    group: Option<&str>,
    fallback: Option<&str>,
    cut: &str,
    pause: Option<f64>,
) -> Observation {
    let held = pause.map_or(String::new(), |s| {
        format!("; the hooks held the application for {s:.1}s")
    });
    let names = claims
        .iter()
        .map(|c| c.claim_name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let message = match group {
        Some(group) => format!("VolumeGroupSnapshot {group:?} of claims {names}, cut at {cut}{held}"),
        None => {
            let why = fallback.map_or(String::new(), |why| format!(" (no VolumeGroupSnapshot: {why})"));
            format!(
                "{} VolumeSnapshots between the same hooks of claims {names}{why}, the last cut at {cut}{held}",
                claims.len()
            )
        }
    };
    Observation {
        type_: VOLUME_SNAPSHOT,
        status: Status::True,
        reason: "SnapshotTaken",
        message,
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

/// What a succeeded backup's message adds when the agent could not store Hort's catalog
/// after it: why, and what it means for disaster recovery.
pub fn catalog_not_stored(report: &BackupReport) -> Option<String> {
    report.catalog_error.as_ref().map(|error| {
        format!(
            "; Hort's catalog was not stored (`kubectl hort dr` lacks this backup until a later one stores it): {error}"
        )
    })
}

/// The stats shown in the BackupJob's status.
pub fn stats(report: &BackupReport) -> BackupStats {
    BackupStats {
        bytes_read: report.bytes_read,
        bytes_new: report.bytes_new,
        bytes_stored: report.bytes_stored,
        stored_size: Bytes(report.bytes_stored).to_string(),
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
/// mounts and credentials its source needs are added to `access`. A volume source mounts
/// `claims`, read-only: a `claimName`'s claim (the first of `claims`, else the claim itself) at
/// [`SOURCE_DIR`], a selector's each at `SOURCE_DIR/CLAIM`. `None` for a spec without a source
/// (which the API server refuses).
pub fn command(
    spec: &BackupJobSpec,
    namespace: &str,
    tags: &[String],
    access: &mut RepositoryAccess,
    claims: &[SourceClaim],
) -> Option<AgentCommand> {
    let source = &spec.source;
    if let Some(volume) = &source.volume {
        match &volume.claim_name {
            Some(name) => {
                let read = claims.first().map_or(name.as_str(), |c| c.read.as_str());
                access.mount_claim("source", read, SOURCE_DIR, true);
            }
            None => {
                for (i, claim) in claims.iter().enumerate() {
                    let dir = format!("{SOURCE_DIR}/{}", claim.claim);
                    access.mount_claim(&format!("source-{i}"), &claim.read, &dir, true);
                }
            }
        }
        return Some(AgentCommand::Backup {
            dir: SOURCE_DIR.into(),
            paths: volume.paths.clone(),
            excludes: volume.exclude.clone(),
            host: volume_host(namespace, volume),
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
            &[],
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
        let read = [SourceClaim {
            claim: "data".into(),
            read: "job-1".into(),
        }];
        let from_snapshot = super::command(&spec, "shop", &[], &mut access, &read).unwrap();
        assert!(matches!(from_snapshot, AgentCommand::Backup { host, .. } if host == "shop/data"));
        let claim = access.volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("job-1", Some(true)));
    }

    #[test]
    fn a_selectors_claims_are_mounted_each_under_its_name_with_a_stable_host() {
        let spec = spec("{volume: {claimSelector: {tier: db, app: shop}, paths: [db], snapshot: CSI}}");
        assert_eq!(
            references(&spec),
            [Reference::ClaimSelector {
                labels: [("app".into(), "shop".into()), ("tier".into(), "db".into())].into(),
                field: "spec.source.volume.claimSelector".into(),
            }]
        );
        let mut access = RepositoryAccess::default();
        let read = [
            SourceClaim {
                claim: "db".into(),
                read: "job-1-0".into(),
            },
            SourceClaim::live("wal"),
        ];
        let command = command(&spec, "shop", &[], &mut access, &read).unwrap();
        assert_eq!(
            command,
            AgentCommand::Backup {
                dir: "/source".into(),
                paths: vec!["db".into()],
                excludes: vec![],
                host: "shop/app=shop,tier=db".into(),
                tags: vec![],
            }
        );
        let mounted: Vec<_> = access
            .mounts
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounted,
            [
                ("source-0", "/source/db", Some(true)),
                ("source-1", "/source/wal", Some(true))
            ]
        );
        let claims: Vec<_> = access
            .volumes
            .iter()
            .map(|v| v.persistent_volume_claim.as_ref().unwrap().claim_name.as_str())
            .collect();
        assert_eq!(claims, ["job-1-0", "wal"]);
        // The host name does not depend on the order the labels were written in.
        let same = spec_volume("{claimSelector: {app: shop, tier: db}}");
        assert_eq!(volume_host("shop", &same), "shop/app=shop,tier=db");
    }

    fn spec_volume(yaml: &str) -> VolumeSource {
        serde_yaml::from_str(yaml).unwrap()
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
            &[],
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
        let selected = spec_volume("{claimSelector: {app: shop}}");
        let live = live_read(&selected, "no snapshot controller answered");
        assert!(
            live.message
                .starts_with("the claims with labels app=shop are read live (no snapshot controller answered)"),
            "{}",
            live.message
        );
        let claims = [
            ClaimSnapshot {
                claim_name: "db".into(),
                snapshot: "snapshot-1a".into(),
                temporary_claim: "job-1-0".into(),
            },
            ClaimSnapshot {
                claim_name: "wal".into(),
                snapshot: "snapshot-2b".into(),
                temporary_claim: "job-1-1".into(),
            },
        ];
        let group = claims_taken(&claims, Some("job-1"), None, "2026-11-30T05:00:00Z", None);
        assert_eq!((group.status, group.reason), (Status::True, "SnapshotTaken"));
        assert_eq!(
            group.message,
            "VolumeGroupSnapshot \"job-1\" of claims db, wal, cut at 2026-11-30T05:00:00Z"
        );
        let each = claims_taken(&claims, None, Some("no group class"), "2026-11-30T05:00:01Z", Some(1.0));
        assert_eq!(
            each.message,
            "2 VolumeSnapshots between the same hooks of claims db, wal (no VolumeGroupSnapshot: no group class), \
             the last cut at 2026-11-30T05:00:01Z; the hooks held the application for 1.0s"
        );
    }

    #[test]
    fn stats_targets_behind_and_a_catalog_not_stored_from_the_report() {
        let report = BackupReport {
            snapshot_id: "5eed".into(),
            bytes_read: 900,
            bytes_new: 600,
            bytes_stored: 300,
            files: 2,
            duration_seconds: 0.5,
            targets_behind: Vec::new(),
            catalog_error: None,
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
        assert_eq!(catalog_not_stored(&behind), None);
        let no_catalog = BackupReport {
            catalog_error: Some("s3://backups/hort: connection refused".into()),
            ..behind
        };
        let said = catalog_not_stored(&no_catalog).unwrap();
        assert!(
            said.contains("catalog was not stored") && said.contains("kubectl hort dr") && said.contains("refused"),
            "{said}"
        );
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
