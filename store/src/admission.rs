//! Which namespaces may use a group: an [`Admission`] decides, for each request, whether the
//! asking namespace may reach the group named in the URL. [`ClusterStorageGroups`] asks the
//! API server: the namespace's labels must be selected by `spec.allowedNamespaces` of the
//! `ClusterStorageGroup` of the group's name, and each decision is remembered for at most
//! [`DECISION_TTL`], so taking a namespace off the selector refuses its requests within that
//! time. [`AllNamespaces`] admits every namespace (tests, and a proxy outside Kubernetes).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hort_crds::ClusterStorageGroup;
use k8s_openapi::api::core::v1::Namespace as KubeNamespace;
use kube::{Api, Client};

use crate::check::Namespace;
use crate::selector;

/// How long a decision is remembered at most.
pub const DECISION_TTL: Duration = Duration::from_secs(10);
/// Decisions remembered at most; beyond it, expired ones are forgotten.
const MAX_DECISIONS: usize = 10_000;

/// Why a namespace was not admitted to a group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdmissionError {
    /// The group's `allowedNamespaces` does not select the namespace (or there is no such
    /// `ClusterStorageGroup`: the answer is the same, so nothing is learnt about other groups).
    #[error(
        "namespace `{namespace}` is not allowed to use storage group `{group}` (its allowedNamespaces does not select this namespace)"
    )]
    NotAllowed {
        /// The group asked for.
        group: String,
        /// The asking namespace.
        namespace: String,
    },
    /// The API server could not be asked: the request may be tried again.
    #[error("cannot read ClusterStorageGroup `{group}` or Namespace `{namespace}`: {message}")]
    Unavailable {
        /// The group asked for.
        group: String,
        /// The asking namespace.
        namespace: String,
        /// What failed.
        message: String,
    },
}

/// Decides whether a namespace may use a group.
pub trait Admission: Send + Sync + 'static {
    /// `Ok` if `namespace` may use `group`.
    fn admit(&self, group: &str, namespace: &Namespace) -> impl Future<Output = Result<(), AdmissionError>> + Send;
}

/// Admits every namespace to every group.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllNamespaces;

impl Admission for AllNamespaces {
    async fn admit(&self, _group: &str, _namespace: &Namespace) -> Result<(), AdmissionError> {
        Ok(())
    }
}

/// `allowedNamespaces` of the `ClusterStorageGroup` named like the group, read from the API
/// server (needs `get` on `clusterstoragegroups.hort.dev` and on `namespaces`), each decision
/// remembered for [`DECISION_TTL`].
pub struct ClusterStorageGroups {
    client: Client,
    decisions: Mutex<HashMap<(String, Namespace), (Instant, bool)>>,
}

impl ClusterStorageGroups {
    /// Asks the API server of `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            decisions: Mutex::default(),
        }
    }

    fn remembered(&self, key: &(String, Namespace)) -> Option<bool> {
        let decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        let (at, allowed) = decisions.get(key)?;
        (at.elapsed() < DECISION_TTL).then_some(*allowed)
    }

    fn remember(&self, key: (String, Namespace), allowed: bool) {
        let mut decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        if decisions.len() >= MAX_DECISIONS {
            decisions.retain(|_, (at, _)| at.elapsed() < DECISION_TTL);
        }
        if decisions.len() < MAX_DECISIONS {
            decisions.insert(key, (Instant::now(), allowed));
        }
    }

    /// Whether the group's selector selects the namespace's labels now.
    async fn ask(&self, group: &str, namespace: &Namespace) -> Result<bool, kube::Error> {
        let groups = Api::<ClusterStorageGroup>::all(self.client.clone());
        let Some(shared) = groups.get_opt(group).await? else {
            return Ok(false);
        };
        let namespaces = Api::<KubeNamespace>::all(self.client.clone());
        let Some(asking) = namespaces.get_opt(namespace.as_str()).await? else {
            return Ok(false);
        };
        let labels = asking.metadata.labels.unwrap_or_default();
        Ok(match selector::selects(&shared.spec.allowed_namespaces, &labels) {
            Ok(selected) => selected,
            Err(e) => {
                tracing::warn!(group, error = %e, "allowedNamespaces is not a valid selector; it allows no namespace");
                false
            }
        })
    }
}

impl Admission for ClusterStorageGroups {
    async fn admit(&self, group: &str, namespace: &Namespace) -> Result<(), AdmissionError> {
        let key = (group.to_owned(), namespace.clone());
        let allowed = match self.remembered(&key) {
            Some(allowed) => allowed,
            None => {
                let allowed = self
                    .ask(group, namespace)
                    .await
                    .map_err(|e| AdmissionError::Unavailable {
                        group: group.to_owned(),
                        namespace: namespace.to_string(),
                        message: e.to_string(),
                    })?;
                self.remember(key, allowed);
                allowed
            }
        };
        match allowed {
            true => Ok(()),
            false => Err(AdmissionError::NotAllowed {
                group: group.to_owned(),
                namespace: namespace.to_string(),
            }),
        }
    }
}
