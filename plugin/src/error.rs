//! What can go wrong in `kubectl hort`, each error with its exit code and, where the user can
//! fix it, the object and the fix.

use hort_operator::agent::browse_run::BrowseError;

/// An error of a `kubectl hort` command.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The flags do not describe a valid request.
    #[error("{0}")]
    Usage(String),
    /// A named object does not exist.
    #[error("{kind} {namespace}/{name} not found: {hint}")]
    NotFound {
        /// Its kind, e.g. `Schedule`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// How to find the right one.
        hint: String,
    },
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}: check --kubeconfig, --context or KUBECONFIG")]
    Config(String),
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done, naming the object.
        action: String,
        /// What the API server or the connection said.
        source: kube::Error,
    },
    /// A BackupJob or RestoreRequest ended in phase Failed.
    #[error("{kind} {namespace}/{name} failed: {message}")]
    Failed {
        /// `BackupJob` or `RestoreRequest`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its status message.
        message: String,
    },
    /// The agent pod that reads the repository did not start or its command failed.
    #[error("{0}")]
    Agent(String),
    /// Writing the output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Following an object took longer than `--timeout`; the object goes on.
    #[error("{0}")]
    Timeout(String),
    /// Stopped by Ctrl-C (after cleaning up).
    #[error("interrupted")]
    Interrupted,
}

impl PluginError {
    /// The process exit code: 1 for a job or restore that failed, 2 for usage errors and
    /// objects not found, 3 for API and agent failures, 130 for Ctrl-C.
    pub fn exit_code(&self) -> i32 {
        match self {
            PluginError::Failed { .. } => 1,
            PluginError::Usage(_) | PluginError::NotFound { .. } | PluginError::Config(_) => 2,
            PluginError::Api { .. } | PluginError::Agent(_) | PluginError::Io { .. } | PluginError::Timeout(_) => 3,
            PluginError::Interrupted => 130,
        }
    }

    /// An API error while doing `action`, or [`PluginError::NotFound`] when the API server
    /// answered 404 for the object named.
    pub fn api(action: impl Into<String>, source: kube::Error) -> Self {
        PluginError::Api {
            action: action.into(),
            source,
        }
    }
}

impl From<BrowseError> for PluginError {
    /// The browse pod's failure, with what the plugin's user can do about it.
    fn from(e: BrowseError) -> Self {
        match e {
            BrowseError::Api { action, source } => PluginError::Api { action, source },
            BrowseError::CannotStart { ref namespace, .. } => PluginError::Agent(format!(
                "{e} (the image is set with --agent-image; a missing Secret of the StorageGroup shows in \
                 `kubectl hort status -n {namespace}`)"
            )),
            BrowseError::StartTimeout {
                ref namespace,
                ref name,
                ..
            } => PluginError::Agent(format!(
                "{e}: see `kubectl describe pod {name} -n {namespace}` (it is deleted now), or wait longer with --start-timeout"
            )),
            BrowseError::Agent(said) => PluginError::Agent(said),
            BrowseError::Io { what, source } => PluginError::Io { what, source },
        }
    }
}

/// Whether `error` is the API server's 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// The result of a plugin command.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;
