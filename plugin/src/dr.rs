//! `kubectl hort dr`, the pure part: from the catalogs a repository holds
//! (`hort_protocol::catalog`), the StorageGroups and Schedules to recreate and the
//! RestoreRequests of the latest backup of every database and volume, in the catalogs'
//! namespaces or those `--namespace-map` names. The API calls are in [`crate::dr_run`].

use std::collections::BTreeMap;

use hort_crds::backup_job::BackupJobSpec;
use hort_crds::common::GroupRef;
use hort_crds::restore_request::{
    DatabaseMapping, DatabaseRestoreTarget, OverwritePolicy, RestoreRequestSpec, RestoreSource, RestoreTarget,
    VolumeRestoreTarget,
};
use hort_crds::{RestoreRequest, Schedule, ScheduleSpec, StorageGroup, StorageGroupSpec};
use hort_protocol::StoredCatalog;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::error::{PluginError, Result};

/// What `dr` is asked to rebuild.
#[derive(Debug, Clone, Default)]
pub struct DrOptions {
    /// Source namespace → namespace to rebuild in (`--namespace-map A=B`).
    pub namespace_map: BTreeMap<String, String>,
    /// Only these backups (`--only`): a Schedule's name, a BackupJob's name, or either as
    /// `NAMESPACE/NAME`.
    pub only: Vec<String>,
    /// Database restores drop what they replace (`--clean`).
    pub clean: bool,
    /// Minutes each restore waits for archived packs (`--archive-wait`).
    pub archive_wait_minutes: Option<u32>,
}

/// A backup series of a catalog: a Schedule's backups, or the jobs of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// The catalog's namespace.
    pub namespace: String,
    /// The Schedule's name, or the newest job's name for jobs of no schedule.
    pub name: String,
    /// The newest succeeded BackupJob.
    pub job: String,
    /// Its snapshot.
    pub snapshot_id: String,
    /// When it completed.
    pub time: String,
    /// `postgres`, `mariadb` or `volume`.
    pub kind: String,
    /// What it reads, e.g. `claim data` or `postgres db.shop.svc:5432`.
    pub source: String,
    /// Why it is not restored, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// What `dr` recreates and restores.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrPlan {
    /// StorageGroups to apply.
    pub storage_groups: Vec<StorageGroup>,
    /// Schedules to apply.
    pub schedules: Vec<Schedule>,
    /// RestoreRequests to create, one per series restored.
    pub restores: Vec<RestoreRequest>,
    /// Every series found, restored or not.
    pub series: Vec<Series>,
}

/// `A=B` flags as a map.
pub fn namespace_map(flags: &[String]) -> Result<BTreeMap<String, String>> {
    flags
        .iter()
        .map(|flag| match flag.split_once('=') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((from.to_owned(), to.to_owned())),
            _ => Err(PluginError::Usage(format!(
                "--namespace-map {flag:?}: write FROM=TO, e.g. --namespace-map shop=shop-restored"
            ))),
        })
        .collect()
}

fn invalid(catalog: &StoredCatalog, what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::Agent(format!(
        "the catalog of namespace {} (snapshot {}) has a {what} this plugin cannot read ({e}): \
         use the kubectl-hort of the release that wrote it",
        catalog.catalog.namespace,
        &catalog.snapshot_id[..8.min(catalog.snapshot_id.len())]
    ))
}

fn meta(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: (!labels.is_empty()).then(|| labels.clone()),
        ..ObjectMeta::default()
    }
}

/// A RestoreRequest name for `series` and its snapshot: `dr-SERIES-ID8`, a DNS name of at most
/// 245 characters (the API's limit for RestoreRequests).
pub fn restore_name(series: &str, snapshot_id: &str) -> String {
    let id: String = snapshot_id.chars().take(8).collect();
    let clean: String = series
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    let room = 245 - "dr-".len() - 1 - id.len();
    let series: String = clean.chars().take(room).collect();
    format!("dr-{}-{id}", series.trim_matches('-'))
}

/// Why `dr` restores a job's series with no RestoreRequest (it lists the series as skipped).
#[derive(Debug, thiserror::Error)]
enum NotRestorable {
    /// The job names no source.
    #[error("the job has no source")]
    NoSource,
    /// A volume backup of the claims a selector matched (the selector).
    #[error(
        "a claimSelector backup holds one directory per claim: restore each with \
         `kubectl hort restore GROUP --snapshot ID --to-claim CLAIM --path CLAIM` (selector {0:?})"
    )]
    ClaimSelector(BTreeMap<String, String>),
}

/// The restore target for a job's source: the same server or claim, by the same names.
fn target(spec: &BackupJobSpec, clean: bool) -> std::result::Result<(String, String, RestoreTarget), NotRestorable> {
    let source = &spec.source;
    let database = |host: &str, port: u16, databases: &[String], secret, tls| DatabaseRestoreTarget {
        host: host.into(),
        port: Some(port),
        credentials_secret_ref: secret,
        tls,
        databases: databases
            .iter()
            .map(|d| DatabaseMapping {
                from: d.clone(),
                to: None,
            })
            .collect(),
        tables: vec![],
        clean,
    };
    let empty = RestoreTarget {
        postgres: None,
        mariadb: None,
        volume: None,
    };
    if let Some(p) = &source.postgres {
        let target = database(
            &p.host,
            p.port,
            &p.databases,
            p.credentials_secret_ref.clone(),
            p.tls.clone(),
        );
        return Ok((
            "postgres".into(),
            format!("postgres {}:{}", p.host, p.port),
            RestoreTarget {
                postgres: Some(target),
                ..empty
            },
        ));
    }
    if let Some(m) = &source.mariadb {
        let target = database(
            &m.host,
            m.port,
            &m.databases,
            m.credentials_secret_ref.clone(),
            m.tls.clone(),
        );
        return Ok((
            "mariadb".into(),
            format!("mariadb {}:{}", m.host, m.port),
            RestoreTarget {
                mariadb: Some(target),
                ..empty
            },
        ));
    }
    let Some(volume) = &source.volume else {
        return Err(NotRestorable::NoSource);
    };
    let Some(claim) = &volume.claim_name else {
        return Err(NotRestorable::ClaimSelector(
            volume.claim_selector.clone().unwrap_or_default(),
        ));
    };
    Ok((
        "volume".into(),
        format!("claim {claim}"),
        RestoreTarget {
            volume: Some(VolumeRestoreTarget {
                claim_name: claim.clone(),
                storage_class_name: None,
                size: None,
                paths: vec![],
                sub_path: String::new(),
                overwrite: OverwritePolicy::default(),
            }),
            ..empty
        },
    ))
}

/// Whether `--only` picks the series (or every series when it is empty).
fn picked(only: &[String], namespace: &str, names: &[&str]) -> bool {
    only.is_empty()
        || only
            .iter()
            .any(|o| names.iter().any(|n| o == n || *o == format!("{namespace}/{n}")))
}

/// The plan for `catalogs` (pure).
pub fn plan(catalogs: &[StoredCatalog], options: &DrOptions) -> Result<DrPlan> {
    let mut plan = DrPlan::default();
    let mut matched = vec![false; options.only.len()];
    for stored in catalogs {
        let c = &stored.catalog;
        let ns = options.namespace_map.get(&c.namespace).unwrap_or(&c.namespace);
        for g in &c.storage_groups {
            let spec: StorageGroupSpec =
                serde_json::from_value(g.spec.clone()).map_err(|e| invalid(stored, "StorageGroup", e))?;
            plan.storage_groups.push(StorageGroup {
                metadata: meta(&g.name, ns, &g.labels),
                spec,
                status: None,
            });
        }
        for s in &c.schedules {
            let spec: ScheduleSpec =
                serde_json::from_value(s.spec.clone()).map_err(|e| invalid(stored, "Schedule", e))?;
            plan.schedules.push(Schedule {
                metadata: meta(&s.name, ns, &s.labels),
                spec,
                status: None,
            });
        }
        // The newest succeeded job of each series written through this repository's group
        // (the catalog lists them oldest first).
        let mut newest: BTreeMap<String, (&hort_protocol::CatalogBackup, BackupJobSpec)> = BTreeMap::new();
        for job in &c.backup_jobs {
            let spec: BackupJobSpec =
                serde_json::from_value(job.spec.clone()).map_err(|e| invalid(stored, "BackupJob", e))?;
            let own_group = spec.storage_group_ref == GroupRef::storage_group(&c.storage_group);
            if job.phase != "Succeeded" || job.snapshot_id.is_none() || !own_group {
                continue;
            }
            let key = match &job.schedule {
                Some(s) => format!("schedule {s}"),
                None => format!("source {}", serde_json::to_string(&spec.source).unwrap_or_default()),
            };
            newest.insert(key, (job, spec));
        }
        for (job, spec) in newest.into_values() {
            let name = job.schedule.clone().unwrap_or_else(|| job.name.clone());
            let snapshot_id = job.snapshot_id.clone().unwrap_or_default();
            let names = [name.as_str(), job.name.as_str()];
            for (i, o) in options.only.iter().enumerate() {
                matched[i] |= picked(std::slice::from_ref(o), &c.namespace, &names);
            }
            let (kind, source, skipped, target) = match target(&spec, options.clean) {
                Ok((kind, source, target)) => (kind, source, None, Some(target)),
                Err(why) => (
                    "volume".into(),
                    "claims by selector".into(),
                    Some(why.to_string()),
                    None,
                ),
            };
            let skipped = skipped
                .or_else(|| (!picked(&options.only, &c.namespace, &names)).then(|| "not picked by --only".to_string()));
            if let (None, Some(target)) = (&skipped, target) {
                plan.restores.push(RestoreRequest {
                    metadata: meta(&restore_name(&name, &snapshot_id), ns, &BTreeMap::new()),
                    spec: RestoreRequestSpec {
                        storage_group_ref: GroupRef::storage_group(&c.storage_group),
                        source: RestoreSource {
                            backup_job_ref: None,
                            snapshot_id: Some(snapshot_id.clone()),
                            tags: vec![],
                        },
                        target,
                        active_deadline_seconds: None,
                        archive_wait_minutes: options.archive_wait_minutes,
                        agent: None,
                    },
                    status: None,
                });
            }
            plan.series.push(Series {
                namespace: c.namespace.clone(),
                name,
                job: job.name.clone(),
                snapshot_id,
                time: job
                    .completion_time
                    .clone()
                    .or_else(|| job.created.clone())
                    .unwrap_or_default(),
                kind,
                source,
                skipped,
            });
        }
    }
    if let Some((unknown, _)) = options.only.iter().zip(&matched).find(|(_, m)| !**m) {
        let known: Vec<String> = plan
            .series
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        return Err(PluginError::Usage(format!(
            "--only {unknown:?} names no backup of the catalogs; they hold: {} (see `kubectl hort dr GROUP --list`)",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use hort_protocol::catalog::{self, Catalog, CatalogBackup, CatalogObject};

    use super::*;

    fn backup(
        name: &str,
        schedule: Option<&str>,
        group: &str,
        source: serde_json::Value,
        snapshot: Option<&str>,
    ) -> CatalogBackup {
        CatalogBackup {
            name: name.into(),
            schedule: schedule.map(Into::into),
            spec: serde_json::json!({"storageGroupRef": {"name": group}, "source": source}),
            phase: if snapshot.is_some() { "Succeeded" } else { "Failed" }.into(),
            snapshot_id: snapshot.map(Into::into),
            created: Some(format!("2026-11-30T0{}:00:00Z", name.len() % 10)),
            completion_time: None,
            message: None,
        }
    }

    fn stored() -> StoredCatalog {
        let pg = serde_json::json!({"postgres": {"host": "db.shop.svc", "databases": ["shop"],
            "credentialsSecretRef": {"name": "db-credentials"}}});
        let files = serde_json::json!({"volume": {"claimName": "uploads"}});
        let selector = serde_json::json!({"volume": {"claimSelector": {"app": "shop"}}});
        StoredCatalog {
            snapshot_id: "ff".repeat(32),
            time: "2026-11-30T03:00:00Z".into(),
            catalog: Catalog {
                version: catalog::VERSION,
                namespace: "shop".into(),
                storage_group: "s3".into(),
                written_by: "db-nightly-2".into(),
                time: "2026-11-30T03:00:00Z".into(),
                storage_groups: vec![CatalogObject {
                    name: "s3".into(),
                    labels: [("team".to_string(), "shop".to_string())].into(),
                    spec: serde_json::json!({
                        "targets": [{"name": "primary", "s3": {"endpoint": "http://s3.local:9000", "bucket": "b",
                            "credentialsSecretRef": {"name": "s3-credentials"}}}],
                        "encryption": {"keySecretRef": {"name": "hort-password", "key": "password"}}}),
                }],
                schedules: vec![CatalogObject {
                    name: "db-nightly".into(),
                    labels: Default::default(),
                    spec: serde_json::json!({"schedule": "0 2 * * *", "jobTemplate": {"spec":
                        {"storageGroupRef": {"name": "s3"}, "source": pg}}}),
                }],
                backup_jobs: vec![
                    backup(
                        "db-nightly-1",
                        Some("db-nightly"),
                        "s3",
                        pg.clone(),
                        Some("1111111111111111"),
                    ),
                    backup(
                        "db-nightly-2",
                        Some("db-nightly"),
                        "s3",
                        pg.clone(),
                        Some("2222222222222222"),
                    ),
                    backup("db-nightly-3", Some("db-nightly"), "s3", pg.clone(), None),
                    backup("uploads-manual", None, "s3", files, Some("3333333333333333")),
                    backup("elsewhere", None, "other-group", pg, Some("4444444444444444")),
                    backup("by-label", None, "s3", selector, Some("5555555555555555")),
                ],
            },
        }
    }

    #[test]
    fn the_latest_succeeded_backup_of_each_series_is_restored_where_it_came_from() {
        let plan = plan(&[stored()], &DrOptions::default()).unwrap();
        assert_eq!(plan.storage_groups.len(), 1);
        let group = &plan.storage_groups[0];
        assert_eq!(group.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(group.metadata.labels.as_ref().unwrap()["team"], "shop");
        assert_eq!(group.spec.encryption.key_secret_ref.name, "hort-password");
        assert_eq!(plan.schedules[0].spec.schedule, "0 2 * * *");

        let restores: Vec<(&str, &str)> = plan
            .restores
            .iter()
            .map(|r| {
                (
                    r.metadata.name.as_deref().unwrap(),
                    r.spec.source.snapshot_id.as_deref().unwrap(),
                )
            })
            .collect();
        // The newest succeeded job of the schedule (the failed one after it does not count);
        // the job written through another group is not in this repository.
        assert_eq!(
            restores,
            [
                ("dr-db-nightly-22222222", "2222222222222222"),
                ("dr-uploads-manual-33333333", "3333333333333333")
            ]
        );
        let db = &plan.restores[0];
        assert_eq!(db.spec.storage_group_ref.name, "s3");
        let target = db.spec.target.postgres.as_ref().unwrap();
        assert_eq!((target.host.as_str(), target.port), ("db.shop.svc", Some(5432)));
        assert_eq!(target.credentials_secret_ref.name, "db-credentials");
        assert_eq!(target.databases[0].from, "shop");
        assert!(!target.clean);
        let volume = plan.restores[1].spec.target.volume.as_ref().unwrap();
        assert_eq!(volume.claim_name, "uploads");
        let skipped: Vec<&Series> = plan.series.iter().filter(|s| s.skipped.is_some()).collect();
        assert_eq!(skipped.len(), 1);
        let why = skipped[0].skipped.as_deref().unwrap();
        assert!(
            why.contains("--to-claim CLAIM --path CLAIM") && why.ends_with(r#"(selector {"app": "shop"})"#),
            "{why}"
        );
    }

    #[test]
    fn namespaces_are_mapped_and_only_picks_series() {
        let options = DrOptions {
            namespace_map: namespace_map(&["shop=shop-dr".to_string()]).unwrap(),
            only: vec!["shop/db-nightly".into()],
            clean: true,
            archive_wait_minutes: Some(600),
        };
        let plan = plan(&[stored()], &options).unwrap();
        assert_eq!(plan.restores.len(), 1);
        let r = &plan.restores[0];
        assert_eq!(r.metadata.namespace.as_deref(), Some("shop-dr"));
        assert!(r.spec.target.postgres.as_ref().unwrap().clean);
        assert_eq!(r.spec.archive_wait_minutes, Some(600));
        assert_eq!(plan.schedules[0].metadata.namespace.as_deref(), Some("shop-dr"));
        let uploads = plan.series.iter().find(|s| s.name == "uploads-manual").unwrap();
        assert_eq!(uploads.skipped.as_deref(), Some("not picked by --only"));

        let unknown = DrOptions {
            only: vec!["nope".into()],
            ..DrOptions::default()
        };
        let err = super::plan(&[stored()], &unknown).unwrap_err().to_string();
        assert!(err.contains("\"nope\"") && err.contains("shop/db-nightly"), "{err}");
        assert!(
            namespace_map(&["shop".into()])
                .unwrap_err()
                .to_string()
                .contains("FROM=TO")
        );
    }

    #[test]
    fn a_catalog_of_another_release_is_refused_naming_it() {
        let mut odd = stored();
        odd.catalog.schedules[0].spec = serde_json::json!({"cron": 5});
        let err = plan(&[odd], &DrOptions::default()).unwrap_err().to_string();
        assert!(
            err.contains("namespace shop") && err.contains("Schedule") && err.contains("ffffffff"),
            "{err}"
        );
    }

    #[test]
    fn restore_names_are_dns_names_within_the_limit() {
        assert_eq!(restore_name("Nightly_DB", "abcdef0123"), "dr-nightly-db-abcdef01");
        let long = restore_name(&"a".repeat(300), "abcdef0123");
        assert!(long.len() <= 245 && long.ends_with("-abcdef01"), "{long}");
    }
}
