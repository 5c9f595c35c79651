//! Hort's own catalog: what a namespace's protection looks like, stored in the repository so
//! that a fresh cluster can rebuild it from storage alone (`kubectl hort dr`).
//!
//! After each successful backup, the operator renders the namespace's [`Catalog`] into the
//! agent pod (variable [`crate::env::CATALOG`], never an argument) and the agent stores it, after
//! the backup's own snapshot, as a small snapshot of one stream [`STREAM`] with the tags
//! [`TAG`] and [`namespace_tag`], host [`host`]; it is deduplicated and encrypted like every
//! other snapshot. Such snapshots carry none of the tags of user backups
//! (`hort.dev/namespace=…`, `hort.dev/backup-job=…`, `hort.dev/schedule=…`), so retention by
//! those tags never counts them, and their host is their own, so retention by host and source
//! keeps them apart too; the agent keeps the newest [`KEPT_PER_NAMESPACE`] of each namespace.
//!
//! A catalog holds the objects' specs as the API server returned them: StorageGroups and
//! Schedules name Secrets but never hold their values (the API has no field for a value).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::Report;

/// The tag every catalog snapshot carries.
pub const TAG: &str = "hort.dev/catalog";
/// The name of the one stream of a catalog snapshot: the [`Catalog`] as JSON.
pub const STREAM: &str = "catalog.json";
/// The version of the catalog's format; raise it with any change an older reader would
/// misread.
pub const VERSION: u32 = 1;
/// BackupJobs kept in a catalog per schedule (or, for jobs of no schedule, per source): the
/// newest ones.
pub const JOBS_PER_SERIES: usize = 10;
/// The most bytes a catalog's JSON may have in an agent pod's environment: Linux refuses to
/// start a program with an environment entry over 128 KiB (`MAX_ARG_STRLEN`), so the operator
/// keeps fewer BackupJobs per series until the catalog fits, and gives none when even one per
/// series does not.
pub const MAX_BYTES: usize = 96 * 1024;
/// Catalog snapshots the agent keeps per namespace (the newest); older ones are forgotten.
pub const KEPT_PER_NAMESPACE: usize = 10;

/// The tag naming the namespace a catalog snapshot describes.
pub fn namespace_tag(namespace: &str) -> String {
    format!("hort.dev/catalog-namespace={namespace}")
}

/// The host name recorded in the catalog snapshots of `namespace`.
pub fn host(namespace: &str) -> String {
    format!("hort-catalog/{namespace}")
}

/// The protection of one namespace at the time of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// The format's version ([`VERSION`]).
    pub version: u32,
    /// The namespace described.
    pub namespace: String,
    /// The StorageGroup the catalog was written through.
    pub storage_group: String,
    /// The BackupJob whose agent pod wrote it.
    pub written_by: String,
    /// When the operator rendered it (RFC 3339, UTC).
    pub time: String,
    /// The namespace's StorageGroups.
    #[serde(default)]
    pub storage_groups: Vec<CatalogObject>,
    /// The namespace's Schedules.
    #[serde(default)]
    pub schedules: Vec<CatalogObject>,
    /// The namespace's BackupJobs, the newest [`JOBS_PER_SERIES`] of each schedule or source,
    /// oldest first.
    #[serde(default)]
    pub backup_jobs: Vec<CatalogBackup>,
}

/// A StorageGroup or Schedule: its name, labels and spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogObject {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `spec`, as the API server returned it.
    pub spec: serde_json::Value,
}

/// A BackupJob and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogBackup {
    /// `metadata.name`.
    pub name: String,
    /// The Schedule that made it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// `spec`, as the API server returned it (its source, group and tags).
    pub spec: serde_json::Value,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`).
    pub phase: String,
    /// The snapshot written, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it reached its phase (RFC 3339), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// `status.message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Catalog {
    /// Records the snapshot that BackupJob `job` wrote: it succeeded (the agent stores the
    /// catalog after the backup, when the job's status does not yet say so).
    pub fn record_success(&mut self, job: &str, snapshot_id: &str, time: &str) {
        if let Some(entry) = self.backup_jobs.iter_mut().find(|b| b.name == job) {
            entry.phase = "Succeeded".into();
            entry.snapshot_id = Some(snapshot_id.into());
            entry.completion_time = Some(time.into());
        }
    }
}

/// What `catalog show --json` prints: the newest catalog of each namespace (or of the one asked
/// for), with the snapshot that holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogList {
    /// One per namespace, by namespace.
    pub catalogs: Vec<StoredCatalog>,
}

impl Report for CatalogList {
    const COMMAND: &'static str = "catalog show";
}

/// A catalog and the snapshot that holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCatalog {
    /// The catalog snapshot's id (hex).
    pub snapshot_id: String,
    /// When it was stored (RFC 3339, UTC).
    pub time: String,
    /// The catalog.
    pub catalog: Catalog,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{decode, encode};

    fn sample() -> Catalog {
        Catalog {
            version: VERSION,
            namespace: "shop".into(),
            storage_group: "s3".into(),
            written_by: "db-nightly-29000000".into(),
            time: "2026-11-30T10:00:00Z".into(),
            storage_groups: vec![CatalogObject {
                name: "s3".into(),
                labels: [("team".to_string(), "a".to_string())].into(),
                spec: serde_json::json!({"targets": [{"name": "primary",
                    "s3": {"bucket": "b", "credentialsSecretRef": {"name": "s3-credentials"}}}],
                    "encryption": {"keySecretRef": {"name": "pw", "key": "password"}}}),
            }],
            schedules: vec![CatalogObject {
                name: "db-nightly".into(),
                labels: BTreeMap::new(),
                spec: serde_json::json!({"schedule": "0 2 * * *"}),
            }],
            backup_jobs: vec![CatalogBackup {
                name: "db-nightly-29000000".into(),
                schedule: Some("db-nightly".into()),
                spec: serde_json::json!({"storageGroupRef": {"name": "s3"}}),
                phase: "Running".into(),
                snapshot_id: None,
                created: Some("2026-11-30T02:00:00Z".into()),
                completion_time: None,
                message: None,
            }],
        }
    }

    #[test]
    fn a_catalog_reads_back_as_written() {
        let catalog = sample();
        let json = serde_json::to_string(&catalog).unwrap();
        assert!(
            json.contains("\"storageGroups\"") && json.contains("\"backupJobs\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Catalog>(&json).unwrap(), catalog);
        let list = CatalogList {
            catalogs: vec![StoredCatalog {
                snapshot_id: "ab".repeat(32),
                time: "2026-11-30T10:00:01Z".into(),
                catalog,
            }],
        };
        assert_eq!(decode::<CatalogList>(&encode(&list)).unwrap(), list);
    }

    #[test]
    fn the_backup_that_wrote_it_is_recorded_as_succeeded() {
        let mut catalog = sample();
        catalog.record_success("db-nightly-29000000", "0123abcd", "2026-11-30T02:01:00Z");
        let job = &catalog.backup_jobs[0];
        assert_eq!(job.phase, "Succeeded");
        assert_eq!(job.snapshot_id.as_deref(), Some("0123abcd"));
        catalog.record_success("another", "ffff", "t");
        assert_eq!(catalog.backup_jobs.len(), 1);
    }

    #[test]
    fn catalog_snapshots_carry_no_tag_of_user_backups() {
        for tag in [TAG.to_string(), namespace_tag("shop")] {
            for user in ["hort.dev/namespace=", "hort.dev/backup-job=", "hort.dev/schedule="] {
                assert!(!tag.starts_with(user), "{tag}");
            }
        }
        assert_eq!(host("shop"), "hort-catalog/shop");
    }
}
