//! Errors of a reconcile, with a bounded category for metric labels.

/// An error that stops one reconcile; the controller retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object lacks a field the API server always sets (name, namespace).
    #[error("{kind} object is missing {field}")]
    MissingObjectField {
        /// Kind of the object.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// kube-runtime's finalizer helper refused the object (it has no name, or the finalizer
    /// name is malformed).
    #[error("finalizer hort.dev/agent-pods: {0}")]
    Finalizer(String),
    /// The operating system's random generator failed (a Verification's server password).
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// A certificate of a ClusterStorageGroup's proxy could not be made.
    #[error("the certificate of a ClusterStorageGroup's proxy could not be made: {0}")]
    Certificate(String),
}

impl Error {
    /// A short, bounded label for metrics (never the message, whose values are unbounded).
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "conflict",
            Error::Kube(_) => "kube_api",
            Error::MissingObjectField { .. } | Error::Finalizer(_) => "malformed_object",
            Error::Random(_) => "random",
            Error::Certificate(_) => "certificate",
        }
    }
}

impl Error {
    /// Whether the error is a write that lost a race with another writer; the reconcile is
    /// retried at once from a fresh read.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(e)) if e.code == 409)
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
