//! Errors of the overview page: each has a kind (its HTTP status and metric label) and a
//! message that names what to do.

use axum::http::StatusCode;

use crate::agent::browse_run::BrowseError;

/// An error that ends one request of the overview page.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request carries no token.
    #[error(
        "no token: log in with a Kubernetes token (kubectl create token SERVICEACCOUNT -n NAMESPACE) \
         or send it as `Authorization: Bearer TOKEN`"
    )]
    NoToken,
    /// The API server did not accept the token (expired, revoked or malformed).
    #[error(
        "the API server did not accept this token{0}: log in again with a current token \
         (kubectl create token SERVICEACCOUNT -n NAMESPACE)"
    )]
    BadToken(String),
    /// The user may not read what the request asks for.
    #[error(
        "you may not {verb} {resource}.hort.dev in namespace {namespace}: ask for a RoleBinding to the \
         ClusterRole hort-view there"
    )]
    Forbidden {
        /// The verb that was denied.
        verb: &'static str,
        /// The resource (plural).
        resource: &'static str,
        /// The namespace.
        namespace: String,
    },
    /// The object asked for does not exist.
    #[error("{kind} {namespace}/{name} does not exist (any more): go back to the list")]
    NotFound {
        /// Kind of the object.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A query parameter has a value the page does not know.
    #[error("query parameter {name}={value} is not valid: use one of {allowed}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// The values it may have.
        allowed: String,
    },
    /// A login form came from another site.
    #[error("the login form was sent from another site ({0}): open the page itself and log in there")]
    CrossSite(String),
    /// The user may not start the snapshot browser's agent pod (create pods, pods/exec).
    #[error(
        "you may not start the snapshot browser's agent pod in namespace {namespace} ({refused}); it reads \
         the repository with your own rights; ask for a RoleBinding to the ClusterRole edit there \
         (create on pods and pods/exec)"
    )]
    BrowseForbidden {
        /// The namespace.
        namespace: String,
        /// The request that was refused, and the API server's words.
        refused: String,
    },
    /// The snapshot browser's agent pod did not start or its command failed.
    #[error("reading the repository failed: {0}")]
    Browse(BrowseError),
    /// The API server refused or failed one of the operator's requests.
    #[error(
        "the Kubernetes API request failed ({0}); if it names tokenreviews or subjectaccessreviews, \
         the operator lacks them: install the chart with overview.enabled=true"
    )]
    Kube(#[from] kube::Error),
}

impl Error {
    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NoToken | Error::BadToken(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } | Error::CrossSite(_) => StatusCode::FORBIDDEN,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::BadParameter { .. } => StatusCode::BAD_REQUEST,
            Error::BrowseForbidden { .. } => StatusCode::FORBIDDEN,
            Error::Browse(_) => StatusCode::BAD_GATEWAY,
            Error::Kube(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short, bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoToken => "no_token",
            Error::BadToken(_) => "bad_token",
            Error::Forbidden { .. } => "forbidden",
            Error::NotFound { .. } => "not_found",
            Error::BadParameter { .. } => "bad_parameter",
            Error::CrossSite(_) => "cross_site",
            Error::BrowseForbidden { .. } => "browse_forbidden",
            Error::Browse(_) => "browse",
            Error::Kube(_) => "kube_api",
        }
    }

    /// The page's error for browse pod failure `e` in `namespace`: a refusal of the user's
    /// request says which right is missing.
    pub fn browse(namespace: &str, e: BrowseError) -> Self {
        match e {
            BrowseError::Api {
                action,
                source: kube::Error::Api(status),
            } if status.code == 403 => Error::BrowseForbidden {
                namespace: namespace.into(),
                refused: format!("{action}: {}", status.message),
            },
            other => Error::Browse(other),
        }
    }
}
