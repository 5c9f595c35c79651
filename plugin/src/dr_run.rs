//! `kubectl hort dr GROUP`: reads the catalogs of GROUP's repository through a short-lived
//! agent pod (as `snapshots` does), then lists them (`--list`, the default), prints the objects
//! (`--dry-run=client`), or with `--apply` applies the StorageGroups and Schedules (server-side
//! apply, field manager [`FIELD_MANAGER`]), creates the RestoreRequests and follows them, and
//! reports what it did. Only the user's kubeconfig and RBAC are used.

use std::time::Duration;

use hort_crds::{RestoreRequest, Schedule, StorageGroup};
use hort_protocol::{AgentCommand, CatalogList};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;

use crate::browse::report;
use crate::cli::{DrFlags, FollowFlags};
use crate::dr::{DrOptions, DrPlan, namespace_map, plan};
use crate::error::{PluginError, Result};
use crate::follow::{Followed, follow};
use crate::output::{Format, emit, structured, table};

/// The field manager of the objects `dr --apply` applies.
pub const FIELD_MANAGER: &str = "kubectl-hort-dr";

/// What `dr --apply` did to one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    /// `StorageGroup`, `Schedule` or `RestoreRequest`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `applied`, `created`, `exists`, `succeeded`, `failed`, `created (not followed)`.
    pub result: String,
    /// What happened, or the error and its fix.
    pub message: String,
}

impl Done {
    fn of<K: Resource<DynamicType = ()>>(object: &K, result: &str, message: String) -> Self {
        Done {
            kind: K::kind(&()).into_owned(),
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
            result: result.into(),
            message,
        }
    }
}

/// The series of the plan as a table (`--list`).
pub fn list_table(plan: &DrPlan) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for g in &plan.storage_groups {
        let targets: Vec<&str> = g.spec.targets.iter().map(|t| t.name.as_str()).collect();
        rows.push(vec![
            "StorageGroup".into(),
            g.namespace().unwrap_or_default(),
            g.name_any(),
            format!("targets {}", targets.join(",")),
            String::new(),
        ]);
    }
    for s in &plan.schedules {
        rows.push(vec![
            "Schedule".into(),
            s.namespace().unwrap_or_default(),
            s.name_any(),
            format!("{:?}", s.spec.schedule),
            String::new(),
        ]);
    }
    for s in &plan.series {
        let what = match &s.skipped {
            Some(why) => format!("not restored: {why}"),
            None => format!("restore {} of {}", &s.snapshot_id[..8.min(s.snapshot_id.len())], s.time),
        };
        rows.push(vec![
            "Backup".into(),
            s.namespace.clone(),
            s.name.clone(),
            s.source.clone(),
            what,
        ]);
    }
    table(&["KIND", "NAMESPACE", "NAME", "WHAT", "DR"], &rows)
}

/// The report of `--apply` as a table.
pub fn done_table(done: &[Done]) -> String {
    let rows: Vec<Vec<String>> = done
        .iter()
        .map(|d| {
            vec![
                d.kind.clone(),
                d.namespace.clone(),
                d.name.clone(),
                d.result.clone(),
                d.message.clone(),
            ]
        })
        .collect();
    table(&["KIND", "NAMESPACE", "NAME", "RESULT", "MESSAGE"], &rows)
}

/// Every object of the plan as one `v1` List (for `--dry-run=client`).
pub fn objects(plan: &DrPlan) -> serde_json::Value {
    let mut items = Vec::new();
    let typed = |value: serde_json::Value, kind: &str| {
        let mut value = value;
        value["apiVersion"] = "hort.dev/v1alpha1".into();
        value["kind"] = kind.into();
        if let Some(map) = value.as_object_mut() {
            map.remove("status");
        }
        value
    };
    for g in &plan.storage_groups {
        items.push(typed(serde_json::to_value(g).unwrap_or_default(), "StorageGroup"));
    }
    for s in &plan.schedules {
        items.push(typed(serde_json::to_value(s).unwrap_or_default(), "Schedule"));
    }
    for r in &plan.restores {
        items.push(typed(serde_json::to_value(r).unwrap_or_default(), "RestoreRequest"));
    }
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// Why an API call failed, with the fix where the user has one.
fn why(kind: &str, namespace: &str, name: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 409 => format!(
            "{kind} {namespace}/{name} exists with other values ({}): it is kept; delete it and run again to take the catalog's",
            s.message
        ),
        kube::Error::Api(s) if s.code == 404 => format!(
            "namespace {namespace} does not exist: create it (and the Secrets the objects name), or map it with --namespace-map"
        ),
        kube::Error::Api(s) if s.code == 403 => format!(
            "not allowed ({}): ask for the Hort editor role in namespace {namespace}",
            s.message
        ),
        e => e.to_string(),
    }
}

/// Applies `object` server-side as [`FIELD_MANAGER`].
async fn apply<K>(client: &Client, object: &K) -> Done
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Serialize
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let mut value = serde_json::to_value(object).unwrap_or_default();
    value["apiVersion"] = K::api_version(&()).as_ref().into();
    value["kind"] = K::kind(&()).as_ref().into();
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    match api
        .patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&value))
        .await
    {
        Ok(_) => Done::of(object, "applied", String::new()),
        Err(e) => Done::of(object, "failed", why(&K::kind(&()), &namespace, &name, &e)),
    }
}

/// Creates the RestoreRequest (an existing one of the same name, from an earlier run, is
/// followed instead) and follows it unless `--no-wait`.
async fn restore(client: &Client, request: &RestoreRequest, flags: &FollowFlags) -> Done {
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let api: Api<RestoreRequest> = Api::namespaced(client.clone(), &namespace);
    let created = match api.create(&PostParams::default(), request).await {
        Ok(_) => "created",
        Err(kube::Error::Api(s)) if s.code == 409 => "exists",
        Err(e) => return Done::of(request, "failed", why("RestoreRequest", &namespace, &name, &e)),
    };
    if flags.no_wait {
        return Done::of(request, created, "not followed (--no-wait)".into());
    }
    let timeout = Duration::from_secs(flags.timeout);
    match follow(&api, &namespace, &name, timeout, Duration::from_millis(500)).await {
        Ok(done) => Done::of(request, "succeeded", done.outcome()),
        Err(PluginError::Failed { message, .. }) => Done::of(request, "failed", message),
        Err(e) => Done::of(request, "unknown", e.to_string()),
    }
}

/// `--apply`: applies the plan's StorageGroups and Schedules, then creates its RestoreRequests
/// and follows them one after the other (unless `follow.no_wait`); what happened to each.
pub async fn execute(client: &Client, plan: &DrPlan, follow: &FollowFlags) -> Vec<Done> {
    let mut done = Vec::new();
    for g in &plan.storage_groups {
        done.push(apply::<StorageGroup>(client, g).await);
    }
    for s in &plan.schedules {
        done.push(apply::<Schedule>(client, s).await);
    }
    for r in &plan.restores {
        done.push(restore(client, r, follow).await);
    }
    done
}

/// Runs `dr`.
pub async fn run(client: &Client, namespace: &str, flags: &DrFlags, format: Format) -> Result<()> {
    let options = DrOptions {
        namespace_map: namespace_map(&flags.namespace_map)?,
        only: flags.only.clone(),
        clean: flags.clean,
        archive_wait_minutes: flags.archive_wait,
    };
    let command = AgentCommand::CatalogShow {
        namespace: flags.from_namespace.clone(),
    };
    let catalogs: CatalogList = report(client, namespace, &flags.group, &flags.agent, command).await?;
    if catalogs.catalogs.is_empty() {
        return Err(PluginError::Agent(format!(
            "the repository of StorageGroup {namespace}/{} holds no Hort catalog{}: operators that write one store it \
             after each successful backup; backups from before hold none, restore them by tags \
             (docs/disaster-recovery.md, \"With a fresh cluster, by hand\")",
            flags.group,
            flags
                .from_namespace
                .as_deref()
                .map(|n| format!(" of namespace {n}"))
                .unwrap_or_default()
        )));
    }
    let plan = plan(&catalogs.catalogs, &options)?;
    if flags.dry_run.is_some() {
        let format = if format == Format::Table { Format::Yaml } else { format };
        return emit(&structured(format, &objects(&plan))?.unwrap_or_default());
    }
    if !flags.apply {
        return emit(&structured(format, &plan)?.unwrap_or_else(|| list_table(&plan)));
    }
    let done = execute(client, &plan, &flags.follow).await;
    emit(&structured(format, &done)?.unwrap_or_else(|| done_table(&done)))?;
    match done
        .iter()
        .filter(|d| d.result == "failed" || d.result == "unknown")
        .count()
    {
        0 => Ok(()),
        n => Err(PluginError::Failed {
            kind: "dr",
            namespace: namespace.into(),
            name: flags.group.clone(),
            message: format!("{n} of {} steps did not succeed (see the table)", done.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dry_run_list_holds_typed_objects_without_status() {
        let group: StorageGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup",
            "metadata": {"name": "s3", "namespace": "shop"},
            "spec": {"targets": [{"name": "p", "pvc": {"claimName": "repo"}}],
                     "encryption": {"keySecretRef": {"name": "pw", "key": "password"}}},
            "status": {}
        }))
        .unwrap();
        let plan = DrPlan {
            storage_groups: vec![group],
            ..DrPlan::default()
        };
        let list = objects(&plan);
        assert_eq!(list["kind"], "List");
        let item = &list["items"][0];
        assert_eq!(
            (item["apiVersion"].as_str(), item["kind"].as_str()),
            (Some("hort.dev/v1alpha1"), Some("StorageGroup"))
        );
        assert!(item.get("status").is_none());
        assert!(list_table(&plan).contains("StorageGroup   shop        s3     targets p"));
        let done = [Done {
            kind: "RestoreRequest".into(),
            namespace: "shop".into(),
            name: "dr-db-1".into(),
            result: "succeeded".into(),
            message: "restored".into(),
        }];
        assert!(done_table(&done).starts_with("KIND"));
    }
}
