//! `hort-rbac-audit`: checks the chart's RBAC against the requests in an audit log, or that a
//! rendered chart holds no cluster-wide RBAC objects.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Parser;
use hort_rbac_audit::{audit, rbac, report};
use jiff::Timestamp;

/// Compares the RBAC of Hort's chart with what the operator did.
#[derive(Parser, Debug)]
#[command(about)]
enum Command {
    /// Fails when the chart grants the service account a verb that no request used (unless
    /// the allowlist explains it), or when a request of it was forbidden; prints every
    /// (group, resource, verb, scope) it used.
    Check {
        /// The rendered chart (`helm template` or `helm get manifest`); `-` for stdin.
        #[arg(long)]
        rbac: PathBuf,
        /// An audit log (JSON lines); repeat for rotated files.
        #[arg(long = "audit-log", required = true)]
        audit_logs: Vec<PathBuf>,
        /// The operator's service account, NAMESPACE/NAME.
        #[arg(long)]
        service_account: String,
        /// Only requests received at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<Timestamp>,
        /// Fail only on forbidden requests (for a run that does not take every code path).
        #[arg(long)]
        forbidden_only: bool,
    },
    /// Fails when the rendered chart (`-` for stdin) holds a ClusterRole or ClusterRoleBinding.
    NoClusterRbac {
        /// The rendered chart.
        rendered: PathBuf,
    },
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Check {
            rbac: chart,
            audit_logs,
            service_account,
            since,
            forbidden_only,
        } => {
            let Some((namespace, name)) = service_account.split_once('/') else {
                bail!("--service-account is NAMESPACE/NAME, not {service_account:?}");
            };
            let user = audit::service_account_user(namespace, name)?;
            let grants = rbac::grants(&read(&chart)?, namespace, name)?;
            if grants.is_empty() {
                bail!("the chart binds no role to {user}");
            }
            let mut requests = Vec::new();
            for log in &audit_logs {
                requests.extend(audit::requests(&read(log)?, &user, since)?);
            }
            if requests.is_empty() {
                bail!("the audit log has no request of {user}: another service account, or a log without it?");
            }
            let report = report::compare(&grants, &requests, !forbidden_only);
            println!(
                "{} requests of {user}, {} grants of the chart",
                requests.len(),
                grants.len()
            );
            print!("{report}");
            Ok(report.failures().is_empty())
        }
        Command::NoClusterRbac { rendered } => {
            let found = rbac::cluster_objects(&read(&rendered)?)?;
            for object in &found {
                println!("FAIL cluster-wide RBAC object: {object}");
            }
            Ok(found.is_empty())
        }
    }
}

fn main() -> ExitCode {
    match run(Command::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hort-rbac-audit: {e:#}");
            ExitCode::from(2)
        }
    }
}
