//! The job overview page: a read-only web view of Hort's jobs, schedules and storage groups,
//! served on its own port when `--overview-address` is set (off by default).
//!
//! Every request is authenticated by the API server (a TokenReview of its bearer token) and
//! shows only the namespaces where a SubjectAccessReview allows the user to list the kind
//! shown. Without a valid token the page answers 401 with a login form and nothing else.
//!
//! - [`auth`]: tokens, the login cookie, TokenReview and SubjectAccessReview;
//! - [`reviews`]: their answers, remembered for a short while;
//! - [`gather`]: reading the objects and a job's Events;
//! - [`browse`]: the snapshot browser's reads, through an agent pod run with the user's token;
//! - [`model`]: the typed data shown, made from the objects;
//! - [`render`]: pure HTML rendering;
//! - [`handlers`]: the routes.

pub mod auth;
pub mod browse;
pub mod error;
pub mod gather;
pub mod handlers;
pub mod model;
pub mod render;
pub mod reviews;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};
use prometheus::{IntCounterVec, Opts, Registry};

pub use browse::BrowseSettings;
pub use gather::Source;

/// What the page's handlers share.
#[derive(Clone)]
pub struct Overview {
    /// Where the data comes from.
    pub source: Source,
    /// `hort_overview_requests_total`.
    requests: IntCounterVec,
}

impl Overview {
    /// The page over `source`, its request counter registered in `registry`.
    pub fn new(source: Source, registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "hort_overview_requests_total",
                "Requests to the overview page by view and HTTP status code.",
            ),
            &["view", "code"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(source.reviews.counter()))?;
        Ok(Self { source, requests })
    }

    /// Counts one answered request.
    fn count(&self, view: &str, code: u16) {
        self.requests.with_label_values(&[view, &code.to_string()]).inc();
    }
}

/// The routes of the page.
pub fn router(overview: Overview) -> Router {
    Router::new()
        .route("/", get(handlers::jobs))
        .route("/jobs/{namespace}/{name}", get(handlers::job))
        .route("/schedules", get(handlers::schedules))
        .route("/groups", get(handlers::groups))
        .route("/groups/{namespace}/{group}/snapshots", get(handlers::snapshots))
        .route(
            "/groups/{namespace}/{group}/snapshots/{snapshot}",
            get(handlers::snapshot),
        )
        .route("/login", get(handlers::login_form).post(handlers::login))
        .route("/logout", post(handlers::logout))
        .with_state(overview)
}

/// Serves the page on `address` until the process ends.
pub async fn serve(address: SocketAddr, overview: Overview) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "serving the overview page");
    axum::serve(listener, router(overview)).await
}
