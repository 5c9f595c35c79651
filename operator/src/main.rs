//! `hort-operator`: parses its configuration, sets up logging and metrics, installs the CRDs
//! and runs the controllers.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use hort_operator::agent::pod::AgentSettings;
use hort_operator::clock::Clock;
use hort_operator::context::Context;
use hort_operator::controllers::{self, Scope};
use hort_operator::http::{self, Health};
use hort_operator::leader::{LeaderElector, LeaseConfig};
use hort_operator::metrics::Metrics;
use hort_operator::overview;
use hort_operator::populator;
use k8s_openapi::api::core::v1::ResourceRequirements;
use tracing_subscriber::EnvFilter;

/// Reconciles Hort's custom resources into agent pods.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "HORT_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Serve the read-only job overview page on this address (e.g. `0.0.0.0:8090`); off when
    /// unset. Users log in with a Kubernetes token; the operator then needs RBAC to create
    /// tokenreviews and subjectaccessreviews (the chart's `overview.enabled`).
    #[arg(long, env = "HORT_OVERVIEW_ADDRESS")]
    overview_address: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "HORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Watch only this namespace instead of the whole cluster.
    #[arg(long, env = "HORT_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Do not apply Hort's CRDs at start-up (when they are managed elsewhere, e.g. by GitOps).
    #[arg(long, env = "HORT_SKIP_CRD_INSTALL")]
    skip_crd_install: bool,
    /// Image of the agent pods.
    #[arg(long, env = "HORT_AGENT_IMAGE", default_value = concat!("hort-agent:", env!("CARGO_PKG_VERSION")))]
    agent_image: String,
    /// Pull policy of the agent image.
    #[arg(long, env = "HORT_AGENT_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    agent_image_pull_policy: String,
    /// Resources of agent containers whose object sets no `agent.resources`, as JSON (a
    /// Kubernetes ResourceRequirements, e.g. `{"requests":{"cpu":"100m","memory":"128Mi"}}`).
    #[arg(long, env = "HORT_AGENT_RESOURCES", value_parser = parse_resources)]
    agent_resources: Option<ResourceRequirements>,
    /// Seconds an agent pod may run when its object sets no `activeDeadlineSeconds`.
    #[arg(long, env = "HORT_AGENT_ACTIVE_DEADLINE_SECONDS", default_value_t = 21600,
          value_parser = clap::value_parser!(i64).range(1..))]
    agent_active_deadline_seconds: i64,
    /// Run without leader election (only safe with a single replica).
    #[arg(long, env = "HORT_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// The operator's own namespace: of the leader-election Lease, and of the StorageGroups,
    /// tenant root secrets and tenant check pods of ClusterStorageGroups.
    #[arg(long, env = "POD_NAMESPACE", default_value = "hort-system")]
    lease_namespace: String,
    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME", default_value = "hort-operator")]
    identity: String,
    /// How many objects of one kind are reconciled at the same time. Bounds the operator's
    /// memory and its load on the API server when thousands of objects change at once.
    #[arg(long, env = "HORT_MAX_CONCURRENT_RECONCILES", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_reconciles: u16,
    /// At most this many agent pods (checks, backups, restores, prunes, verifications) run on
    /// one node at once; no limit when unset. Each agent pod is created held back by the
    /// scheduling gate `hort.dev/node-slot` and released, oldest first, with a node affinity
    /// that keeps it off the nodes at the limit.
    #[arg(long, env = "HORT_MAX_JOBS_PER_NODE", value_parser = clap::value_parser!(u32).range(1..))]
    max_jobs_per_node: Option<u32>,
    /// Run the volume populator: claims whose `spec.dataSourceRef` names a VolumeRestoreSource
    /// get its snapshot restored into them. It needs get and patch on PersistentVolumes (the
    /// chart's `populator.enabled`).
    #[arg(long, env = "HORT_POPULATOR")]
    populator: bool,
}

/// Parses `--agent-resources`.
fn parse_resources(json: &str) -> Result<ResourceRequirements, String> {
    serde_json::from_str(json).map_err(|e| format!("not a ResourceRequirements in JSON ({e}): {json}"))
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_env("HORT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stdout().is_terminal())
            .init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }

    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    if !args.skip_crd_install {
        hort_operator::crd_install::install(&client)
            .await
            .context("installing Hort's CRDs (use --skip-crd-install when they are managed elsewhere)")?;
    }

    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let address = args.metrics_address;
    let server = tokio::spawn(async move { http::serve(address, health).await });

    let overview = match args.overview_address {
        Some(address) => {
            let source = overview::Source {
                client: client.clone(),
                base_config: kube::Config::infer()
                    .await
                    .context("reading the Kubernetes configuration again")?,
                namespace: args.watch_namespace.clone(),
                browse: overview::BrowseSettings {
                    image: hort_operator::agent::browse::AgentImage {
                        image: args.agent_image.clone(),
                        pull_policy: args.agent_image_pull_policy.clone(),
                    },
                    start_timeout: overview::browse::START_TIMEOUT,
                },
                reviews: Default::default(),
            };
            let page =
                overview::Overview::new(source, metrics.registry()).context("registering the overview's metrics")?;
            tokio::spawn(async move {
                overview::serve(address, page)
                    .await
                    .with_context(|| format!("serving the overview page on {address}"))
            })
        }
        None => tokio::spawn(std::future::pending()),
    };

    let scope = match args.watch_namespace {
        Some(ns) => Scope::Namespace(ns),
        None => Scope::Cluster,
    };
    let identity = args.identity;
    let agent = AgentSettings {
        image: args.agent_image,
        pull_policy: args.agent_image_pull_policy,
        retry_backoff: Duration::from_secs(10),
        default_resources: args.agent_resources,
        default_deadline_seconds: Some(args.agent_active_deadline_seconds),
        max_pods_per_node: args.max_jobs_per_node,
    };
    let elector = LeaderElector::new(
        &client,
        LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: "hort-operator-leader".into(),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        },
    );
    // A standby replica is ready too: it serves its endpoints and waits for the lease.
    ready.store(true, Ordering::Relaxed);
    if !args.no_leader_election {
        tracing::info!("waiting for leadership");
        elector.acquire().await;
    }
    tracing::info!(?scope, "starting controllers");
    let mut ctx = Context::new(
        client,
        metrics,
        Clock::System,
        agent,
        args.lease_namespace,
        Some(identity),
    );
    ctx.shares_groups = matches!(scope, Scope::Cluster);
    let ctx = Arc::new(ctx);
    let keep_leading = async {
        if args.no_leader_election {
            std::future::pending::<()>().await
        } else {
            elector.hold().await
        }
    };
    let concurrency = args.max_concurrent_reconciles;
    let populator = async {
        if args.populator {
            populator::run(ctx.clone(), scope.clone(), concurrency).await
        }
    };
    let all = async { tokio::join!(controllers::run(ctx.clone(), scope.clone(), concurrency), populator) };
    tokio::select! {
        _ = all => tracing::info!("controllers stopped"),
        () = keep_leading => anyhow::bail!("lost leadership; exiting so that only one replica reconciles"),
        served = overview => served.context("overview server task")??,
        served = server => served.context("metrics server task")?.with_context(|| format!("serving on {address}"))?,
    }
    Ok(())
}
