//! The command line of `kubectl hort` (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;
use crate::restore::RestoreFlags;

/// kubectl plugin for Hort: status, backups, restores, logs, and the snapshots in a storage
/// group. It uses only your kubeconfig and your RBAC; repositories are read by short-lived
/// agent pods in your namespace, never by copying Secrets to this machine.
#[derive(Debug, Parser)]
#[command(name = "kubectl-hort", bin_name = "kubectl hort", version)]
pub struct Cli {
    /// Connection and output settings.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command takes, as kubectl's.
#[derive(Debug, Args)]
pub struct Global {
    /// Namespace of the objects; the kubeconfig context's namespace when unset.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Path of the kubeconfig file; `KUBECONFIG` or `~/.kube/config` when unset.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use; its current context when unset.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One screen: storage groups, schedules, running jobs and restores, recent failures.
    Status,
    /// Start backups.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restore a snapshot (or part of it) into a claim or a database server.
    Restore(Box<RestoreFlags>),
    /// The log of the agent pod of a BackupJob or RestoreRequest.
    Logs {
        /// Name of the BackupJob or RestoreRequest.
        name: String,
    },
    /// The snapshots of a storage group (read by an agent pod in the namespace).
    Snapshots {
        /// The StorageGroup.
        group: String,
        /// Only snapshots carrying all of these tags (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Also Hort's own catalog snapshots (tag `hort.dev/catalog`), which are hidden
        /// otherwise unless a --tag asks for them.
        #[arg(long)]
        all: bool,
        /// How the agent pod runs.
        #[command(flatten)]
        agent: AgentFlags,
    },
    /// The files (or database dumps) of a snapshot.
    Ls {
        /// The StorageGroup.
        group: String,
        /// Snapshot id (a unique prefix of 8 or more characters) or `latest`.
        snapshot: String,
        /// Only this directory or file and what is below it.
        path: Option<String>,
        /// How the agent pod runs.
        #[command(flatten)]
        agent: AgentFlags,
    },
    /// What changed from one snapshot to another: files added, removed or modified, and
    /// tables whose row counts changed.
    Diff {
        /// The StorageGroup.
        group: String,
        /// The earlier snapshot: id (a unique prefix of 8 or more characters) or `latest`.
        from: String,
        /// The later snapshot: id (or unique prefix) or `latest`.
        to: String,
        /// Only this directory or file and what is below it.
        path: Option<String>,
        /// How the agent pod runs.
        #[command(flatten)]
        agent: AgentFlags,
    },
    /// Write one file (or database dump) of a snapshot to stdout.
    Cat {
        /// The StorageGroup.
        group: String,
        /// Snapshot id (or unique prefix) or `latest`.
        snapshot: String,
        /// Path of the file below the snapshot root, or a dump's name as `ls` shows it.
        path: String,
        /// How the agent pod runs.
        #[command(flatten)]
        agent: AgentFlags,
    },
    /// Save one file (or database dump) of a snapshot to a local file.
    Download {
        /// The StorageGroup.
        group: String,
        /// Snapshot id (or unique prefix) or `latest`.
        snapshot: String,
        /// Path of the file below the snapshot root, or a dump's name as `ls` shows it.
        path: String,
        /// The local file to write (replaced if it exists).
        #[arg(short = 'O', long = "output-file", value_name = "FILE")]
        file: PathBuf,
        /// How the agent pod runs.
        #[command(flatten)]
        agent: AgentFlags,
    },
    /// Disaster recovery: read Hort's catalogs from GROUP's repository, list them, and with
    /// --apply recreate the StorageGroups and Schedules and restore the latest backup of every
    /// database and volume.
    Dr(Box<DrFlags>),
    /// Print a shell completion script (e.g. `kubectl-hort completion bash > /etc/bash_completion.d/kubectl-hort`).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Create a BackupJob now, from a Schedule's jobTemplate or a copy of another job, and
    /// follow it; the exit code is 0 when it succeeds and 1 when it fails.
    Now(BackupNow),
}

/// `backup now`.
#[derive(Debug, Args)]
pub struct BackupNow {
    /// The Schedule whose jobTemplate the job is made from.
    #[arg(required_unless_present = "from_job", conflicts_with = "from_job")]
    pub schedule: Option<String>,
    /// Copy the spec of this BackupJob instead.
    #[arg(long, value_name = "JOB")]
    pub from_job: Option<String>,
    /// Following the created object.
    #[command(flatten)]
    pub follow: FollowFlags,
}

/// `dr`.
#[derive(Debug, Args)]
pub struct DrFlags {
    /// The StorageGroup (in --namespace) whose repository holds the catalogs: create it, with
    /// its Secrets, as before the disaster.
    pub group: String,
    /// List what the catalogs hold and what --apply would do (the default).
    #[arg(long, conflicts_with = "apply")]
    pub list: bool,
    /// Apply the StorageGroups and Schedules, create a RestoreRequest of the latest backup of
    /// every database and volume, follow them, and report.
    #[arg(long)]
    pub apply: bool,
    /// `client`: print the objects --apply would send (YAML, or -o json), without sending them.
    #[arg(long, value_parser = ["client"], num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// Only the catalog of this namespace (of the old cluster); every namespace's when unset.
    #[arg(long, value_name = "NAMESPACE")]
    pub from_namespace: Option<String>,
    /// Rebuild namespace FROM's objects in namespace TO (repeatable), e.g. `shop=shop-restored`.
    #[arg(long = "namespace-map", value_name = "FROM=TO")]
    pub namespace_map: Vec<String>,
    /// Only restore these backups: a Schedule's name or a BackupJob's name, or
    /// `NAMESPACE/NAME` (repeatable); every one when unset.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Database restores drop the databases and tables they replace (restoring over an
    /// existing database fails otherwise).
    #[arg(long)]
    pub clean: bool,
    /// Minutes each restore waits for packs in an archive storage class, whose restore the
    /// agent requests; without it such a restore fails at once naming them.
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(1..=20160))]
    pub archive_wait: Option<u32>,
    /// Following the RestoreRequests.
    #[command(flatten)]
    pub follow: FollowFlags,
    /// How the agent pod that reads the catalogs runs.
    #[command(flatten)]
    pub agent: AgentFlags,
}

/// How a created object is followed.
#[derive(Debug, Args, Clone)]
pub struct FollowFlags {
    /// Return once the object is created, without following it.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up following after this many seconds (the object goes on); exit code 3.
    #[arg(long, default_value_t = 6 * 3600, value_name = "SECONDS")]
    pub timeout: u64,
}

/// Settings of the agent pod that reads a repository.
#[derive(Debug, Args, Clone)]
pub struct AgentFlags {
    /// Image of the agent pod; when unset, the one the operator runs (its Deployment's
    /// `HORT_AGENT_IMAGE` in `--operator-namespace`, if you may read it), else the chart's
    /// default for this release.
    #[arg(long, env = "HORT_AGENT_IMAGE")]
    pub agent_image: Option<String>,
    /// Namespace of the Hort operator, whose Deployment names the agent image.
    #[arg(long, default_value = "hort-system")]
    pub operator_namespace: String,
    /// Seconds to wait for the agent pod to start.
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    pub start_timeout: u64,
}
