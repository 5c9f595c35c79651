//! State shared by every reconcile.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::agent::pod::AgentSettings;
use crate::backoff::Backoff;
use crate::backup_hooks::BackupHookRuns;
use crate::clock::Clock;
use crate::hook_runs::{RUNS_IN_ALL, RUNS_PER_NAMESPACE};
use crate::metrics::Metrics;

/// Field manager of every object and status the operator writes.
pub const FIELD_MANAGER: &str = "hort-operator";

/// What every reconciler gets: an API client, the metrics, the clock and an event recorder.
#[derive(Clone)]
pub struct Context {
    /// Client of the API server.
    pub client: Client,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// Source of the current time (a manual clock in tests).
    pub clock: Clock,
    /// Publishes Kubernetes Events about the reconciled objects.
    pub recorder: Recorder,
    /// How agent pods are run.
    pub agent: AgentSettings,
    /// The operator's own namespace: where the StorageGroups a ClusterStorageGroup shares,
    /// their tenant root secrets and the tenant check pods are.
    pub operator_namespace: String,
    /// Whether ClusterStorageGroups can be used: only an operator that watches the whole
    /// cluster runs their controller (set by `main` from its scope; true by default).
    pub shares_groups: bool,
    /// Retry delays of objects whose reconciles fail.
    pub backoff: Arc<Backoff>,
    /// BackupJob hooks running outside the reconcile loop; they end when the last clone of
    /// this context is dropped.
    pub hook_runs: Arc<BackupHookRuns>,
}

impl Context {
    /// A context of an operator running in `operator_namespace` whose events are reported as
    /// coming from `instance` (the pod name).
    pub fn new(
        client: Client,
        metrics: Metrics,
        clock: Clock,
        agent: AgentSettings,
        operator_namespace: String,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            clock,
            agent,
            operator_namespace,
            shares_groups: true,
            backoff: Arc::default(),
            hook_runs: Arc::new(BackupHookRuns::new(RUNS_PER_NAMESPACE, RUNS_IN_ALL)),
        }
    }
}
