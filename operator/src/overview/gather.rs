//! Reading what the page shows: Hort's objects with the operator's client, narrowed to the
//! namespaces a SubjectAccessReview allows the user; a job's Events and its agent pod's log
//! with the user's own token.

use std::collections::BTreeSet;

use hort_crds::{BackupJob, Schedule, StorageGroup};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use kube::{Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::auth::{self, Permission, User};
use super::error::Error;
use super::model::{
    EventsView, GroupRow, JobDetail, JobFilter, JobRow, LogView, ScheduleRow, TimelineEntry, newest_first,
};

/// Lines of an agent pod's log a job's detail shows.
pub const LOG_TAIL_LINES: i64 = 40;
/// At most this many bytes of them.
const LOG_TAIL_BYTES: i64 = 16 * 1024;

/// Why an agent pod's log is not shown, from the API server's refusal.
fn log_hidden(error: &kube::Error, namespace: &str, pod: &str) -> String {
    match error {
        kube::Error::Api(e) if e.code == 403 => format!(
            "you may not read pod logs in namespace {namespace}: ask for a RoleBinding to the ClusterRole view there (it allows get on pods/log)"
        ),
        kube::Error::Api(e) if e.code == 404 => {
            format!("agent pod {pod} no longer exists (it is deleted when its job ends or is retried)")
        }
        kube::Error::Api(e) => format!("the API server did not return it: {}", e.message),
        other => format!("the API server did not return it ({other})"),
    }
}

/// The jobs list of one request.
pub struct JobsPage {
    /// Namespaces with BackupJobs the user may list.
    pub namespaces: Vec<String>,
    /// Schedules of the shown jobs (the filter's choices).
    pub schedules: Vec<String>,
    /// The jobs that pass the filter, grouped by namespace, newest first in each.
    pub rows: Vec<JobRow>,
}

/// What the page reads from, and where.
#[derive(Clone)]
pub struct Source {
    /// The operator's client.
    pub client: Client,
    /// The configuration user clients are made from (the operator's credentials replaced).
    pub base_config: Config,
    /// The one namespace the operator watches, or none for the whole cluster.
    pub namespace: Option<String>,
    /// How the snapshot browser starts its agent pods.
    pub browse: super::browse::BrowseSettings,
    /// The API server's remembered answers about users (shared by clones).
    pub reviews: std::sync::Arc<super::reviews::Reviews>,
}

impl Source {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// Every object of kind `K`, and the namespaces among them where the user may list
    /// `resource`.
    async fn visible<K>(&self, user: &User, resource: &'static str) -> Result<(Vec<K>, Vec<String>), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let all = self.api::<K>().list(&ListParams::default()).await?.items;
        let candidates: BTreeSet<String> = all.iter().filter_map(|o| o.namespace()).collect();
        let permission = list(resource);
        let allowed = auth::allowed_namespaces(
            &self.client,
            &self.reviews,
            user,
            permission,
            candidates.into_iter().collect(),
        )
        .await?;
        let visible = all
            .into_iter()
            .filter(|o| o.namespace().is_some_and(|ns| allowed.contains(&ns)))
            .collect();
        Ok((visible, allowed))
    }

    /// The jobs list for `filter`. A namespace in the filter that the user may not list is
    /// refused, whether or not it has jobs.
    pub async fn jobs(&self, user: &User, filter: &JobFilter) -> Result<JobsPage, Error> {
        let (jobs, namespaces) = self.visible::<BackupJob>(user, "backupjobs").await?;
        if let Some(ns) = &filter.namespace
            && !namespaces.contains(ns)
            && !self.reviews.allowed(&self.client, user, list("backupjobs"), ns).await?
        {
            return Err(forbidden("list", "backupjobs", ns));
        }
        let in_namespace = JobFilter {
            namespace: filter.namespace.clone(),
            ..JobFilter::default()
        };
        let mut all: Vec<JobRow> = jobs.iter().map(JobRow::of).filter(|r| in_namespace.admits(r)).collect();
        let schedules: BTreeSet<String> = all.iter().filter_map(|r| r.schedule.clone()).collect();
        all.retain(|r| filter.admits(r));
        all.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        for chunk in all.chunk_by_mut(|a, b| a.namespace == b.namespace) {
            newest_first(chunk);
        }
        Ok(JobsPage {
            namespaces,
            schedules: schedules.into_iter().collect(),
            rows: all,
        })
    }

    /// One job in detail, if the user may get it; its Events if the user may list them.
    pub async fn job(&self, user: &User, namespace: &str, name: &str) -> Result<JobDetail, Error> {
        let get = Permission {
            verb: "get",
            group: "hort.dev",
            resource: "backupjobs",
        };
        let outside_scope = self.namespace.as_deref().is_some_and(|watched| watched != namespace);
        if !self.reviews.allowed(&self.client, user, get, namespace).await? {
            return Err(forbidden("get", "backupjobs", namespace));
        }
        let not_found = || Error::NotFound {
            kind: "BackupJob",
            namespace: namespace.into(),
            name: name.into(),
        };
        if outside_scope {
            return Err(not_found());
        }
        let job = Api::<BackupJob>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?
            .ok_or_else(not_found)?;
        let events = self.events(user, namespace, name).await;
        let pod = job.status.as_ref().and_then(|s| s.agent_pod.as_deref());
        let log = match pod {
            Some(pod) => Some(self.log_tail(user, namespace, pod).await),
            None => None,
        };
        Ok(JobDetail::of(&job, events, log))
    }

    /// The last [`LOG_TAIL_LINES`] lines of agent pod `pod`'s log, read with the user's own
    /// token.
    async fn log_tail(&self, user: &User, namespace: &str, pod: &str) -> LogView {
        let client = match auth::user_client(&self.base_config, user) {
            Ok(c) => c,
            Err(e) => return LogView::Hidden(e.to_string()),
        };
        let params = LogParams {
            container: Some("agent".into()),
            tail_lines: Some(LOG_TAIL_LINES),
            limit_bytes: Some(LOG_TAIL_BYTES),
            ..LogParams::default()
        };
        match Api::<Pod>::namespaced(client, namespace).logs(pod, &params).await {
            Ok(text) => LogView::Shown(text),
            Err(e) => LogView::Hidden(log_hidden(&e, namespace, pod)),
        }
    }

    /// The Events about BackupJob `name`, read with the user's own token.
    async fn events(&self, user: &User, namespace: &str, name: &str) -> EventsView {
        let client = match auth::user_client(&self.base_config, user) {
            Ok(c) => c,
            Err(e) => return EventsView::Hidden(e.to_string()),
        };
        let selector = format!("involvedObject.kind=BackupJob,involvedObject.name={name}");
        match Api::<Event>::namespaced(client, namespace)
            .list(&ListParams::default().fields(&selector))
            .await
        {
            Ok(list) => {
                let mut entries: Vec<TimelineEntry> = list.items.iter().map(event_entry).collect();
                entries.sort_by_key(|e| e.time);
                EventsView::Shown(entries)
            }
            Err(kube::Error::Api(e)) if e.code == 403 => EventsView::Hidden(format!(
                "you may not list events in namespace {namespace}: ask for a RoleBinding to the ClusterRole view there"
            )),
            Err(e) => EventsView::Hidden(format!("the API server did not list them ({e})")),
        }
    }

    /// The Schedules the user may list.
    pub async fn schedules(&self, user: &User) -> Result<Vec<ScheduleRow>, Error> {
        let (schedules, _) = self.visible::<Schedule>(user, "schedules").await?;
        let mut rows: Vec<ScheduleRow> = schedules.iter().map(ScheduleRow::of).collect();
        rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(rows)
    }

    /// The StorageGroups the user may list.
    pub async fn groups(&self, user: &User) -> Result<Vec<GroupRow>, Error> {
        let (groups, _) = self.visible::<StorageGroup>(user, "storagegroups").await?;
        let mut rows: Vec<GroupRow> = groups.iter().map(GroupRow::of).collect();
        rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(rows)
    }
}

/// `list` on a Hort resource.
fn list(resource: &'static str) -> Permission {
    Permission {
        verb: "list",
        group: "hort.dev",
        resource,
    }
}

fn forbidden(verb: &'static str, resource: &'static str, namespace: &str) -> Error {
    Error::Forbidden {
        verb,
        resource,
        namespace: namespace.into(),
    }
}

/// The timeline entry of an Event (the time it last happened).
fn event_entry(e: &Event) -> TimelineEntry {
    let time = e
        .event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    TimelineEntry {
        time,
        source: "event",
        what: e.type_.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused by the test", "")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_log_not_shown_says_which_permission_is_missing_or_that_the_pod_is_gone() {
        assert!(log_hidden(&refused(403), "shop", "p").contains("ClusterRole view"));
        assert!(log_hidden(&refused(404), "shop", "nightly-1").starts_with("agent pod nightly-1 no longer exists"));
        assert!(log_hidden(&refused(400), "shop", "p").ends_with("refused by the test"));
    }
}
