//! The snapshot browser's reads: a group's snapshots and one snapshot's entries, read by a
//! short-lived agent pod (the plugin's browse pod) that is created, run by exec and deleted
//! with the user's own token. The page can show nothing of a repository that its user could
//! not read with `kubectl hort` themselves.

use std::time::Duration;

use hort_crds::StorageGroup;
use hort_protocol::report::Report;
use hort_protocol::{AgentCommand, Listing, SnapshotList};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::auth::{self, User};
use super::error::Error;
use super::gather::Source;
use crate::agent::browse::{AgentImage, browse_pod, pod_name, suffix};
use crate::agent::browse_run::run_report;

/// The value of the browse pods' `app.kubernetes.io/created-by` label.
pub const CREATED_BY: &str = "hort-overview";
/// How long the page waits for a browse pod to run (the request waits as long).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How the page starts its browse pods.
#[derive(Clone, Debug)]
pub struct BrowseSettings {
    /// The agent image (the operator's own).
    pub image: AgentImage,
    /// How long a browse pod may take to start.
    pub start_timeout: Duration,
}

impl Source {
    /// The snapshots in `group`'s repository.
    pub async fn snapshots(&self, user: &User, namespace: &str, group: &str) -> Result<SnapshotList, Error> {
        self.browse(user, namespace, group, AgentCommand::Snapshots { tags: vec![] })
            .await
    }

    /// The entries of `snapshot` (the whole subtree below `path`, or all).
    pub async fn listing(
        &self,
        user: &User,
        namespace: &str,
        group: &str,
        snapshot: &str,
        path: Option<&str>,
    ) -> Result<Listing, Error> {
        let command = AgentCommand::Ls {
            snapshot: snapshot.into(),
            path: path.map(str::to_owned),
        };
        self.browse(user, namespace, group, command).await
    }

    /// Runs `command` in a browse pod of `group`, everything with the user's token.
    async fn browse<R: Report>(
        &self,
        user: &User,
        namespace: &str,
        group: &str,
        command: AgentCommand,
    ) -> Result<R, Error> {
        let not_found = || Error::NotFound {
            kind: "StorageGroup",
            namespace: namespace.into(),
            name: group.into(),
        };
        if self.namespace.as_deref().is_some_and(|watched| watched != namespace) {
            return Err(not_found());
        }
        let client = auth::user_client(&self.base_config, user)?;
        let groups: Api<StorageGroup> = Api::namespaced(client.clone(), namespace);
        let found = match groups.get_opt(group).await {
            Ok(found) => found,
            Err(kube::Error::Api(e)) if e.code == 403 => {
                return Err(Error::Forbidden {
                    verb: "get",
                    resource: "storagegroups",
                    namespace: namespace.into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let found = found.ok_or_else(not_found)?;
        let pod = browse_pod(
            &found,
            &self.browse.image,
            &pod_name(group, &suffix()),
            CREATED_BY,
            command.clone(),
        );
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        run_report(&pods, &pod, &command, self.browse.start_timeout)
            .await
            .map_err(|e| Error::browse(namespace, e))
    }
}
