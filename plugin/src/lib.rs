//! `kubectl-hort`: the kubectl plugin for Hort, a thin command line over pure builders.
//!
//! - [`cli`]: the command line; [`client`]: the kubeconfig; [`output`]: tables and formats;
//! - [`status`]: the one-screen view; [`backup`]: `backup now`; [`restore`]: RestoreRequests
//!   from flags; [`follow`]: following a job or restore to its end; [`logs`]: agent pod logs;
//! - [`browse_pod`] and [`browse`]: reading a repository through a short-lived agent pod
//!   (`snapshots`, `ls`, `cat`, `download`, `diff`), and [`diff`]: comparing two listings;
//! - [`dr`] and [`dr_run`]: `dr`, rebuilding a namespace's protection from the catalogs in a
//!   repository;
//! - [`error`]: errors and exit codes; [`run`]: dispatching a parsed command line.

pub mod backup;
pub mod browse;
pub mod browse_pod;
pub mod cli;
pub mod client;
pub mod diff;
pub mod dr;
pub mod dr_run;
pub mod error;
pub mod follow;
pub mod logs;
pub mod output;
pub mod restore;
pub mod status;

use clap::CommandFactory;

use cli::{BackupCommand, Cli, Command};
use error::Result;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    if let Command::Completion { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "kubectl-hort", &mut script);
        return output::emit(&String::from_utf8_lossy(&script));
    }
    let (client, namespace) = client::connect(&cli.global).await?;
    let format = cli.global.output;
    let ns = namespace.as_str();
    match &cli.command {
        Command::Status => {
            let view = status::view(ns, &status::fetch(&client, ns).await?);
            let text = output::structured(format, &view)?;
            output::emit(&text.unwrap_or_else(|| status::render(&view, jiff::Timestamp::now())))
        }
        Command::Backup(BackupCommand::Now(args)) => backup::now(&client, ns, args, format).await,
        Command::Restore(flags) => restore::run(&client, ns, flags, format).await,
        Command::Logs { name } => logs::run(&client, ns, name).await,
        Command::Snapshots {
            group,
            tags,
            all,
            agent,
        } => browse::snapshots(&client, ns, group, tags, *all, agent, format).await,
        Command::Dr(flags) => dr_run::run(&client, ns, flags, format).await,
        Command::Ls {
            group,
            snapshot,
            path,
            agent,
        } => browse::ls(&client, ns, group, snapshot, path.as_deref(), agent, format).await,
        Command::Diff {
            group,
            from,
            to,
            path,
            agent,
        } => browse::diff(&client, ns, group, from, to, path.as_deref(), agent, format).await,
        Command::Cat {
            group,
            snapshot,
            path,
            agent,
        } => browse::cat(&client, ns, group, snapshot, path, None, agent).await,
        Command::Download {
            group,
            snapshot,
            path,
            file,
            agent,
        } => browse::cat(&client, ns, group, snapshot, path, Some(file), agent).await,
        Command::Completion { .. } => unreachable!("handled above"),
    }
}
