//! The `hort-agent` command line: parsing, wiring and output. The work is done by the
//! library modules.
//!
//! Exit codes (also in `FORMAT.md`, "Command line"):
//! 0 success; 1 error; 2 usage error; 3 backup done but some entries could not be read;
//! 4 damaged or missing data found (verify, restore); 10 no repository at the location;
//! 12 wrong password.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::archiver::{self, BackupError, BackupOptions, StreamBackup, StreamInput};
use crate::backend::group::Strategy;
use crate::backend::{BackendError, FileKind};
use crate::database::{self, Connection, DatabaseError, Password, mariadb, postgres};
use crate::filter::Selection;
use crate::id::Id;
use crate::keyfile::KdfParams;
use crate::location::{self, S3Defaults};
use crate::pack::BlobKind;
use crate::progress::{Counters, Mode, Reporter};
use crate::prune::{self, PruneOptions, PruneReport};
use crate::repository::{IndexedRepository, Repository, RepositoryError};
use crate::restorer::{self, Overwrite, RestoreError, RestoreOptions};
use crate::retention::{self, Policy};
use crate::snapshot::{Snapshot, Source};
use crate::snapshot_streams::SnapshotStreams;
use crate::tree::NodeKind;
use crate::verify;

/// Success.
pub const EXIT_OK: i32 = 0;
/// Any error not listed below.
pub const EXIT_ERROR: i32 = 1;
/// A backup finished but some entries could not be read (the snapshot lacks them).
pub const EXIT_INCOMPLETE: i32 = 3;
/// Damaged or missing data was found.
pub const EXIT_DAMAGED: i32 = 4;
/// There is no repository at the location.
pub const EXIT_NO_REPOSITORY: i32 = 10;
/// The password opens no key file.
pub const EXIT_WRONG_PASSWORD: i32 = 12;

/// Hort's backup agent: deduplicating, compressing, encrypting backups.
#[derive(Debug, Parser)]
#[command(name = "hort-agent", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Repository location(s): a path, `s3://bucket/prefix[?endpoint=URL&region=R&path-style=BOOL]`;
    /// several (comma-separated or repeated) form a storage group.
    #[arg(
        long = "repo",
        short = 'r',
        env = "HORT_REPOSITORY",
        value_delimiter = ',',
        global = true
    )]
    repo: Vec<String>,
    /// How a storage group distributes data.
    #[arg(long, env = "HORT_STRATEGY", value_enum, default_value = "spread", global = true)]
    strategy: Strategy,
    /// Weights of the group's targets for `spread` (comma-separated, default 1 each).
    #[arg(long, env = "HORT_WEIGHTS", value_delimiter = ',', global = true)]
    weights: Vec<u32>,
    /// S3 endpoint URL for S3-compatible servers.
    #[arg(long, env = "HORT_S3_ENDPOINT", global = true)]
    s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "HORT_S3_REGION", default_value = "us-east-1", global = true)]
    s3_region: String,
    /// Path-style S3 addressing (`endpoint/bucket/key`).
    #[arg(long, env = "HORT_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    s3_path_style: bool,
    /// S3 access key id (never taken from instance metadata).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true, global = true)]
    s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true, global = true)]
    s3_secret_access_key: Option<String>,
    /// Repository password (prefer the environment variable or a file).
    #[arg(long, env = "HORT_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    /// File holding the repository password (a trailing newline is ignored).
    #[arg(long, env = "HORT_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Directory for packs while they fill and upload (a few times the pack size; default
    /// the system temporary directory, `$TMPDIR` or `/tmp`).
    #[arg(long, env = "HORT_SPOOL_DIR", global = true)]
    spool_dir: Option<PathBuf>,
    /// JSON output even on a terminal (the default when stdout is not a terminal).
    #[arg(long, global = true)]
    json: bool,
    /// No progress output.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Create a repository.
    Init(InitArgs),
    /// Check every target (reachable, writable); with `--init`, create the repository if
    /// there is none. Reports per target, in `--repo` order.
    Check {
        /// Create the repository if no target holds one.
        #[arg(long)]
        init: bool,
        /// Key derivation costs when creating.
        #[command(flatten)]
        kdf: InitArgs,
    },
    /// Back up a directory, or named streams from stdin or commands.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots,
    /// List the files or streams of a snapshot.
    Ls {
        /// Snapshot id (or unique prefix) or `latest`.
        snapshot: String,
    },
    /// Restore a snapshot into a directory, or one stream to stdout.
    Restore(RestoreArgs),
    /// Check the repository's structure; with `--read-data` also every byte.
    Verify {
        /// Read, decrypt and hash every pack.
        #[arg(long)]
        read_data: bool,
    },
    /// Forget snapshots by retention policy and collect garbage (two-phase, lock-free).
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
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// What to keep.
    #[command(flatten)]
    keep: KeepArgs,
    /// Condemned packs are deleted by a later prune once this much time has passed; must be
    /// longer than any backup runs.
    #[arg(long, default_value = "24h", value_parser = retention::parse_duration)]
    grace: chrono::Duration,
    /// Only collect garbage; forget no snapshot.
    #[arg(long)]
    gc_only: bool,
    /// Show what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct ForgetArgs {
    /// What to keep.
    #[command(flatten)]
    keep: KeepArgs,
    /// Consider only snapshots carrying this tag (repeatable: all of them); others are kept.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Also collect garbage: condemn packs no snapshot needs, delete those condemned earlier.
    #[arg(long)]
    prune: bool,
    /// With `--prune`: condemned packs are deleted once this much time has passed.
    #[arg(long, default_value = "24h", value_parser = retention::parse_duration)]
    grace: chrono::Duration,
    /// Show what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// A retention policy on the command line.
#[derive(Debug, Args)]
struct KeepArgs {
    /// Keep the newest N snapshots.
    #[arg(long, default_value_t = 0)]
    keep_last: usize,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long, default_value_t = 0)]
    keep_hourly: usize,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long, default_value_t = 0)]
    keep_daily: usize,
    /// Keep the newest snapshot of each of the last N weeks.
    #[arg(long, default_value_t = 0)]
    keep_weekly: usize,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long, default_value_t = 0)]
    keep_monthly: usize,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long, default_value_t = 0)]
    keep_yearly: usize,
    /// Keep every snapshot younger than this (e.g. 7d, 12h) relative to the newest one.
    #[arg(long, value_parser = retention::parse_duration)]
    keep_within: Option<chrono::Duration>,
}

impl KeepArgs {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
        }
    }
}

/// A database server; the user and password come from the environment only.
#[derive(Debug, Args)]
struct DbServerArgs {
    /// Database server: host name or address, or a Unix socket (a path starting with `/`).
    #[arg(long = "host")]
    host: String,
    /// Port (default 5432 for PostgreSQL, 3306 for MariaDB).
    #[arg(long)]
    port: Option<u16>,
    /// Database user.
    #[arg(long = "db-user", env = "HORT_DB_USER")]
    user: String,
    /// File holding the database password (else `HORT_DB_PASSWORD`; neither: no password).
    #[arg(long = "db-password-file", env = "HORT_DB_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
}

impl DbServerArgs {
    fn connection(&self, kind: DbKind) -> Result<Connection, CliError> {
        let password = match &self.password_file {
            Some(file) => Some(Password::from_file(file).map_err(|e| {
                CliError::Usage(format!(
                    "database password file (HORT_DB_PASSWORD_FILE) {}: {e}",
                    file.display()
                ))
            })?),
            None => std::env::var("HORT_DB_PASSWORD").ok().map(Password::new),
        };
        Ok(Connection {
            host: self.host.clone(),
            port: self.port.unwrap_or(kind.default_port()),
            user: self.user.clone(),
            password,
            bin_dir: None,
        })
    }
}

#[derive(Debug, Args)]
struct DbBackupArgs {
    /// The server.
    #[command(flatten)]
    server: DbServerArgs,
    /// Database to back up (repeatable); every database (but templates and system ones) if absent.
    #[arg(long = "database")]
    databases: Vec<String>,
    /// Leave out roles (PostgreSQL) or users and grants (MariaDB), e.g. for a user that may
    /// not read them.
    #[arg(long)]
    skip_globals: bool,
    /// Tables to dump in parallel (the BackupJob's `parallelJobs`); the agent dumps one at a
    /// time (`pg_dump -j` needs a spool directory) and warns when asked for more.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Tag for the snapshot (repeatable); `hort.dev/source=postgres|mariadb` is always added.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// zstd level (0 = store raw); the repository's default if absent.
    #[arg(long)]
    compression: Option<i32>,
}

#[derive(Debug, Args)]
struct DbRestoreArgs {
    /// Snapshot id (or unique prefix) or `latest` (with `--tag`: the newest carrying every tag).
    snapshot: String,
    /// The server to restore into.
    #[command(flatten)]
    server: DbServerArgs,
    /// Database to restore, optionally under a new name (repeatable); all of the backup,
    /// with roles or users, if absent.
    #[arg(long = "database", value_name = "FROM[=TO]")]
    databases: Vec<String>,
    /// Restore only this table (repeatable; PostgreSQL also takes `schema.table`) of the one
    /// `--database`, into an existing database `TO` (or `FROM`).
    #[arg(long = "table")]
    tables: Vec<String>,
    /// Drop what the restore replaces; without it existing objects are an error.
    #[arg(long)]
    clean: bool,
    /// With `latest`: the newest snapshot having all these tags (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

/// The database kinds the agent backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbKind {
    Postgres,
    MariaDb,
}

impl DbKind {
    fn default_port(self) -> u16 {
        match self {
            DbKind::Postgres => 5432,
            DbKind::MariaDb => 3306,
        }
    }

    /// The value of the `hort.dev/source` tag.
    fn tag(self) -> &'static str {
        match self {
            DbKind::Postgres => "postgres",
            DbKind::MariaDb => "mariadb",
        }
    }

    fn manifest_stream(self) -> &'static str {
        match self {
            DbKind::Postgres => postgres::MANIFEST_STREAM,
            DbKind::MariaDb => mariadb::MANIFEST_STREAM,
        }
    }
}

impl std::fmt::Display for DbKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbKind::Postgres => "PostgreSQL",
            DbKind::MariaDb => "MariaDB",
        })
    }
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Argon2id memory for the key file, KiB.
    #[arg(long, default_value_t = KdfParams::default().memory_kib)]
    kdf_memory_kib: u32,
    /// Argon2id passes for the key file.
    #[arg(long, default_value_t = KdfParams::default().iterations)]
    kdf_iterations: u32,
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// Directory to back up.
    #[arg(required_unless_present_any = ["stdin", "stream_command"], conflicts_with_all = ["stdin", "stream_command"])]
    dir: Option<PathBuf>,
    /// Back up stdin as one named stream.
    #[arg(long, requires = "stream_name")]
    stdin: bool,
    /// Name of the stdin stream.
    #[arg(long)]
    stream_name: Option<String>,
    /// A stream from a command's stdout, as `NAME=COMMAND` (run by `sh -c`; repeatable). A
    /// command that exits non-zero fails the backup.
    #[arg(long = "stream-command", value_name = "NAME=COMMAND")]
    stream_command: Vec<String>,
    /// Tag for the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Back up only this path below DIR, and what lies below it (repeatable).
    #[arg(long = "path", requires = "dir")]
    paths: Vec<PathBuf>,
    /// Leave out entries matching this glob (`*.log`, `cache/**`; repeatable).
    #[arg(long = "exclude", value_name = "GLOB", requires = "dir")]
    exclude: Vec<String>,
    /// zstd level (0 = store raw); the repository's default if absent.
    #[arg(long)]
    compression: Option<i32>,
    /// Read every file even if it looks unchanged since the parent snapshot.
    #[arg(long)]
    force: bool,
    /// Host name to record.
    #[arg(long)]
    host: Option<String>,
    /// Worker threads for compression and encryption (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// Snapshot id (or unique prefix) or `latest`.
    snapshot: String,
    /// Directory to restore into.
    #[arg(long, required_unless_present = "stream", conflicts_with = "stream")]
    target: Option<PathBuf>,
    /// Restore only this path (relative to the snapshot root; repeatable).
    #[arg(long = "path")]
    paths: Vec<PathBuf>,
    /// Leave out entries matching this glob (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// What to do with files that already exist in the target.
    #[arg(long, value_enum, default_value = "always")]
    overwrite: Overwrite,
    /// With `latest`: the newest snapshot having all these tags (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Write this stream to stdout.
    #[arg(long)]
    stream: Option<String>,
}

/// A failed command and its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Repository-level failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Backend configuration or access failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Backup failure.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// Restore failure.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A database backup or restore failed.
    #[error("{context}: {source}")]
    Database {
        /// What was being done (server, snapshot).
        context: String,
        /// Why it failed.
        source: DatabaseError,
    },
    /// A usage problem found after parsing.
    #[error("{0}")]
    Usage(String),
    /// The command finished but found damage or could not do everything.
    #[error("{message}")]
    Finished {
        /// Summary.
        message: String,
        /// Exit code.
        code: i32,
    },
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        let repo_code = |e: &RepositoryError| match e {
            RepositoryError::NotInitialized { .. } => EXIT_NO_REPOSITORY,
            RepositoryError::WrongPassword => EXIT_WRONG_PASSWORD,
            RepositoryError::BlobNotInIndex { .. }
            | RepositoryError::PackMissing { .. }
            | RepositoryError::BlobCorrupt { .. }
            | RepositoryError::PackUnreadable { .. }
            | RepositoryError::Corrupt { .. } => EXIT_DAMAGED,
            _ => EXIT_ERROR,
        };
        match self {
            CliError::Repository(e) => repo_code(e),
            CliError::Backup(BackupError::Repository(e)) => repo_code(e),
            CliError::Restore(RestoreError::Repository(e) | RestoreError::Stream { source: e, .. }) => repo_code(e),
            CliError::Finished { code, .. } => *code,
            _ => EXIT_ERROR,
        }
    }
}

struct Context {
    global: GlobalArgs,
    mode: Mode,
}

impl Context {
    fn json(&self) -> bool {
        self.global.json || !std::io::stdout().is_terminal()
    }

    fn backend(&self) -> Result<Arc<dyn crate::backend::Backend>, CliError> {
        Ok(location::open(
            &self.global.repo,
            self.global.strategy,
            &self.global.weights,
            &self.s3(),
        )?)
    }

    fn s3(&self) -> S3Defaults {
        let g = &self.global;
        S3Defaults {
            endpoint: g.s3_endpoint.clone(),
            region: g.s3_region.clone(),
            path_style: g.s3_path_style,
            access_key_id: g.s3_access_key_id.clone(),
            secret_access_key: g.s3_secret_access_key.clone(),
        }
    }

    fn password(&self) -> Result<Vec<u8>, CliError> {
        if let Some(file) = &self.global.password_file {
            let mut bytes =
                std::fs::read(file).map_err(|e| CliError::Usage(format!("password file {}: {e}", file.display())))?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            return Ok(bytes);
        }
        match &self.global.password {
            Some(p) => Ok(p.clone().into_bytes()),
            None => Err(CliError::Usage(
                "no password: set HORT_PASSWORD or HORT_PASSWORD_FILE".into(),
            )),
        }
    }

    fn open(&self) -> Result<Repository, CliError> {
        Ok(self.spooling(Repository::open(self.backend()?, &self.password()?)?))
    }

    /// Applies `--spool-dir`.
    fn spooling(&self, repo: Repository) -> Repository {
        match &self.global.spool_dir {
            Some(dir) => repo.with_spool_dir(dir.clone()),
            None => repo,
        }
    }

    fn open_indexed(&self) -> Result<IndexedRepository, CliError> {
        Ok(self.open()?.load_index()?)
    }

    fn print_json(&self, value: &serde_json::Value) {
        let _ = writeln!(std::io::stdout().lock(), "{value}");
    }
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
pub fn main() -> i32 {
    let cli = Cli::parse();
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
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("hort-agent: {e}");
            e.exit_code()
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
    let ctx = Context {
        global: cli.global,
        mode,
    };
    match cli.command {
        Commands::Init(args) => init(&ctx, &args),
        Commands::Check { init, kdf } => check(&ctx, init, &kdf),
        Commands::Backup(args) => backup(&ctx, args),
        Commands::Snapshots => snapshots(&ctx),
        Commands::Ls { snapshot } => ls(&ctx, &snapshot),
        Commands::Restore(args) => restore(&ctx, &args),
        Commands::Verify { read_data } => verify_cmd(&ctx, read_data),
        Commands::Prune(args) => prune_cmd(&ctx, &args),
        Commands::Forget(args) => forget(&ctx, &args),
        Commands::BackupPostgres(args) => backup_database(&ctx, DbKind::Postgres, &args),
        Commands::BackupMariadb(args) => backup_database(&ctx, DbKind::MariaDb, &args),
        Commands::RestorePostgres(args) => restore_database(&ctx, DbKind::Postgres, &args),
        Commands::RestoreMariadb(args) => restore_database(&ctx, DbKind::MariaDb, &args),
        Commands::Stats => stats(&ctx),
    }
}

/// Where Kubernetes reads a container's termination message.
const TERMINATION_LOG: &str = "/dev/termination-log";

/// Writes a command's report (camelCase JSON, as the operator parses it) to the termination
/// log: `HORT_TERMINATION_LOG` if set, else `/dev/termination-log` if it exists (in a pod).
fn write_report(report: &serde_json::Value) {
    let path = match std::env::var_os("HORT_TERMINATION_LOG") {
        Some(path) => PathBuf::from(path),
        None if std::path::Path::new(TERMINATION_LOG).exists() => PathBuf::from(TERMINATION_LOG),
        None => return,
    };
    if let Err(e) = std::fs::write(&path, report.to_string()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the report");
    }
}

/// Probes one target: reachable (listing works) and writable (a probe file can be written,
/// read back and deleted); for a directory also the bytes its files take and the bytes free
/// on its file system.
fn probe_target(spec: &str, s3: &S3Defaults) -> serde_json::Value {
    use crate::backend::FileKind;
    let backend = match location::open_location(spec, s3) {
        Ok(backend) => backend,
        Err(e) => return json!({"reachable": false, "writable": false, "error": e.to_string()}),
    };
    if let Err(e) = backend.list(FileKind::Config) {
        return json!({"reachable": false, "writable": false, "error": e.to_string()});
    }
    let mut name = [0u8; 16];
    let probe = crate::crypto::random_bytes(&mut name)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let name = hex::encode(name);
            let data = b"hort probe";
            backend.write(FileKind::Probe, &name, data).map_err(|e| e.to_string())?;
            let back = backend.read(FileKind::Probe, &name).map_err(|e| e.to_string());
            backend.delete(FileKind::Probe, &name).map_err(|e| e.to_string())?;
            if back? != data {
                Err("the probe file read back differs".to_owned())
            } else {
                Ok(())
            }
        });
    let mut report = match probe {
        Ok(()) => json!({"reachable": true, "writable": true}),
        Err(e) => json!({"reachable": true, "writable": false, "error": e}),
    };
    if !spec.starts_with("s3://") {
        let dir = std::path::Path::new(spec.strip_prefix("file:").unwrap_or(spec));
        let used = Selection::default().size_below(dir, &std::sync::atomic::AtomicBool::new(false));
        report["bytesUsed"] = json!(used);
        if let Ok(fs) = rustix::fs::statvfs(dir) {
            report["bytesFree"] = json!(fs.f_bavail.saturating_mul(fs.f_frsize));
        }
    }
    report
}

fn check(ctx: &Context, init: bool, kdf: &InitArgs) -> Result<(), CliError> {
    let s3 = ctx.s3();
    let targets: Vec<serde_json::Value> = ctx.global.repo.iter().map(|spec| probe_target(spec, &s3)).collect();
    match open_or_init(ctx, init, kdf) {
        Ok((repo, created)) => {
            let report = json!({"repositoryId": repo.config().id, "created": created, "targets": targets});
            write_report(&report);
            ctx.print_json(&report);
            Ok(())
        }
        // The targets' findings are reported even so, with why the repository could not be
        // opened: the operator shows each target's error instead of only the last log line.
        Err(e) => {
            let report = json!({"created": false, "targets": targets, "error": e.to_string()});
            write_report(&report);
            ctx.print_json(&report);
            Err(e)
        }
    }
}

/// Opens the repository, or with `init` creates it when no target holds one; says whether it
/// was created.
fn open_or_init(ctx: &Context, init: bool, kdf: &InitArgs) -> Result<(Repository, bool), CliError> {
    let backend = ctx.backend()?;
    let password = ctx.password()?;
    let exists = !backend.list(crate::backend::FileKind::Config)?.is_empty();
    let created = init && !exists;
    let repo = if created {
        let params = KdfParams {
            memory_kib: kdf.kdf_memory_kib,
            iterations: kdf.kdf_iterations,
            parallelism: 1,
        };
        Repository::init(backend, &password, params)?
    } else {
        Repository::open(backend, &password)?
    };
    Ok((ctx.spooling(repo), created))
}

fn init(ctx: &Context, args: &InitArgs) -> Result<(), CliError> {
    let kdf = KdfParams {
        memory_kib: args.kdf_memory_kib,
        iterations: args.kdf_iterations,
        parallelism: 1,
    };
    let backend = ctx.backend()?;
    let location = backend.describe();
    let repo = Repository::init(backend, &ctx.password()?, kdf)?;
    if ctx.json() {
        ctx.print_json(&json!({"type": "init", "repository": location, "id": repo.config().id}));
    } else {
        println!("created repository {} at {location}", repo.config().id.short());
    }
    Ok(())
}

fn stream_from_command(spec: &str) -> Result<StreamInput, CliError> {
    let (name, command) = spec
        .split_once('=')
        .ok_or_else(|| CliError::Usage(format!("--stream-command `{spec}`: expected NAME=COMMAND")))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Usage(format!("cannot run `{command}`: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CliError::Usage("no stdout pipe".into()))?;
    let command = command.to_owned();
    Ok(StreamInput {
        name: name.to_owned(),
        reader: Box::new(stdout),
        complete: Some(Box::new(move || match child.wait() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("`{command}` failed ({status}); the stream is not saved")),
            Err(e) => Err(format!("`{command}`: {e}")),
        })),
    })
}

fn backup(ctx: &Context, args: BackupArgs) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let options = BackupOptions {
        tags: args.tags,
        compression_level: args.compression,
        hostname: args.host,
        parent: None,
        force: args.force,
        threads: args.threads,
        selection: Selection::new(&args.paths, &args.exclude),
    };
    let counters = Arc::new(Counters::default());
    let reporter = Reporter::start(ctx.mode, "backup", counters.clone(), Duration::from_secs(1));
    let result = if let Some(dir) = &args.dir {
        archiver::backup_tree(&repo, dir, &options, counters)
    } else {
        let mut inputs = Vec::new();
        if args.stdin {
            let name = args.stream_name.clone().unwrap_or_default();
            inputs.push(StreamInput {
                name,
                reader: Box::new(std::io::stdin()),
                complete: None,
            });
        }
        for spec in &args.stream_command {
            inputs.push(stream_from_command(spec)?);
        }
        archiver::backup_streams(&repo, inputs, &options, counters)
    };
    drop(reporter);
    let (id, snapshot) = result?;
    report_backup(ctx, &id, &snapshot)
}

/// Writes a backup's report and summary; an incomplete backup is an error.
fn report_backup(ctx: &Context, id: &Id, snapshot: &Snapshot) -> Result<(), CliError> {
    let s = &snapshot.stats;
    write_report(&json!({"snapshotId": id, "bytesRead": s.bytes, "bytesNew": s.new_bytes,
                         "bytesStored": s.stored_bytes, "files": s.files, "durationSeconds": s.duration_secs}));
    if ctx.json() {
        ctx.print_json(&json!({"type": "summary", "snapshot": id, "stats": s}));
    } else {
        println!(
            "snapshot {} saved: {} files, {} dirs ({} unchanged), {:.1} MiB read, {:.1} MiB new, {:.1} MiB stored, {:.1} s",
            id.short(),
            s.files,
            s.dirs,
            s.files_unchanged,
            s.bytes as f64 / 1048576.0,
            s.new_bytes as f64 / 1048576.0,
            s.stored_bytes as f64 / 1048576.0,
            s.duration_secs
        );
    }
    if s.errors > 0 {
        return Err(CliError::Finished {
            message: format!(
                "{} entries could not be read (see the log); the snapshot lacks them",
                s.errors
            ),
            code: EXIT_INCOMPLETE,
        });
    }
    Ok(())
}

fn snapshots(ctx: &Context) -> Result<(), CliError> {
    let repo = ctx.open()?;
    let list = repo.snapshots()?;
    if ctx.json() {
        let items: Vec<_> = list
            .iter()
            .map(|(id, s)| {
                json!({"id": id, "time": s.time, "hostname": s.hostname, "source": s.source, "tags": s.tags,
                       "streams": s.streams.iter().map(|st| json!({"name": st.name, "size": st.size})).collect::<Vec<_>>(),
                       "stats": s.stats})
            })
            .collect();
        ctx.print_json(&serde_json::Value::Array(items));
    } else {
        println!("{:<10} {:<20} {:<16} {:<30} tags", "id", "time", "host", "source");
        for (id, s) in &list {
            let source = match &s.source {
                Source::Tree { path } => path.clone(),
                Source::Streams => {
                    format!(
                        "streams: {}",
                        s.streams.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(",")
                    )
                }
            };
            println!(
                "{:<10} {:<20} {:<16} {:<30} {}",
                id.short(),
                s.time.format("%Y-%m-%d %H:%M:%S"),
                s.hostname,
                source,
                s.tags.join(",")
            );
        }
    }
    Ok(())
}

fn ls(ctx: &Context, spec: &str) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let (_, snapshot) = repo.find_snapshot(spec)?;
    let mut out = std::io::stdout().lock();
    let json = ctx.json();
    for stream in &snapshot.streams {
        let line = if json {
            json!({"type": "stream", "name": stream.name, "size": stream.size}).to_string()
        } else {
            format!("stream {} ({} bytes)", stream.name, stream.size)
        };
        let _ = writeln!(out, "{line}");
    }
    let Some(root) = snapshot.tree else { return Ok(()) };
    let mut stack = vec![(PathBuf::from("/"), root)];
    while let Some((dir, id)) = stack.pop() {
        let tree = repo.load_tree(&id)?;
        for node in tree.nodes.iter().rev() {
            let path = dir.join(node.os_name());
            if let Some(sub) = node.subtree {
                stack.push((path.clone(), sub));
            }
            let line = if json {
                json!({"type": node.kind, "path": path.to_string_lossy(), "size": node.size, "mode": format!("{:o}", node.mode),
                       "uid": node.uid, "gid": node.gid, "mtime_ns": node.mtime_ns, "target": node.target})
                .to_string()
            } else {
                let suffix = match (&node.kind, &node.target) {
                    (NodeKind::Symlink, Some(t)) => format!(" -> {t}"),
                    _ => String::new(),
                };
                format!("{:o} {:>12} {}{suffix}", node.mode, node.size, path.display())
            };
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(())
}

fn restore(ctx: &Context, args: &RestoreArgs) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let (id, snapshot) = repo.find_tagged_snapshot(&args.snapshot, &args.tags)?;
    let counters = Arc::new(Counters::default());
    if let Some(name) = &args.stream {
        let mut stdout = std::io::stdout().lock();
        let started = std::time::Instant::now();
        let bytes = restorer::restore_stream(&repo, &snapshot, &id, name, &mut stdout, &counters)?;
        tracing::info!(stream = %name, bytes, "stream restored");
        write_report(&json!({"snapshotId": id, "bytesRestored": bytes, "files": 1,
                             "durationSeconds": started.elapsed().as_secs_f64()}));
        return Ok(());
    }
    let target = args
        .target
        .clone()
        .ok_or_else(|| CliError::Usage("--target or --stream is required".into()))?;
    let started = std::time::Instant::now();
    let reporter = Reporter::start(ctx.mode, "restore", counters.clone(), Duration::from_secs(1));
    let options = RestoreOptions {
        selection: Selection::new(&args.paths, &args.exclude),
        overwrite: args.overwrite,
        threads: 0,
    };
    let report = restorer::restore_tree(&repo, &snapshot, &id, &target, &options, counters);
    drop(reporter);
    let report = report?;
    if ctx.json() {
        let failures: Vec<_> = report
            .failures
            .iter()
            .map(|f| json!({"path": f.path.to_string_lossy(), "error": f.error}))
            .collect();
        ctx.print_json(
            &json!({"type": "summary", "snapshot": id, "files": report.files, "bytes": report.bytes,
                               "failures": failures, "skipped": report.skipped}),
        );
    } else {
        println!(
            "restored {} files, {:.1} MiB from snapshot {}",
            report.files,
            report.bytes as f64 / 1048576.0,
            id.short()
        );
        for f in &report.failures {
            println!("NOT restored: {}: {}", f.path.display(), f.error);
        }
    }
    if report.failures.is_empty() {
        write_report(
            &json!({"snapshotId": id, "bytesRestored": report.bytes, "files": report.files,
                             "durationSeconds": started.elapsed().as_secs_f64()}),
        );
    } else {
        return Err(CliError::Finished {
            message: format!(
                "{} entries could not be restored (damaged or missing data)",
                report.failures.len()
            ),
            code: EXIT_DAMAGED,
        });
    }
    Ok(())
}

fn verify_cmd(ctx: &Context, read_data: bool) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let report = verify::verify(&repo, read_data)?;
    if ctx.json() {
        ctx.print_json(
            &json!({"type": "verify", "ok": report.is_ok(), "snapshots": report.snapshots,
                               "packs_read": report.packs_read, "blobs_read": report.blobs_read,
                               "problems": report.problems, "notes": report.notes}),
        );
    } else {
        for note in &report.notes {
            println!("note: {note}");
        }
        for problem in &report.problems {
            println!("PROBLEM: {problem}");
        }
        println!(
            "{} snapshots checked, {} packs and {} blobs read: {}",
            report.snapshots,
            report.packs_read,
            report.blobs_read,
            if report.is_ok() { "no problems" } else { "DAMAGE FOUND" }
        );
    }
    if !report.is_ok() {
        return Err(CliError::Finished {
            message: format!("{} problems found", report.problems.len()),
            code: EXIT_DAMAGED,
        });
    }
    Ok(())
}

fn prune_cmd(ctx: &Context, args: &PruneArgs) -> Result<(), CliError> {
    let policy = args.keep.policy();
    if policy.is_empty() && !args.gc_only {
        return Err(CliError::Usage(
            "no --keep-* option given: that would forget every snapshot (use --gc-only to only collect garbage)".into(),
        ));
    }
    let repo = ctx.open()?;
    let decisions = if args.gc_only {
        Vec::new()
    } else {
        prune::forget(&repo, &policy, args.dry_run)?
    };
    let report = prune::collect_garbage(
        repo,
        PruneOptions {
            grace: args.grace,
            dry_run: args.dry_run,
        },
    )?;
    print_retention(ctx, &decisions, Some(&report), args.dry_run);
    Ok(())
}

/// Prints what retention decided for each snapshot and what garbage collection did: a JSON
/// summary, or a line per snapshot and one for the packs.
fn print_retention(ctx: &Context, decisions: &[retention::Decision], gc: Option<&PruneReport>, dry_run: bool) {
    if ctx.json() {
        let kept: Vec<_> = decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| json!({"id": d.id, "reasons": d.reasons}))
            .collect();
        let forgotten: Vec<String> = decisions.iter().filter(|d| !d.keep).map(|d| d.id.to_hex()).collect();
        ctx.print_json(
            &json!({"type": "summary", "dry_run": dry_run, "kept": kept, "forgotten": forgotten,
                               "gc": gc}),
        );
        return;
    }
    for d in decisions {
        let verdict = if d.keep {
            format!("keep ({})", d.reasons.join(", "))
        } else {
            "forget".to_owned()
        };
        println!("{} {verdict}", d.id.short());
    }
    if let Some(report) = gc {
        println!(
            "{} packs in use, {} repacked into {} ({} bytes copied), {} condemned now, {} deleted, {} indexed again, \
             {} waiting for the grace period{}",
            report.live_packs,
            report.repacked.len(),
            report.repack_new_packs.len(),
            report.repacked_bytes,
            report.condemned.len(),
            report.deleted.len(),
            report.reindexed.len(),
            report.pending,
            if dry_run { " (dry run: nothing changed)" } else { "" }
        );
    }
}

fn stats(ctx: &Context) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let snapshots = repo.snapshots()?;
    let (mut data_blobs, mut tree_blobs, mut raw, mut stored) = (0u64, 0u64, 0u64, 0u64);
    for l in repo.index().locations() {
        match l.entry.kind {
            BlobKind::Data => data_blobs += 1,
            BlobKind::Tree => tree_blobs += 1,
        }
        raw += u64::from(l.entry.raw_length);
        stored += u64::from(l.entry.length);
    }
    let logical: u64 = snapshots.iter().map(|(_, s)| s.stats.bytes).sum();
    let packs = repo.index().packs().count();
    let ids: Vec<Id> = snapshots.iter().map(|(id, _)| *id).collect();
    if ctx.json() {
        ctx.print_json(
            &json!({"type": "stats", "snapshots": ids.len(), "packs": packs, "data_blobs": data_blobs,
                               "tree_blobs": tree_blobs, "raw_bytes": raw, "stored_bytes": stored,
                               "logical_bytes": logical}),
        );
    } else {
        println!("snapshots:      {}", ids.len());
        println!("packs:          {packs}");
        println!("blobs:          {data_blobs} data, {tree_blobs} tree");
        println!(
            "logical size:   {:.1} MiB (sum over snapshots)",
            logical as f64 / 1048576.0
        );
        println!("unique data:    {:.1} MiB", raw as f64 / 1048576.0);
        println!("stored:         {:.1} MiB", stored as f64 / 1048576.0);
    }
    Ok(())
}

fn forget(ctx: &Context, args: &ForgetArgs) -> Result<(), CliError> {
    let policy = args.keep.policy();
    if policy.is_empty() {
        return Err(CliError::Usage(
            "no --keep-* option given: that would forget every snapshot with the given tags".into(),
        ));
    }
    let repo = ctx.open()?;
    let considered: Vec<(Id, Snapshot)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| args.tags.iter().all(|t| s.tags.contains(t)))
        .collect();
    let decisions = if args.tags.is_empty() {
        retention::apply(&considered, &policy)
    } else {
        // Tagged snapshots form one series (one schedule's backups): each run comes from a
        // different pod, so the host names differ, and the databases dumped may change.
        // Retention groups by host and source; give every snapshot the same ones.
        let series: Vec<(Id, Snapshot)> = considered
            .into_iter()
            .map(|(id, s)| {
                let s = Snapshot {
                    hostname: String::new(),
                    source: Source::Streams,
                    streams: Vec::new(),
                    ..s
                };
                (id, s)
            })
            .collect();
        retention::apply(&series, &policy)
    };
    let removed: Vec<&retention::Decision> = decisions.iter().filter(|d| !d.keep).collect();
    if !args.dry_run {
        for d in &removed {
            repo.backend().delete(FileKind::Snapshot, &d.id.to_hex())?;
            tracing::info!(snapshot = %d.id, "snapshot forgotten");
        }
    }
    let kept = decisions.len() - removed.len();
    let gc = if args.prune {
        Some(prune::collect_garbage(
            repo,
            PruneOptions {
                grace: args.grace,
                dry_run: args.dry_run,
            },
        )?)
    } else {
        None
    };
    if !args.dry_run {
        write_report(&json!({"snapshotsKept": kept, "snapshotsRemoved": removed.len()}));
    }
    print_retention(ctx, &decisions, gc.as_ref(), args.dry_run);
    Ok(())
}

fn backup_database(ctx: &Context, kind: DbKind, args: &DbBackupArgs) -> Result<(), CliError> {
    let conn = args.server.connection(kind)?;
    let repo = ctx.open_indexed()?;
    let mut tags = args.tags.clone();
    tags.push(format!("hort.dev/source={}", kind.tag()));
    if args.jobs > 1 {
        tracing::warn!(
            jobs = args.jobs,
            "--jobs: parallel dumps are not supported; dumping one table at a time"
        );
    }
    let options = BackupOptions {
        tags,
        compression_level: args.compression,
        ..BackupOptions::default()
    };
    let counters = Arc::new(Counters::default());
    let reporter = Reporter::start(ctx.mode, "backup", counters.clone(), Duration::from_secs(1));
    let mut backup = StreamBackup::start(&repo, &options, counters);
    let dumped = match kind {
        DbKind::Postgres => postgres::backup(
            &conn,
            &postgres::PgBackupOptions {
                databases: args.databases.clone(),
                skip_globals: args.skip_globals,
                maintenance_db: None,
            },
            &mut backup,
        )
        .map(|m| m.databases.len()),
        DbKind::MariaDb => mariadb::backup(
            &conn,
            &mariadb::MariaDbBackupOptions {
                databases: args.databases.clone(),
                skip_users: args.skip_globals,
            },
            &mut backup,
        )
        .map(|m| m.databases.len()),
    };
    let result = dumped
        .map_err(|source| CliError::Database {
            context: format!(
                "backup of {kind} at {}:{} failed (no snapshot was written)",
                conn.host, conn.port
            ),
            source,
        })
        .and_then(|databases| {
            tracing::info!(databases, "dumps stored");
            Ok(backup.finish()?)
        });
    drop(reporter);
    let (id, snapshot) = result?;
    report_backup(ctx, &id, &snapshot)
}

/// Parses `--database FROM[=TO]`.
fn database_mapping(spec: &str) -> Result<(String, Option<String>), CliError> {
    let (from, to) = match spec.split_once('=') {
        Some((from, to)) => (from, Some(to)),
        None => (spec, None),
    };
    if from.is_empty() || to.is_some_and(str::is_empty) {
        return Err(CliError::Usage(format!(
            "--database `{spec}`: expected FROM or FROM=TO"
        )));
    }
    Ok((from.to_owned(), to.map(str::to_owned)))
}

/// The restores that `--database` and `--table` ask for.
fn restore_scopes(args: &DbRestoreArgs) -> Result<Vec<database::RestoreScope>, CliError> {
    let mappings = args
        .databases
        .iter()
        .map(|d| database_mapping(d))
        .collect::<Result<Vec<_>, _>>()?;
    if !args.tables.is_empty() {
        let [(from, to)] = mappings.as_slice() else {
            return Err(CliError::Usage(format!(
                "--table needs exactly one --database (the one the tables are in), got {}",
                mappings.len()
            )));
        };
        return Ok(vec![database::RestoreScope::Tables {
            database: from.clone(),
            tables: args.tables.clone(),
            into: to.clone(),
        }]);
    }
    if mappings.is_empty() {
        return Ok(vec![database::RestoreScope::Server]);
    }
    Ok(mappings
        .into_iter()
        .map(|(name, rename)| database::RestoreScope::Database { name, rename })
        .collect())
}

/// At most this many bytes of a report reach the pod status.
const REPORT_LIMIT: usize = 4096;

/// Adds `rowCounts` to `report`, as many as fit into [`REPORT_LIMIT`] (the pod status keeps no
/// more); returns how many.
fn add_row_counts(report: &mut serde_json::Value, counts: &std::collections::BTreeMap<String, u64>) -> usize {
    report["rowCounts"] = json!({});
    let mut room = REPORT_LIMIT.saturating_sub(report.to_string().len());
    let mut fitted = serde_json::Map::new();
    for (table, rows) in counts {
        // `"table":rows,` (the first entry needs no comma, which leaves a byte to spare).
        let entry = json!(table).to_string().len() + rows.to_string().len() + 2;
        if entry > room {
            break;
        }
        room -= entry;
        fitted.insert(table.clone(), json!(rows));
    }
    let n = fitted.len();
    report["rowCounts"] = serde_json::Value::Object(fitted);
    n
}

fn restore_database(ctx: &Context, kind: DbKind, args: &DbRestoreArgs) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let conn = args.server.connection(kind)?;
    let scopes = restore_scopes(args)?;
    let repo = Arc::new(ctx.open_indexed()?);
    let (id, snapshot) = repo.find_tagged_snapshot(&args.snapshot, &args.tags)?;
    let manifest = kind.manifest_stream();
    if !snapshot.streams.iter().any(|s| s.name == manifest) {
        return Err(CliError::Usage(format!(
            "snapshot {} is not a {kind} backup (it has no stream `{manifest}`)",
            id.short()
        )));
    }
    let counters = Arc::new(Counters::default());
    let source = SnapshotStreams::new(repo.clone(), snapshot, id, counters.clone());
    let failed = |source: DatabaseError| CliError::Database {
        context: format!(
            "restore of snapshot {} into {kind} at {}:{}",
            id.short(),
            conn.host,
            conn.port
        ),
        source,
    };
    // Every database asked for must be in the backup before anything changes.
    let available: Vec<String> = match kind {
        DbKind::Postgres => postgres::manifest(&source).map(|m| m.databases.into_iter().map(|d| d.name).collect()),
        DbKind::MariaDb => mariadb::manifest(&source).map(|m| m.databases.into_iter().map(|d| d.name).collect()),
    }
    .map_err(failed)?;
    for scope in &scopes {
        let wanted = match scope {
            database::RestoreScope::Database { name, .. } => name,
            database::RestoreScope::Tables { database, .. } => database,
            database::RestoreScope::Server => continue,
        };
        if !available.contains(wanted) {
            return Err(CliError::Usage(format!(
                "database `{wanted}` is not in snapshot {} (it has: {})",
                id.short(),
                available.join(", ")
            )));
        }
    }
    let reporter = Reporter::start(ctx.mode, "restore", counters.clone(), Duration::from_secs(1));
    let mut row_counts = std::collections::BTreeMap::new();
    let mut databases = Vec::new();
    let mut result = Ok(());
    for scope in scopes {
        let options = database::RestoreOptions {
            scope,
            clean: args.clean,
        };
        let restored = match kind {
            DbKind::Postgres => postgres::restore(&conn, &source, &options),
            DbKind::MariaDb => mariadb::restore(&conn, &source, &options),
        };
        match restored {
            Ok(report) => {
                for t in report.tables {
                    row_counts.insert(format!("{}.{}", t.database, t.table), t.restored);
                }
                databases.extend(report.databases);
            }
            Err(e) => {
                let mut error = failed(e);
                if let (CliError::Database { context, .. }, false) = (&mut error, databases.is_empty()) {
                    context.push_str(&format!(" (restored before the failure: {})", databases.join(", ")));
                }
                result = Err(error);
                break;
            }
        }
    }
    drop(reporter);
    result?;
    let bytes = counters.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let duration = started.elapsed().as_secs_f64();
    let mut report = json!({"snapshotId": id, "bytesRestored": bytes, "files": source.opened(),
                            "durationSeconds": duration});
    let reported = add_row_counts(&mut report, &row_counts);
    if reported < row_counts.len() {
        tracing::warn!(
            tables = row_counts.len(),
            reported,
            "too many tables for the termination message; the summary line has every row count"
        );
    }
    write_report(&report);
    if ctx.json() {
        ctx.print_json(
            &json!({"type": "summary", "snapshot": id, "databases": databases, "bytes": bytes,
                               "streams": source.opened(), "row_counts": row_counts}),
        );
    } else {
        println!(
            "restored {} from snapshot {}: {} tables, {:.1} MiB read, {:.1} s",
            databases.join(", "),
            id.short(),
            row_counts.len(),
            bytes as f64 / 1048576.0,
            duration
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(args: &[&str]) -> Result<Vec<database::RestoreScope>, String> {
        let mut all = vec![
            "hort-agent",
            "restore-postgres",
            "latest",
            "--host",
            "h",
            "--db-user",
            "u",
        ];
        all.extend_from_slice(args);
        let Commands::RestorePostgres(parsed) = Cli::try_parse_from(all).unwrap().command else {
            unreachable!("parsed as restore-postgres")
        };
        restore_scopes(&parsed).map_err(|e| e.to_string())
    }

    #[test]
    fn database_and_table_options_become_restore_scopes() {
        use database::RestoreScope;
        assert_eq!(scopes(&[]), Ok(vec![RestoreScope::Server]));
        assert_eq!(
            scopes(&["--database", "app=copy", "--database", "billing"]),
            Ok(vec![
                RestoreScope::Database {
                    name: "app".into(),
                    rename: Some("copy".into())
                },
                RestoreScope::Database {
                    name: "billing".into(),
                    rename: None
                },
            ])
        );
        assert_eq!(
            scopes(&["--database", "app", "--table", "orders", "--table", "public.items"]),
            Ok(vec![RestoreScope::Tables {
                database: "app".into(),
                tables: vec!["orders".into(), "public.items".into()],
                into: None
            }])
        );
        let err = scopes(&["--table", "orders"]).unwrap_err();
        assert!(err.contains("--table needs exactly one --database"), "{err}");
        let err = scopes(&["--database", "app=", "--database", "b"]).unwrap_err();
        assert!(err.contains("--database `app=`: expected FROM or FROM=TO"), "{err}");
    }

    #[test]
    fn row_counts_are_cut_to_the_termination_message_limit() {
        let base = json!({"snapshotId": "ab".repeat(32), "bytesRestored": 1, "files": 2, "durationSeconds": 0.5});
        let few: std::collections::BTreeMap<String, u64> = [("shop.public.orders".to_owned(), 42)].into();
        let mut report = base.clone();
        assert_eq!(add_row_counts(&mut report, &few), 1);
        assert_eq!(report["rowCounts"]["shop.public.orders"], 42);
        let many: std::collections::BTreeMap<String, u64> = (0..1000)
            .map(|i| (format!("shop.public.table_{i:04}"), i * 1000))
            .collect();
        let mut report = base;
        let n = add_row_counts(&mut report, &many);
        let text = report.to_string();
        assert!(n > 50 && n < 1000, "{n}");
        assert!(
            text.len() <= REPORT_LIMIT && text.len() > REPORT_LIMIT - 40,
            "{}",
            text.len()
        );
        assert_eq!(report["rowCounts"].as_object().unwrap().len(), n);
    }
}
