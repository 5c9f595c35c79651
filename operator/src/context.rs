//! State shared by every reconcile.

use kube::Client;

use crate::clock::Clock;
use crate::metrics::Metrics;

/// Field manager of every object and status the operator writes.
pub const FIELD_MANAGER: &str = "hort-operator";

/// What every reconciler gets: an API client, the metrics and the clock.
#[derive(Clone)]
pub struct Context {
    /// Client of the API server.
    pub client: Client,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// Source of the current time (a manual clock in tests).
    pub clock: Clock,
}
