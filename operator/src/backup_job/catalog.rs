//! The namespace's catalog (`hort_protocol::Catalog`) that a backup's agent pod stores in the
//! repository after the backup: the StorageGroups and Schedules of the namespace and its
//! newest BackupJobs. It reaches the pod as one variable ([`env::CATALOG`]), never as an
//! argument; it holds the objects' specs, which name Secrets but hold no Secret value.

use std::collections::BTreeMap;

use hort_crds::backup_job::BackupJob;
use hort_crds::schedule::Schedule;
use hort_crds::storage_group::{StorageGroup, StorageGroupSpec};
use hort_protocol::catalog::{self, Catalog, CatalogBackup, CatalogObject};
use hort_protocol::env;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::EnvVar;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::Result;
use crate::schedule::SCHEDULE_LABEL;

/// A group's spec as a new cluster should get it: a key rotation in progress is finished by
/// the time anyone restores from the catalog, and its previous Secret is gone.
fn without_rotation(spec: &StorageGroupSpec) -> StorageGroupSpec {
    let mut spec = spec.clone();
    spec.encryption.previous_key_secret_ref = None;
    spec
}

/// A spec as JSON (a spec always serializes).
fn json(spec: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(spec).unwrap_or_default()
}

/// The objects a catalog is made of.
pub struct Objects {
    /// The namespace's StorageGroups.
    pub groups: Vec<StorageGroup>,
    /// Its Schedules.
    pub schedules: Vec<Schedule>,
    /// Its BackupJobs.
    pub jobs: Vec<BackupJob>,
}

/// The catalog's JSON for `job`'s pod, of at most [`catalog::MAX_BYTES`]: with the newest
/// [`catalog::JOBS_PER_SERIES`] BackupJobs of each series, or fewer if that is too long;
/// `None` when even one per series is.
pub fn fitted(namespace: &str, group: &str, job: &str, now: Timestamp, objects: &Objects) -> Option<String> {
    (1..=catalog::JOBS_PER_SERIES).rev().find_map(|per_series| {
        let c = build(namespace, group, job, now, objects, per_series);
        serde_json::to_string(&c)
            .ok()
            .filter(|text| text.len() <= catalog::MAX_BYTES)
    })
}

/// The catalog of `namespace` written by job `job` through group `group` (pure): every
/// StorageGroup and Schedule, and of the BackupJobs the newest `per_series` of each schedule
/// (jobs of no schedule: of each source), oldest first.
pub fn build(namespace: &str, group: &str, job: &str, now: Timestamp, objects: &Objects, per_series: usize) -> Catalog {
    let Objects {
        groups,
        schedules,
        jobs,
    } = objects;
    let object = |name: String, labels: &BTreeMap<String, String>, spec: serde_json::Value| CatalogObject {
        name,
        labels: labels.clone(),
        spec,
    };
    let mut series: BTreeMap<String, Vec<&BackupJob>> = BTreeMap::new();
    for j in jobs {
        let key = match j.labels().get(SCHEDULE_LABEL) {
            Some(schedule) => format!("schedule {schedule}"),
            None => format!("source {}", json(&j.spec.source)),
        };
        series.entry(key).or_default().push(j);
    }
    let created = |j: &BackupJob| j.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut kept: Vec<&BackupJob> = series
        .into_values()
        .flat_map(|mut list| {
            list.sort_by_key(|j| (created(j), j.name_any()));
            let skip = list.len().saturating_sub(per_series);
            list.into_iter().skip(skip)
        })
        .collect();
    kept.sort_by_key(|j| (created(j), j.name_any()));
    Catalog {
        version: catalog::VERSION,
        namespace: namespace.into(),
        storage_group: group.into(),
        written_by: job.into(),
        time: now.to_string(),
        storage_groups: groups
            .iter()
            .map(|g| object(g.name_any(), g.labels(), json(&without_rotation(&g.spec))))
            .collect(),
        schedules: schedules
            .iter()
            .map(|s| object(s.name_any(), s.labels(), json(&s.spec)))
            .collect(),
        backup_jobs: kept
            .into_iter()
            .map(|j| {
                let status = j.status.clone().unwrap_or_default();
                CatalogBackup {
                    name: j.name_any(),
                    schedule: j.labels().get(SCHEDULE_LABEL).cloned(),
                    spec: json(&j.spec),
                    phase: json(&status.phase).as_str().unwrap_or_default().to_owned(),
                    snapshot_id: status.snapshot_id,
                    created: created(j).map(|t| t.to_string()),
                    completion_time: status.completion_time.map(|t| t.0.to_string()),
                    message: status.message,
                }
            })
            .collect(),
    }
}

/// The variable that gives `job`'s agent pod the catalog of its namespace, read now; `None`
/// (and a warning) when the catalog does not fit in [`catalog::MAX_BYTES`].
pub async fn variable(ctx: &Context, namespace: &str, job: &BackupJob, now: Timestamp) -> Result<Option<EnvVar>> {
    let all = ListParams::default();
    let groups = Api::<StorageGroup>::namespaced(ctx.client.clone(), namespace)
        .list(&all)
        .await?
        .items;
    let schedules = Api::<Schedule>::namespaced(ctx.client.clone(), namespace)
        .list(&all)
        .await?
        .items;
    let jobs = Api::<BackupJob>::namespaced(ctx.client.clone(), namespace)
        .list(&all)
        .await?
        .items;
    let objects = Objects {
        groups,
        schedules,
        jobs,
    };
    let name = job.name_any();
    let Some(text) = fitted(namespace, &job.spec.storage_group_ref.name, &name, now, &objects) else {
        tracing::warn!(
            namespace,
            job = %name,
            limit = catalog::MAX_BYTES,
            "the namespace's catalog does not fit in an agent pod's environment even with one BackupJob per series: \
             this backup stores no catalog"
        );
        return Ok(None);
    };
    Ok(Some(EnvVar {
        name: env::CATALOG.into(),
        value: Some(text),
        value_from: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hort_crds::backup_job::BackupJobStatus;
    use hort_crds::common::Phase;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(name: &str, schedule: Option<&str>, second: i64, snapshot: Option<&str>) -> BackupJob {
        let mut j: BackupJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"storageGroupRef": {"name": "s3"},
                     "source": {"postgres": {"host": "db", "credentialsSecretRef": {"name": "db-credentials"}}}}
        }))
        .unwrap();
        j.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_800_000_000 + second).unwrap()));
        if let Some(s) = schedule {
            j.metadata.labels = Some([(SCHEDULE_LABEL.to_string(), s.to_string())].into());
        }
        j.status = Some(BackupJobStatus {
            phase: if snapshot.is_some() {
                Phase::Succeeded
            } else {
                Phase::Failed
            },
            snapshot_id: snapshot.map(Into::into),
            ..BackupJobStatus::default()
        });
        j
    }

    #[test]
    fn the_newest_jobs_of_each_series_are_kept_oldest_first() {
        let mut jobs: Vec<BackupJob> = (0..15)
            .map(|i| job(&format!("nightly-{i}"), Some("nightly"), i, Some("abcd1234")))
            .collect();
        jobs.push(job("manual", None, 3, None));
        let objects = Objects {
            groups: vec![],
            schedules: vec![],
            jobs,
        };
        let c = build(
            "shop",
            "s3",
            "nightly-14",
            Timestamp::UNIX_EPOCH,
            &objects,
            catalog::JOBS_PER_SERIES,
        );
        assert_eq!(c.backup_jobs.len(), catalog::JOBS_PER_SERIES + 1);
        let names: Vec<&str> = c.backup_jobs.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names[0], "manual");
        assert_eq!(names[1], "nightly-5");
        assert_eq!(names.last(), Some(&"nightly-14"));
        let last = c.backup_jobs.last().unwrap();
        assert_eq!(last.phase, "Succeeded");
        assert_eq!(last.schedule.as_deref(), Some("nightly"));
        assert_eq!(last.snapshot_id.as_deref(), Some("abcd1234"));
        assert_eq!(c.backup_jobs[0].phase, "Failed");
        assert_eq!(c.backup_jobs[0].spec["source"]["postgres"]["host"], "db");
        assert_eq!((c.written_by.as_str(), c.storage_group.as_str()), ("nightly-14", "s3"));
    }

    #[test]
    fn a_key_rotation_in_progress_is_not_restored_from_the_catalog() {
        let group: StorageGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup",
            "metadata": {"name": "s3", "namespace": "shop"},
            "spec": {"targets": [{"name": "a", "pvc": {"claimName": "a"}}],
                     "encryption": {"keySecretRef": {"name": "key-2"}, "previousKeySecretRef": {"name": "key-1"}}}
        }))
        .unwrap();
        let objects = Objects {
            groups: vec![group],
            schedules: vec![],
            jobs: vec![],
        };
        let c = build("shop", "s3", "j", Timestamp::UNIX_EPOCH, &objects, 1);
        let encryption = &c.storage_groups[0].spec["encryption"];
        assert_eq!(encryption["keySecretRef"]["name"], "key-2");
        assert!(encryption.get("previousKeySecretRef").is_none(), "{encryption}");
    }

    #[test]
    fn a_long_catalog_keeps_fewer_jobs_until_it_fits_the_environment() {
        let long = |name: &str, i: i64| {
            let mut j = job(name, Some(&format!("s{}", i % 20)), i, Some("abcd1234"));
            j.status.as_mut().unwrap().message = Some("x".repeat(2000));
            j
        };
        let objects = Objects {
            groups: vec![],
            schedules: vec![],
            jobs: (0..200).map(|i| long(&format!("j-{i}"), i)).collect(),
        };
        let full = serde_json::to_string(&build("shop", "s3", "j-0", Timestamp::UNIX_EPOCH, &objects, 10)).unwrap();
        assert!(
            full.len() > catalog::MAX_BYTES,
            "the test needs a catalog that is too long"
        );
        let text = fitted("shop", "s3", "j-0", Timestamp::UNIX_EPOCH, &objects).unwrap();
        assert!(text.len() <= catalog::MAX_BYTES);
        let c: Catalog = serde_json::from_str(&text).unwrap();
        assert!(
            c.backup_jobs.len() >= 20 && c.backup_jobs.len() < 200,
            "{}",
            c.backup_jobs.len()
        );
        let huge = Objects {
            jobs: (0..100)
                .map(|i| {
                    let mut j = long(&format!("h-{i}"), i);
                    j.metadata.labels = Some([(SCHEDULE_LABEL.to_string(), format!("h{i}"))].into());
                    j
                })
                .collect(),
            ..objects
        };
        assert_eq!(fitted("shop", "s3", "h-0", Timestamp::UNIX_EPOCH, &huge), None);
    }
}
