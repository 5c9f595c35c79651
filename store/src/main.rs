//! `hort-store`: serves one storage group to the agents of many namespaces, each reaching only
//! its own repository under `tenants/<namespace>/`, authenticated by TokenReview.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use hort_engine::backend::throttle::Limits;
use hort_engine::location::S3Defaults;
use hort_protocol::{BytesPerSecond, Strategy, env};
use hort_store::admission::ClusterStorageGroups;
use hort_store::places::{GroupSettings, Places};
use hort_store::review::TokenReviews;
use hort_store::server::{Store, serve};
use hort_store::tls::{self, TlsListener};

/// Serves a storage group to many namespaces.
#[derive(Parser)]
#[command(name = "hort-store", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HORT_STORE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// The group's name (the last part of `hort+http://HOST:PORT/GROUP`): a namespace may use
    /// it while `allowedNamespaces` of the ClusterStorageGroup of this name selects it.
    #[arg(long, env = "HORT_STORE_GROUP")]
    group: String,
    /// The group's targets, comma-separated locations as the agent takes them (S3 keys from
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, or a target's own `credentials=P` variables).
    #[arg(long, env = env::REPOSITORY, value_delimiter = ',', required = true)]
    repo: Vec<String>,
    /// How the targets form each namespace's repository, as for the agent.
    #[arg(long, env = env::STRATEGY, value_enum, default_value = "spread")]
    strategy: Strategy,
    /// Weights of the targets for `spread` (comma-separated, default 1 each).
    #[arg(long, env = env::WEIGHTS, value_delimiter = ',')]
    weights: Vec<u32>,
    /// `mirror`: how many targets must take each write.
    #[arg(long, env = env::MIN_HEALTHY_TARGETS, default_value_t = 1)]
    min_healthy_targets: usize,
    /// Bytes per second each namespace may send to the targets, e.g. `20Mi`; no limit if absent.
    #[arg(long, env = env::LIMIT_UPLOAD, value_name = "RATE")]
    limit_upload: Option<BytesPerSecond>,
    /// Bytes per second each namespace may receive from the targets; no limit if absent.
    #[arg(long, env = env::LIMIT_DOWNLOAD, value_name = "RATE")]
    limit_download: Option<BytesPerSecond>,
    /// Bytes per second all namespaces together may send to the targets; no total limit if
    /// absent.
    #[arg(long, env = "HORT_STORE_TOTAL_LIMIT_UPLOAD", value_name = "RATE")]
    total_limit_upload: Option<BytesPerSecond>,
    /// Bytes per second all namespaces together may receive from the targets; no total limit
    /// if absent.
    #[arg(long, env = "HORT_STORE_TOTAL_LIMIT_DOWNLOAD", value_name = "RATE")]
    total_limit_download: Option<BytesPerSecond>,
    /// Where written files are spooled while they are checked.
    #[arg(long, env = "HORT_SPOOL_DIR")]
    spool: Option<PathBuf>,
    /// S3 endpoint URL for targets that do not name one.
    #[arg(long, env = "HORT_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region for targets that do not name one.
    #[arg(long, env = "HORT_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Path-style S3 addressing for targets that do not set it.
    #[arg(long, env = "HORT_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    s3_path_style: bool,
    /// PEM file of the certificate chain to serve HTTPS with (with `--tls-key`); without
    /// both, plain HTTP, which agents accept only on a loopback address.
    #[arg(long, env = "HORT_STORE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM file of the certificate's private key (with `--tls-cert`).
    #[arg(long, env = "HORT_STORE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HORT_LOG").unwrap_or_else(|_| "info".into()))
        .json()
        .init();
    let args = Args::parse();
    let settings = GroupSettings {
        strategy: args.strategy.into(),
        weights: args.weights,
        min_healthy: args.min_healthy_targets,
        limits: Limits {
            upload: args.limit_upload.map(BytesPerSecond::get),
            download: args.limit_download.map(BytesPerSecond::get),
        },
        total: Limits {
            upload: args.total_limit_upload.map(BytesPerSecond::get),
            download: args.total_limit_download.map(BytesPerSecond::get),
        },
        s3: S3Defaults {
            endpoint: args.s3_endpoint,
            region: args.s3_region,
            path_style: args.s3_path_style,
            access_key_id: std::env::var(env::ACCESS_KEY_ID).ok(),
            secret_access_key: std::env::var(env::SECRET_ACCESS_KEY).ok(),
        },
    };
    let places = Places::new(args.repo, settings)?;
    let client = kube::Client::try_default().await?;
    let spool = args.spool.unwrap_or_else(std::env::temp_dir);
    let store = Store::new(
        TokenReviews::new(client.clone()),
        HashMap::from([(args.group.clone(), places)]),
        spool,
    )
    .with_admission(ClusterStorageGroups::new(client));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let store = Arc::new(store);
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let listener = TlsListener::new(listener, tls::acceptor(cert, key)?)?;
            tracing::info!(listen = %args.listen, group = %args.group, "hort-store serving HTTPS");
            serve(listener, store).await?;
        }
        _ => {
            tracing::warn!(
                listen = %args.listen,
                group = %args.group,
                "hort-store serving plain HTTP (no --tls-cert and --tls-key): agents send their token only to a loopback address"
            );
            serve(listener, store).await?;
        }
    }
    Ok(())
}
