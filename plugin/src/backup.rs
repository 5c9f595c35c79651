//! `kubectl hort backup now`: a BackupJob from a Schedule's jobTemplate, or a copy of another
//! job's spec (pure builders), created and followed.

use std::collections::BTreeMap;
use std::time::Duration;

use hort_crds::{BackupJob, Schedule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::cli::{BackupNow, FollowFlags};
use crate::error::{PluginError, Result, is_not_found};
use crate::follow::{Followed, follow};
use crate::output::{Format, emit, structured};
use crate::restore::DryRun;
use crate::status::SCHEDULE_LABEL;

/// Label on BackupJobs the plugin creates: `true`.
pub const MANUAL_LABEL: &str = "hort.dev/manual";
/// Annotation naming what created a manual job.
pub const REQUESTED_BY_ANNOTATION: &str = "hort.dev/requested-by";
/// Longest `generateName` prefix that leaves room for the API server's five characters in a
/// BackupJob's name (at most 63).
const MAX_PREFIX: usize = 58;

/// `generateName` for a job made from `base`: `<base>-manual-`, `base` cut to fit.
fn generate_name(base: &str) -> String {
    let room = MAX_PREFIX - "-manual-".len();
    let base: String = base.chars().take(room).collect();
    format!("{}-manual-", base.trim_end_matches('-'))
}

fn manual_metadata(
    base: &str,
    mut labels: BTreeMap<String, String>,
    mut annotations: BTreeMap<String, String>,
) -> ObjectMeta {
    labels.insert(MANUAL_LABEL.into(), "true".into());
    annotations.insert(REQUESTED_BY_ANNOTATION.into(), "kubectl-hort".into());
    ObjectMeta {
        generate_name: Some(generate_name(base)),
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// The BackupJob a Schedule would create now, marked manual: the template's spec, labels
/// and annotations, the schedule's label (so its snapshot joins the schedule's retention
/// series and metrics), and no owner reference (the schedule's history limit and concurrency
/// policy leave it alone).
pub fn job_from_schedule(schedule: &Schedule) -> BackupJob {
    let template = &schedule.spec.job_template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels;
    labels.insert(SCHEDULE_LABEL.into(), schedule.name_any());
    BackupJob {
        metadata: manual_metadata(&schedule.name_any(), labels, meta.annotations),
        spec: template.spec.clone(),
        status: None,
    }
}

/// A new BackupJob with the spec and labels of `job`, marked manual.
pub fn job_from_job(job: &BackupJob) -> BackupJob {
    BackupJob {
        metadata: manual_metadata(&job.name_any(), job.labels().clone(), BTreeMap::new()),
        spec: job.spec.clone(),
        status: None,
    }
}

/// Runs `backup now`.
pub async fn now(client: &Client, namespace: &str, args: &BackupNow, format: Format) -> Result<()> {
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), namespace);
    let job = match (&args.schedule, &args.from_job) {
        (_, Some(from)) => {
            let source = jobs.get(from).await.map_err(|e| match is_not_found(&e) {
                true => PluginError::NotFound {
                    kind: "BackupJob",
                    namespace: namespace.into(),
                    name: from.clone(),
                    hint: format!("list them with `kubectl get backupjobs -n {namespace}`"),
                },
                false => PluginError::api(format!("reading BackupJob {namespace}/{from}"), e),
            })?;
            job_from_job(&source)
        }
        (Some(name), None) => {
            let schedules: Api<Schedule> = Api::namespaced(client.clone(), namespace);
            let schedule = schedules.get(name).await.map_err(|e| match is_not_found(&e) {
                true => PluginError::NotFound {
                    kind: "Schedule",
                    namespace: namespace.into(),
                    name: name.clone(),
                    hint: format!("list them with `kubectl hort status -n {namespace}`"),
                },
                false => PluginError::api(format!("reading Schedule {namespace}/{name}"), e),
            })?;
            job_from_schedule(&schedule)
        }
        (None, None) => return Err(PluginError::Usage("name a Schedule, or --from-job JOB".into())),
    };
    let created = jobs
        .create(&PostParams::default(), &job)
        .await
        .map_err(|e| PluginError::api(format!("creating a BackupJob in namespace {namespace}"), e))?;
    created_then_follow(&jobs, namespace, created, &args.follow, format).await
}

/// Prints `object` (`--dry-run=client`), has the API server check it (`server`), or creates
/// it and follows it; `what` names it in errors, e.g. `a RestoreRequest of group s3`.
pub async fn submit<T: Followed + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>>(
    client: &Client,
    namespace: &str,
    object: &T,
    dry_run: DryRun,
    follow: &FollowFlags,
    format: Format,
    what: &str,
) -> Result<()> {
    let as_text = |format: Format| if format == Format::Table { Format::Yaml } else { format };
    if dry_run == DryRun::Client {
        return emit(&structured(as_text(format), object)?.unwrap_or_default());
    }
    let api: Api<T> = Api::namespaced(client.clone(), namespace);
    let params = PostParams {
        dry_run: dry_run == DryRun::Server,
        ..PostParams::default()
    };
    let created = api
        .create(&params, object)
        .await
        .map_err(|e| PluginError::api(format!("creating {what} in namespace {namespace}"), e))?;
    if dry_run == DryRun::Server {
        return emit(&structured(as_text(format), &created)?.unwrap_or_default());
    }
    created_then_follow(&api, namespace, created, follow, format).await
}

/// Says what was created, then (unless `--no-wait`) follows it and prints the outcome.
pub async fn created_then_follow<T: Followed>(
    api: &Api<T>,
    namespace: &str,
    created: T,
    flags: &FollowFlags,
    format: Format,
) -> Result<()> {
    let name = created.name_any();
    eprintln!("{} {namespace}/{name} created", T::KIND);
    let last = if flags.no_wait {
        created
    } else {
        let done = follow(
            api,
            namespace,
            &name,
            Duration::from_secs(flags.timeout),
            Duration::from_millis(500),
        )
        .await?;
        if format == Format::Table {
            emit(&format!(
                "{} {namespace}/{name} succeeded: {}\n",
                T::KIND,
                done.outcome()
            ))?;
        }
        done
    };
    match structured(format, &last)? {
        Some(text) => emit(&text),
        None if flags.no_wait => emit(&format!("{name}\n")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(name: &str) -> Schedule {
        serde_yaml::from_str(&format!(
            "apiVersion: hort.dev/v1alpha1\nkind: Schedule\nmetadata: {{name: {name}, namespace: demo, uid: u1}}\n\
             spec: {{schedule: '@daily', jobTemplate: {{metadata: {{labels: {{team: shop}}, annotations: {{note: x}}}},\n\
               spec: {{storageGroupRef: {{name: s3}}, source: {{volume: {{claimName: data}}}}, tags: [nightly]}}}}}}"
        ))
        .unwrap()
    }

    #[test]
    fn a_job_from_a_schedule_is_its_template_marked_manual_and_not_owned() {
        let job = job_from_schedule(&schedule("nightly"));
        assert_eq!(job.metadata.generate_name.as_deref(), Some("nightly-manual-"));
        assert_eq!(job.metadata.name, None);
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SCHEDULE_LABEL], "nightly");
        assert_eq!(labels[MANUAL_LABEL], "true");
        assert_eq!(labels["team"], "shop");
        assert_eq!(job.metadata.annotations.as_ref().unwrap()["note"], "x");
        assert_eq!(job.metadata.owner_references, None);
        assert_eq!(job.spec.tags, ["nightly"]);
        assert_eq!(job.spec.storage_group_ref.name, "s3");
        // A schedule name of 52 characters (the most) still leaves room for the suffix.
        let long = job_from_schedule(&schedule(&"a".repeat(52)));
        assert!(long.metadata.generate_name.unwrap().len() + 5 <= 63);
    }

    #[test]
    fn a_job_from_a_job_copies_spec_and_labels_only() {
        let mut source = job_from_schedule(&schedule("nightly"));
        source.metadata.name = Some("nightly-29000000".into());
        source.metadata.uid = Some("u2".into());
        source.status = Some(Default::default());
        let copy = job_from_job(&source);
        assert_eq!(copy.spec, source.spec);
        assert_eq!(copy.metadata.generate_name.as_deref(), Some("nightly-29000000-manual-"));
        assert_eq!(copy.metadata.uid, None);
        assert!(copy.status.is_none());
        assert_eq!(copy.metadata.labels.as_ref().unwrap()[SCHEDULE_LABEL], "nightly");
    }
}
