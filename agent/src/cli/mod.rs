//! The `hort-agent` command line: parsing, wiring and output. The work is done by the
//! library modules; the contract with the operator (environment, arguments, reports, exit
//! codes) is the `hort-protocol` crate.
//!
//! - [`args`]: the arguments of every command;
//! - [`error`]: a failed command and its exit code;
//! - [`context`]: opening the repository from the global arguments, and printing output;
//! - [`tenant`]: a namespace's own repository inside a shared group (`HORT_TENANT`);
//! - one module per group of commands: [`repository_cmds`] (init, check, resync, stats),
//!   [`browse_cmds`] (snapshots, ls, cat), [`backup_cmd`], [`restore_cmd`], [`retention_cmd`]
//!   (prune, forget), [`database_cmd`] (the PostgreSQL and MariaDB backups and restores),
//!   [`verify_cmds`] (`verify`, `verify-restore`) and [`verify_database_cmd`]
//!   (`verify-restore-postgres|mariadb`): the verifications, which report also when a check failed.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use hort_protocol::{DatabaseKind, ExitCode, env};

mod args;
mod backup_cmd;
mod browse_cmds;
mod catalog_cmds;
mod context;
mod database_cmd;
mod error;
mod key_cmd;
mod repair_cmd;
mod repository_cmds;
mod restore_cmd;
mod retention_cmd;
mod tenant;
mod verify_cmds;
mod verify_database_cmd;

#[cfg(test)]
mod protocol_tests;

pub use error::CliError;

use crate::progress::Mode;
use args::{
    BackupArgs, DbBackupArgs, DbRestoreArgs, DbVerifyArgs, ForgetArgs, GlobalArgs, InitArgs, PruneArgs, RestoreArgs,
    VerifyRestoreArgs,
};
use context::Context;

/// Hort's backup agent: deduplicating, compressing, encrypting backups.
#[derive(Debug, Parser)]
#[command(name = "hort-agent", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Commands,
}

impl Cli {
    /// Whether the command is `backup` (a tree or streams): `main.rs` tunes the allocator
    /// for its chunk buffers.
    pub fn is_backup(&self) -> bool {
        matches!(self.command, Commands::Backup(_))
    }
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Create a repository.
    Init(InitArgs),
    /// Check every target (reachable, writable); with `--init`, create the repository if
    /// there is none. Reports per target, in `--repo` order.
    Check {
        /// Create the repository if every target answers and none holds one.
        #[arg(long)]
        init: bool,
        /// Fail unless the targets hold the repository with this id (hex); never create one.
        #[arg(long, conflicts_with = "init", value_name = "ID")]
        repository_id: Option<String>,
        /// Then copy to each target what the others hold and it lacks (for up to 200 s; a
        /// later check goes on), and report what each still lacks.
        #[arg(long)]
        resync: bool,
        /// First make the repository password the only one that opens the repository: add a
        /// key file for it, unlocked with the password in `HORT_PREVIOUS_PASSWORD`, then
        /// remove the previous password's key file (safe to repeat; see the report's
        /// `keyRotation`).
        #[arg(long)]
        rotate_key: bool,
        /// Also count the repository's snapshots and name the newest (the report's
        /// `snapshots`); reads every snapshot file.
        #[arg(long)]
        snapshots: bool,
        /// Key derivation costs when creating (and of a rotation's new key file).
        #[command(flatten)]
        kdf: InitArgs,
    },
    /// Back up a directory, or named streams from stdin or commands.
    Backup(BackupArgs),
    /// List snapshots (with `--json`: a `hort_protocol::SnapshotList`).
    Snapshots {
        /// Only snapshots carrying all of these tags (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List the files or streams of a snapshot (with `--json`: a `hort_protocol::Listing`).
    Ls {
        /// Snapshot id (or unique prefix) or `latest`.
        snapshot: String,
        /// Only this directory or file and what is below it (relative to the snapshot root),
        /// or the streams with this name or prefix.
        path: Option<String>,
    },
    /// Write one file of a snapshot, or one stream (a database dump), to stdout, byte for byte.
    Cat {
        /// Snapshot id (or unique prefix) or `latest`.
        snapshot: String,
        /// Path of the file below the snapshot root, or the stream's name.
        path: String,
    },
    /// Restore a snapshot into a directory, or one stream to stdout.
    Restore(RestoreArgs),
    /// Copy to each target of the group what the others hold and it lacks, checking each
    /// copy, so that each target alone holds the whole repository (`mirror`).
    Resync {
        /// Only count what each target lacks.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rebuild what can be rebuilt from the data itself.
    #[command(subcommand)]
    Repair(repair_cmd::RepairCommand),
    /// Manage the repository's passwords (key files): rotate by `add`, then `remove`.
    #[command(subcommand)]
    Key(key_cmd::KeyCommand),
    /// Check the repository's structure; with `--read-data` also every byte, with
    /// `--read-data-subset N%` the bytes of a random N% of the packs.
    Verify {
        /// Read, decrypt and hash every pack.
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Read, decrypt and hash a random N% of the packs (at least one), e.g. `10%`.
        #[arg(long, value_name = "N%", value_parser = args::parse_percent)]
        read_data_subset: Option<u8>,
    },
    /// Restore a volume snapshot into an empty scratch directory, compare every entry with the
    /// snapshot (types, permissions, sizes, content hashes, link targets), then empty it.
    VerifyRestore(VerifyRestoreArgs),
    /// Restore every database of a PostgreSQL backup into a throwaway server, check that every
    /// database and table exists with the rows recorded at backup time, run the assertions.
    VerifyRestorePostgres(DbVerifyArgs),
    /// Restore every database of a MariaDB backup into a throwaway server, check that every
    /// database and table exists with the rows recorded at backup time, run the assertions.
    VerifyRestoreMariadb(DbVerifyArgs),
    /// Forget snapshots by retention policy and collect garbage (two-phase; never deletes
    /// what a running backup may use).
    Prune(PruneArgs),
    /// Forget snapshots by retention policy; with `--tag`, only among those carrying every
    /// tag, which count as one series whichever host made them. `--prune` also collects garbage.
    Forget(ForgetArgs),
    /// Back up PostgreSQL databases (`pg_dump` per database, roles from `pg_dumpall`).
    BackupPostgres(DbBackupArgs),
    /// Back up MariaDB/MySQL databases (one consistent `mariadb-dump`, stored per table).
    BackupMariadb(DbBackupArgs),
    /// Restore a PostgreSQL backup: the whole server, databases (optionally renamed) or tables.
    RestorePostgres(DbRestoreArgs),
    /// Restore a MariaDB backup: the whole server, databases (optionally renamed) or tables.
    RestoreMariadb(DbRestoreArgs),
    /// Repository size and deduplication figures.
    Stats,
    /// Hort's own catalog in the repository: store one, show the newest of each namespace.
    #[command(subcommand)]
    Catalog(catalog_cmds::CatalogCommand),
}

/// Ends the process when SIGTERM or SIGINT arrives. In a container the agent is PID 1, which
/// ignores SIGTERM unless it handles it: without this, `kubectl delete pod`,
/// `activeDeadlineSeconds` and node drains would have to wait for SIGKILL. Ending at any moment
/// is safe: a snapshot is written only after all of its data, and an unfinished backup leaves
/// only packs that the next prune collects.
fn exit_on_termination_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let name = if signal == SIGTERM { "SIGTERM" } else { "SIGINT" };
                    eprintln!("hort-agent: stopped by {name}; nothing of this run is recorded as complete");
                    std::process::exit(128 + signal);
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle termination signals"),
    }
}

/// Parses the process arguments, runs the command and returns the exit code.
pub fn main(before_run: impl FnOnce(&Cli)) -> i32 {
    let cli = Cli::parse();
    before_run(&cli);
    // An operator of another release may mean other things by the same arguments: refuse
    // before touching the repository.
    if let Ok(asked) = std::env::var(env::PROTOCOL_VERSION)
        && let Err(why) = hort_protocol::check_version(&asked)
    {
        eprintln!("hort-agent: {why}");
        return ExitCode::ProtocolMismatch.code();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("HORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Log lines go to stderr: coloured on a terminal, plain in a pod's log, JSON when
    // HORT_LOG_FORMAT=json.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("HORT_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    exit_on_termination_signals();
    match run(cli) {
        Ok(()) => ExitCode::Ok.code(),
        Err(e) => {
            eprintln!("hort-agent: {e}");
            e.exit_code().code()
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let mode = if cli.global.quiet {
        Mode::Quiet
    } else if cli.global.json || !std::io::stdout().is_terminal() {
        Mode::Json
    } else if std::io::stderr().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Quiet
    };
    let ctx = Context::new(cli.global, mode);
    let backs_up = matches!(
        cli.command,
        Commands::Backup(_) | Commands::BackupPostgres(_) | Commands::BackupMariadb(_)
    );
    let result = match cli.command {
        Commands::Init(args) => repository_cmds::init(&ctx, &args),
        Commands::Check {
            init,
            repository_id,
            resync,
            rotate_key,
            snapshots,
            kdf,
        } => {
            let asked = repository_cmds::CheckAsked {
                init,
                expected: repository_id.as_deref(),
                resync,
                rotate_key,
                snapshots,
            };
            repository_cmds::check(&ctx, &asked, &kdf)
        }
        Commands::Backup(args) => backup_cmd::backup(&ctx, args),
        Commands::Snapshots { tags } => browse_cmds::snapshots(&ctx, &tags),
        Commands::Ls { snapshot, path } => browse_cmds::ls(&ctx, &snapshot, path.as_deref()),
        Commands::Cat { snapshot, path } => browse_cmds::cat(&ctx, &snapshot, &path),
        Commands::Restore(args) => restore_cmd::restore(&ctx, &args),
        Commands::Repair(command) => repair_cmd::run(&ctx, &command),
        Commands::Key(command) => key_cmd::run(&ctx, &command),
        Commands::Resync { dry_run } => repository_cmds::resync(&ctx, dry_run),
        Commands::Verify {
            read_data,
            read_data_subset,
        } => verify_cmds::verify(&ctx, verify_cmds::packs_to_read(read_data, read_data_subset)),
        Commands::VerifyRestore(args) => verify_cmds::verify_restore(&ctx, &args),
        Commands::VerifyRestorePostgres(args) => verify_database_cmd::verify(&ctx, DatabaseKind::Postgres, &args),
        Commands::VerifyRestoreMariadb(args) => verify_database_cmd::verify(&ctx, DatabaseKind::Mariadb, &args),
        Commands::Prune(args) => retention_cmd::prune(&ctx, &args),
        Commands::Forget(args) => retention_cmd::forget(&ctx, &args),
        Commands::BackupPostgres(args) => database_cmd::backup(&ctx, DatabaseKind::Postgres, &args),
        Commands::BackupMariadb(args) => database_cmd::backup(&ctx, DatabaseKind::Mariadb, &args),
        Commands::RestorePostgres(args) => database_cmd::restore(&ctx, DatabaseKind::Postgres, &args),
        Commands::RestoreMariadb(args) => database_cmd::restore(&ctx, DatabaseKind::Mariadb, &args),
        Commands::Stats => repository_cmds::stats(&ctx),
        Commands::Catalog(command) => catalog_cmds::run(&ctx, &command),
    };
    let result = if backs_up {
        catalog_cmds::after_backup(&ctx, result)
    } else {
        result
    };
    ctx.log_throttling();
    result
}
