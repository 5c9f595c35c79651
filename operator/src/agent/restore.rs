//! A RestoreRequest's agent run: the command for its target (and the claim and credentials
//! the target needs), and what its report becomes in status.
//!
//! Volume targets are mounted read-write at [`TARGET_DIR`]; database targets get their
//! credentials by Secret reference.

use hort_crds::restore_request::{DatabaseRestoreTarget, OverwritePolicy, RestoreRequestSpec, RestoreStats};
use hort_protocol::command::LATEST;
use hort_protocol::{AgentCommand, DatabaseKind, DatabaseMapping, DatabaseTls, Overwrite, RestoreReport, env};
use k8s_openapi::api::core::v1::EnvVar;

use super::pod::RepositoryAccess;
use crate::references::{Reference, database_references};

/// Where a volume target is mounted in the restore pod.
pub const TARGET_DIR: &str = "/target";

/// The stats shown in the RestoreRequest's status.
pub fn stats(report: &RestoreReport) -> RestoreStats {
    RestoreStats {
        bytes_restored: report.bytes_restored,
        files: report.files,
        skipped: report.skipped,
        row_counts: report.row_counts.clone(),
        duration_seconds: report.duration_seconds,
    }
}

/// The database credentials Secret the restore pod would use: it must exist and be marked
/// usable by its owner before the pod is made. (A target claim is checked where it is found or
/// created.)
pub fn references(spec: &RestoreRequestSpec) -> Vec<Reference> {
    let target = &spec.target;
    let databases = [
        (&target.postgres, "spec.target.postgres"),
        (&target.mariadb, "spec.target.mariadb"),
    ];
    databases
        .into_iter()
        .filter_map(|(database, field)| {
            database
                .as_ref()
                .map(|d| database_references(&d.credentials_secret_ref, d.tls.as_ref(), field))
        })
        .flatten()
        .collect()
}

/// The command that restores `snapshot` (an id, or `None` for the newest snapshot with the
/// spec's tags), adding the target's volumes and credentials to `access`. `None` for a spec
/// without a target (which the API server refuses).
pub fn command(
    spec: &RestoreRequestSpec,
    snapshot: Option<&str>,
    access: &mut RepositoryAccess,
) -> Option<AgentCommand> {
    let snapshot = snapshot.unwrap_or(LATEST).to_string();
    // Tags choose the snapshot only when neither an id nor a BackupJob does.
    let tags = if spec.source.snapshot_id.is_none() && spec.source.backup_job_ref.is_none() {
        spec.source.tags.clone()
    } else {
        Vec::new()
    };
    if let Some(minutes) = spec.archive_wait_minutes {
        access.env.push(EnvVar {
            name: env::ARCHIVE_WAIT.into(),
            value: Some(format!("{minutes}m")),
            ..EnvVar::default()
        });
    }
    let target = &spec.target;
    if let Some(volume) = &target.volume {
        access.mount_claim("target", &volume.claim_name, TARGET_DIR, false);
        let dir = if volume.sub_path.is_empty() {
            TARGET_DIR.to_string()
        } else {
            format!("{TARGET_DIR}/{}", volume.sub_path.trim_end_matches('/'))
        };
        return Some(AgentCommand::Restore {
            snapshot,
            target: dir,
            paths: volume.paths.clone(),
            overwrite: match volume.overwrite {
                OverwritePolicy::Never => Overwrite::Never,
                OverwritePolicy::IfNewer => Overwrite::IfNewer,
                OverwritePolicy::Always => Overwrite::Always,
            },
            tags,
        });
    }
    let (kind, db) = match (&target.postgres, &target.mariadb) {
        (Some(p), _) => (DatabaseKind::Postgres, p),
        (None, Some(m)) => (DatabaseKind::Mariadb, m),
        (None, None) => return None,
    };
    access.database_credentials(&db.credentials_secret_ref.name);
    let tls = access.database_tls(db.tls.as_ref());
    Some(database_command(kind, db, tls, snapshot, tags))
}

/// The restore pod's deadline: `activeDeadlineSeconds`, or else the operator's `default`
/// plus `archiveWaitMinutes`, so that waiting for an archive never uses up the default.
pub fn deadline(spec: &RestoreRequestSpec, default: Option<i64>) -> Option<i64> {
    spec.active_deadline_seconds.or_else(|| {
        let wait = i64::from(spec.archive_wait_minutes?) * 60;
        default.map(|d| d + wait)
    })
}

fn database_command(
    kind: DatabaseKind,
    db: &DatabaseRestoreTarget,
    tls: DatabaseTls,
    snapshot: String,
    tags: Vec<String>,
) -> AgentCommand {
    AgentCommand::RestoreDatabase {
        kind,
        snapshot,
        host: db.host.clone(),
        port: db.port.unwrap_or(kind.default_port()),
        tls,
        databases: db
            .databases
            .iter()
            .map(|m| DatabaseMapping {
                from: m.from.clone(),
                to: m.to.clone(),
            })
            .collect(),
        tables: db.tables.clone(),
        clean: db.clean,
        tags,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(yaml: &str) -> RestoreRequestSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_database_target_names_its_credentials_secret_and_a_volume_target_none() {
        let mariadb = spec(
            "storageGroupRef: {name: g}\nsource: {snapshotId: 0123abcd}\n\
             target: {mariadb: {host: db, credentialsSecretRef: {name: maria-admin}}}",
        );
        let field = "spec.target.mariadb.credentialsSecretRef";
        assert_eq!(
            references(&mariadb),
            [Reference::secret("maria-admin", &["username", "password"], field)]
        );
        let volume =
            spec("storageGroupRef: {name: g}\nsource: {snapshotId: 0123abcd}\ntarget: {volume: {claimName: c}}");
        assert_eq!(references(&volume), []);
    }

    #[test]
    fn an_archive_wait_reaches_the_agent_and_lengthens_the_default_deadline() {
        let waiting = spec(
            "storageGroupRef: {name: g}\nsource: {snapshotId: 0123abcd}\n\
             target: {volume: {claimName: c}}\narchiveWaitMinutes: 720",
        );
        let mut access = RepositoryAccess::default();
        command(&waiting, None, &mut access);
        let wait: Vec<(&str, Option<&str>)> = access
            .env
            .iter()
            .filter(|e| e.name == env::ARCHIVE_WAIT)
            .map(|e| (e.name.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(wait, [("HORT_ARCHIVE_WAIT", Some("720m"))]);
        assert_eq!(deadline(&waiting, Some(21600)), Some(21600 + 720 * 60));
        assert_eq!(deadline(&waiting, None), None, "no default deadline, none added");
        let bounded = RestoreRequestSpec {
            active_deadline_seconds: Some(50000),
            ..waiting.clone()
        };
        assert_eq!(
            deadline(&bounded, Some(21600)),
            Some(50000),
            "the user's deadline stands"
        );

        let at_once = RestoreRequestSpec {
            archive_wait_minutes: None,
            ..waiting
        };
        let mut access = RepositoryAccess::default();
        command(&at_once, None, &mut access);
        assert!(access.env.iter().all(|e| e.name != env::ARCHIVE_WAIT));
        assert_eq!(
            deadline(&at_once, Some(21600)),
            None,
            "the pod builder applies the default"
        );
    }

    #[test]
    fn volume_restore_of_chosen_paths_into_a_sub_path() {
        let spec = spec(
            "storageGroupRef: {name: g}\nsource: {snapshotId: 0123abcd}\n\
             target: {volume: {claimName: c, paths: [media/2026], subPath: restored, overwrite: IfNewer}}",
        );
        let mut access = RepositoryAccess::default();
        assert_eq!(
            command(&spec, Some("0123abcd"), &mut access),
            Some(AgentCommand::Restore {
                snapshot: "0123abcd".into(),
                target: "/target/restored".into(),
                paths: vec!["media/2026".into()],
                overwrite: Overwrite::IfNewer,
                tags: vec![],
            })
        );
        assert_eq!(access.mounts[0].mount_path, "/target");
        assert_eq!(access.mounts[0].read_only, None);
    }

    #[test]
    fn database_restore_with_rename_tables_and_tags() {
        let spec = spec(
            "storageGroupRef: {name: g}\nsource: {tags: [nightly]}\n\
             target: {mariadb: {host: db, credentialsSecretRef: {name: creds}, databases: [{from: shop, to: shop_copy}], \
             tables: [orders], clean: true, tls: {mode: Disable}}}",
        );
        let mut access = RepositoryAccess::default();
        assert_eq!(
            command(&spec, None, &mut access),
            Some(AgentCommand::RestoreDatabase {
                kind: DatabaseKind::Mariadb,
                snapshot: "latest".into(),
                host: "db".into(),
                port: 3306,
                tls: DatabaseTls {
                    mode: hort_protocol::TlsMode::Disable,
                    ca_file: None,
                },
                databases: vec![DatabaseMapping {
                    from: "shop".into(),
                    to: Some("shop_copy".into())
                }],
                tables: vec!["orders".into()],
                clean: true,
                tags: vec!["nightly".into()],
            })
        );
        assert!(
            access.env.iter().all(|e| e.value.is_none()),
            "credentials only by reference"
        );
    }

    #[test]
    fn postgres_restores_go_to_the_port_given_else_5432() {
        let port = |target: &str| {
            let spec = spec(&format!(
                "storageGroupRef: {{name: g}}\nsource: {{}}\ntarget: {{postgres: {target}}}"
            ));
            match command(&spec, Some("ab12"), &mut RepositoryAccess::default()) {
                Some(AgentCommand::RestoreDatabase { port, .. }) => port,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(port("{host: db, credentialsSecretRef: {name: c}}"), 5432);
        assert_eq!(port("{host: db, port: 6543, credentialsSecretRef: {name: c}}"), 6543);
    }

    #[test]
    fn stats_keep_row_counts() {
        let report = RestoreReport {
            snapshot_id: "ab".into(),
            bytes_restored: 10,
            files: 1,
            skipped: 3,
            duration_seconds: 0.5,
            row_counts: BTreeMap::from([("shop.orders".into(), 42)]),
        };
        assert_eq!(stats(&report).row_counts["shop.orders"], 42);
        assert_eq!(stats(&report).skipped, 3);
    }
}
