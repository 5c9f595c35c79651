//! The arguments of `hort-agent`'s commands. The operator's commands (`hort_protocol::AgentCommand`)
//! render to these; the tests in `super::protocol_tests` parse every one of them back.

use std::path::PathBuf;

use clap::Args;
use hort_protocol::{
    BytesPerSecond, DatabaseKind, DatabaseTls, Overwrite, Period, SqlAssertion, Strategy, TlsMode, env,
};

use super::CliError;
use crate::database::{Connection, Password};
use hort_engine::keyfile::KdfParams;
use hort_engine::retention::{self, Policy};

/// The arguments every command takes. `Debug` leaves out the password and the S3 secret key.
#[derive(Args)]
pub(super) struct GlobalArgs {
    /// Repository location(s): a path, `s3://bucket/prefix[?endpoint=URL&region=R&path-style=BOOL]`;
    /// several (comma-separated or repeated) form a storage group.
    #[arg(
        long = "repo",
        short = 'r',
        env = env::REPOSITORY,
        value_delimiter = ',',
        global = true
    )]
    pub(super) repo: Vec<String>,
    /// How a storage group distributes data.
    #[arg(long, env = env::STRATEGY, value_enum, default_value = "spread", global = true)]
    pub(super) strategy: Strategy,
    /// Weights of the group's targets for `spread` (comma-separated, default 1 each).
    #[arg(long, env = env::WEIGHTS, value_delimiter = ',', global = true)]
    pub(super) weights: Vec<u32>,
    /// `mirror`: how many targets must take each write (the others are resynced later).
    #[arg(long, env = env::MIN_HEALTHY_TARGETS, default_value_t = 1, global = true)]
    pub(super) min_healthy_targets: usize,
    /// S3 endpoint URL for S3-compatible servers.
    #[arg(long, env = "HORT_S3_ENDPOINT", global = true)]
    pub(super) s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "HORT_S3_REGION", default_value = "us-east-1", global = true)]
    pub(super) s3_region: String,
    /// Path-style S3 addressing (`endpoint/bucket/key`).
    #[arg(long, env = "HORT_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub(super) s3_path_style: bool,
    /// S3 access key id (never taken from instance metadata).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true, global = true)]
    pub(super) s3_access_key_id: Option<String>,
    /// File holding the repository password (a trailing newline is ignored); else the
    /// password is read from `HORT_PASSWORD`. Secrets are never taken from arguments, which
    /// other users of the machine can read; the S3 secret key comes from
    /// `AWS_SECRET_ACCESS_KEY` or a target's own variable.
    #[arg(long, env = env::PASSWORD_FILE, global = true)]
    pub(super) password_file: Option<PathBuf>,
    /// Open this namespace's own repository inside a storage group shared through
    /// `hort-store`: `tenants/<namespace>` is added to every location of `--repo`, and the
    /// password is derived from the group's tenant root secret, read from
    /// `HORT_TENANT_ROOT_SECRET` or `--tenant-root-secret-file` (then no password may be given).
    #[arg(long, env = env::TENANT, global = true)]
    pub(super) tenant: Option<String>,
    /// File holding the group's tenant root secret (with `--tenant`), byte for byte: a trailing
    /// newline is part of the secret.
    #[arg(long, env = env::TENANT_ROOT_SECRET_FILE, global = true)]
    pub(super) tenant_root_secret_file: Option<PathBuf>,
    /// Directory for packs while they fill and upload (a few times the pack size; default
    /// the system temporary directory, `$TMPDIR` or `/tmp`).
    #[arg(long, env = env::SPOOL_DIR, global = true)]
    pub(super) spool_dir: Option<PathBuf>,
    /// How long a restore waits for packs in an archive storage class (S3 `GLACIER`,
    /// `DEEP_ARCHIVE`) whose restore it requested, e.g. `12h`; `0` (the default) requests
    /// their restore and fails at once, naming them.
    #[arg(long, env = env::ARCHIVE_WAIT, default_value = "0", value_parser = hort_engine::retention::parse_duration, global = true)]
    pub(super) archive_wait: chrono::Duration,
    /// Bytes per second this run may send to the repository, e.g. `20Mi`, `500Ki`, `10M`:
    /// the files as stored (after compression and encryption), all threads and all targets
    /// together (a `mirror` group's copies count each); no limit if absent.
    #[arg(long, env = env::LIMIT_UPLOAD, value_name = "RATE", global = true)]
    pub(super) limit_upload: Option<BytesPerSecond>,
    /// Bytes per second this run may receive from the repository, e.g. `50Mi`, counted like
    /// `--limit-upload`; no limit if absent.
    #[arg(long, env = env::LIMIT_DOWNLOAD, value_name = "RATE", global = true)]
    pub(super) limit_download: Option<BytesPerSecond>,
    /// JSON output even on a terminal (the default when stdout is not a terminal).
    #[arg(long, global = true)]
    pub(super) json: bool,
    /// No progress output.
    #[arg(long, short = 'q', global = true)]
    pub(super) quiet: bool,
}

impl std::fmt::Debug for GlobalArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalArgs")
            .field("repo", &self.repo)
            .field("strategy", &self.strategy)
            .field("weights", &self.weights)
            .field("min_healthy_targets", &self.min_healthy_targets)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_path_style", &self.s3_path_style)
            .field("s3_access_key_id", &self.s3_access_key_id)
            .field("password_file", &self.password_file)
            .field("tenant", &self.tenant)
            .field("tenant_root_secret_file", &self.tenant_root_secret_file)
            .field("spool_dir", &self.spool_dir)
            .field("archive_wait", &self.archive_wait)
            .field("limit_upload", &self.limit_upload)
            .field("limit_download", &self.limit_download)
            .field("json", &self.json)
            .field("quiet", &self.quiet)
            .finish()
    }
}

#[derive(Debug, Args)]
pub(super) struct PruneArgs {
    /// What to keep.
    #[command(flatten)]
    pub(super) keep: KeepArgs,
    /// Condemned packs are deleted by a later prune once this much time has passed; must be
    /// longer than any backup runs.
    #[arg(long, default_value = "24h", value_parser = retention::parse_duration)]
    pub(super) grace: chrono::Duration,
    /// Only collect garbage; forget no snapshot.
    #[arg(long)]
    pub(super) gc_only: bool,
    /// Show what would happen; change nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
}

#[derive(Debug, Args)]
pub(super) struct ForgetArgs {
    /// What to keep.
    #[command(flatten)]
    pub(super) keep: KeepArgs,
    /// Consider only snapshots carrying this tag (repeatable: all of them); others are kept.
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// Also collect garbage: condemn packs no snapshot needs, delete those condemned earlier.
    #[arg(long)]
    pub(super) prune: bool,
    /// With `--prune`: condemned packs are deleted once this much time has passed.
    #[arg(long, default_value = "24h", value_parser = retention::parse_duration)]
    pub(super) grace: chrono::Duration,
    /// Show what would happen; change nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
}

/// A retention policy on the command line.
#[derive(Debug, Args)]
pub(super) struct KeepArgs {
    /// Keep the newest N snapshots.
    #[arg(long)]
    pub(super) keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long)]
    pub(super) keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long)]
    pub(super) keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N weeks.
    #[arg(long)]
    pub(super) keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long)]
    pub(super) keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long)]
    pub(super) keep_yearly: Option<u32>,
    /// Keep every snapshot younger than this period before the newest one: units y, mo
    /// (months), w, d, h, e.g. 1y6mo, 14d, 36h.
    #[arg(long)]
    pub(super) keep_within: Option<Period>,
}

impl KeepArgs {
    pub(super) fn policy(&self) -> Policy {
        let count = |n: Option<u32>| n.map_or(0, |n| n as usize);
        Policy {
            last: count(self.keep_last),
            hourly: count(self.keep_hourly),
            daily: count(self.keep_daily),
            weekly: count(self.keep_weekly),
            monthly: count(self.keep_monthly),
            yearly: count(self.keep_yearly),
            within: self.keep_within,
        }
    }
}

/// A database server; the user and password come from the environment only.
#[derive(Debug, Args)]
pub(super) struct DbServerArgs {
    /// Database server: host name or address, or a Unix socket (a path starting with `/`).
    #[arg(long = "host")]
    pub(super) host: String,
    /// Port (default 5432 for PostgreSQL, 3306 for MariaDB).
    #[arg(long)]
    pub(super) port: Option<u16>,
    /// Database user.
    #[arg(long = "db-user", env = env::DB_USER)]
    pub(super) user: String,
    /// File holding the database password (else `HORT_DB_PASSWORD`; neither: no password).
    #[arg(long = "db-password-file", env = env::DB_PASSWORD_FILE)]
    pub(super) password_file: Option<PathBuf>,
    /// TLS: `disable`, `prefer` (TLS when the server offers it, certificate unchecked) or
    /// `verify-full` (TLS or nothing; the certificate must chain to --tls-ca and name --host).
    #[arg(long = "tls-mode", value_enum, default_value_t = TlsMode::Prefer)]
    pub(super) tls_mode: TlsMode,
    /// PEM file of the CA that signed the server's certificate (needed by `verify-full`).
    #[arg(long = "tls-ca")]
    pub(super) tls_ca: Option<PathBuf>,
}

impl DbServerArgs {
    pub(super) fn connection(&self, kind: DatabaseKind) -> Result<Connection, CliError> {
        let password = match &self.password_file {
            Some(file) => Some(Password::from_file(file).map_err(|e| {
                CliError::Usage(format!(
                    "database password file (HORT_DB_PASSWORD_FILE) {}: {e}",
                    file.display()
                ))
            })?),
            None => std::env::var(env::DB_PASSWORD).ok().map(Password::new),
        };
        if self.tls_mode == TlsMode::VerifyFull && self.tls_ca.is_none() {
            return Err(CliError::Usage(
                "--tls-mode verify-full needs --tls-ca FILE: the PEM file of the CA that signed the server's certificate"
                    .into(),
            ));
        }
        if let Some(ca) = self.tls_ca.as_ref().filter(|ca| !ca.is_file()) {
            return Err(CliError::Usage(format!("--tls-ca {}: no such file", ca.display())));
        }
        Ok(Connection {
            host: self.host.clone(),
            port: self.port.unwrap_or(kind.default_port()),
            user: self.user.clone(),
            password,
            bin_dir: None,
            tls: DatabaseTls {
                mode: self.tls_mode,
                ca_file: self.tls_ca.as_ref().map(|ca| ca.to_string_lossy().into_owned()),
            },
        })
    }
}

#[derive(Debug, Args)]
pub(super) struct DbBackupArgs {
    /// The server.
    #[command(flatten)]
    pub(super) server: DbServerArgs,
    /// Database to back up (repeatable); every database (but templates and system ones) if absent.
    #[arg(long = "database")]
    pub(super) databases: Vec<String>,
    /// Leave out roles (PostgreSQL) or users and grants (MariaDB), e.g. for a user that may
    /// not read them.
    #[arg(long)]
    pub(super) skip_globals: bool,
    /// Tag for the snapshot (repeatable); `hort.dev/source=postgres|mariadb` is always added.
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// zstd level (0 = store raw); the repository's default if absent.
    #[arg(long)]
    pub(super) compression: Option<i32>,
}

#[derive(Debug, Args)]
pub(super) struct DbRestoreArgs {
    /// Snapshot id (or unique prefix) or `latest` (with `--tag`: the newest carrying every tag).
    pub(super) snapshot: String,
    /// The server to restore into.
    #[command(flatten)]
    pub(super) server: DbServerArgs,
    /// Database to restore, optionally under a new name (repeatable); all of the backup,
    /// with roles or users, if absent.
    #[arg(long = "database", value_name = "FROM[=TO]")]
    pub(super) databases: Vec<String>,
    /// Restore only this table (repeatable; PostgreSQL also takes `schema.table`) of the one
    /// `--database`, into an existing database `TO` (or `FROM`).
    #[arg(long = "table")]
    pub(super) tables: Vec<String>,
    /// Drop what the restore replaces; without it existing objects are an error.
    #[arg(long)]
    pub(super) clean: bool,
    /// With `latest`: the newest snapshot having all these tags (repeatable).
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct VerifyRestoreArgs {
    /// Snapshot id (or unique prefix) or `latest` (with `--tag`: the newest carrying every tag).
    pub(super) snapshot: String,
    /// Empty (or absent) directory to restore into; emptied again at the end unless `--keep`.
    #[arg(long)]
    pub(super) scratch: PathBuf,
    /// With `latest`: the newest snapshot having all these tags (repeatable).
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// Leave the restored files in the scratch directory, for a check that runs afterwards.
    #[arg(long)]
    pub(super) keep: bool,
}

#[derive(Debug, Args)]
pub(super) struct DbVerifyArgs {
    /// Snapshot id (or unique prefix) or `latest` (with `--tag`: the newest carrying every tag).
    pub(super) snapshot: String,
    /// The throwaway server to restore into (empty: it must hold none of the backup's tables).
    #[command(flatten)]
    pub(super) server: DbServerArgs,
    /// With `latest`: the newest snapshot having all these tags (repeatable).
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// A query that must return one row of one true value after the restore, as JSON
    /// `{"name": "...", "database": "...", "sql": "..."}` (repeatable).
    #[arg(long = "assertion", value_name = "JSON", value_parser = parse_assertion)]
    pub(super) assertions: Vec<SqlAssertion>,
    /// How long to wait for the server to accept connections (it may still be starting), e.g.
    /// `2m`; `0`: try once.
    #[arg(long, default_value = "2m", value_parser = retention::parse_duration)]
    pub(super) server_wait: chrono::Duration,
}

/// An `--assertion` that is not the JSON of an assertion.
#[derive(Debug, thiserror::Error)]
#[error("expected {{\"name\": ..., \"database\": ..., \"sql\": ...}}: {0}")]
pub(super) struct NotAnAssertion(serde_json::Error);

/// Parses `--assertion JSON`.
fn parse_assertion(text: &str) -> Result<SqlAssertion, NotAnAssertion> {
    serde_json::from_str(text).map_err(NotAnAssertion)
}

/// A `--read-data-subset` that is not a whole percentage from 1 to 100 (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}`: expected a percentage from 1% to 100%, e.g. 10%")]
pub(super) struct NotAPercentage(String);

/// Parses the `N%` of `--read-data-subset`: a whole percentage from 1 to 100.
pub(super) fn parse_percent(text: &str) -> Result<u8, NotAPercentage> {
    let number = text.strip_suffix('%').unwrap_or(text);
    match number.parse::<u8>() {
        Ok(percent @ 1..=100) => Ok(percent),
        _ => Err(NotAPercentage(text.to_owned())),
    }
}

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// Argon2id memory for the key file, KiB.
    #[arg(long, default_value_t = KdfParams::default().memory_kib)]
    pub(super) kdf_memory_kib: u32,
    /// Argon2id passes for the key file.
    #[arg(long, default_value_t = KdfParams::default().iterations)]
    pub(super) kdf_iterations: u32,
}

#[derive(Debug, Args)]
pub(super) struct BackupArgs {
    /// Directory to back up.
    #[arg(required_unless_present_any = ["stdin", "stream_command"], conflicts_with_all = ["stdin", "stream_command"])]
    pub(super) dir: Option<PathBuf>,
    /// Back up stdin as one named stream.
    #[arg(long, requires = "stream_name")]
    pub(super) stdin: bool,
    /// Name of the stdin stream.
    #[arg(long)]
    pub(super) stream_name: Option<String>,
    /// A stream from a command's stdout, as `NAME=COMMAND` (run by `sh -c`; repeatable). A
    /// command that exits non-zero fails the backup.
    #[arg(long = "stream-command", value_name = "NAME=COMMAND")]
    pub(super) stream_command: Vec<String>,
    /// Tag for the snapshot (repeatable).
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// Back up only this path below DIR, and what lies below it (repeatable).
    #[arg(long = "path", requires = "dir")]
    pub(super) paths: Vec<PathBuf>,
    /// Leave out entries matching this pattern, with `.gitignore` rules (`*.log` at any depth,
    /// `cache/` directories only, `/tmp` anchored at DIR, `**/*.tmp`, `!keep.log`; repeatable).
    #[arg(long = "exclude", value_name = "GLOB", requires = "dir")]
    pub(super) exclude: Vec<String>,
    /// zstd level (0 = store raw); the repository's default if absent.
    #[arg(long)]
    pub(super) compression: Option<i32>,
    /// Read every file even if it looks unchanged since the parent snapshot.
    #[arg(long)]
    pub(super) force: bool,
    /// Host name to record.
    #[arg(long)]
    pub(super) host: Option<String>,
    /// Time to record as the snapshot's (RFC 3339, e.g. 2026-05-31T02:30:00Z); now if absent.
    /// Retention rules count from it.
    #[arg(long)]
    pub(super) time: Option<chrono::DateTime<chrono::Utc>>,
    /// Worker threads for compression and encryption (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub(super) threads: usize,
}

#[derive(Debug, Args)]
pub(super) struct RestoreArgs {
    /// Snapshot id (or unique prefix) or `latest`.
    pub(super) snapshot: String,
    /// Directory to restore into.
    #[arg(long, required_unless_present = "stream", conflicts_with = "stream")]
    pub(super) target: Option<PathBuf>,
    /// Restore only this path (relative to the snapshot root; repeatable).
    #[arg(long = "path")]
    pub(super) paths: Vec<PathBuf>,
    /// Leave out entries matching this pattern, with `.gitignore` rules as for `backup` (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub(super) exclude: Vec<String>,
    /// What to do with files that already exist in the target.
    #[arg(long, value_enum, default_value = "always")]
    pub(super) overwrite: Overwrite,
    /// With `latest`: the newest snapshot having all these tags (repeatable).
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// Write this stream to stdout.
    #[arg(long)]
    pub(super) stream: Option<String>,
    /// Restore setuid and setgid bits as recorded (by default they are cleared).
    #[arg(long)]
    pub(super) keep_setid: bool,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::Cli;

    #[test]
    fn secrets_are_not_taken_from_arguments() {
        for flag in ["--password", "--s3-secret-access-key"] {
            let refused = Cli::try_parse_from(["hort-agent", flag, "hunter2", "snapshots"]);
            assert!(refused.is_err(), "{flag} must not exist");
        }
        let cli = Cli::try_parse_from(["hort-agent", "--s3-access-key-id", "AKIDEXAMPLE", "snapshots"]).unwrap();
        assert!(format!("{cli:?}").contains("AKIDEXAMPLE"));
    }

    #[test]
    fn wrong_values_are_refused_with_what_to_write() {
        let refused = |args: &[&str]| Cli::try_parse_from(args).unwrap_err().to_string();
        let percent = refused(&["hort-agent", "verify", "--read-data-subset", "0%"]);
        assert!(
            percent.contains("`0%`: expected a percentage from 1% to 100%, e.g. 10%"),
            "{percent}"
        );
        assert_eq!(super::parse_percent("10%").unwrap(), 10);
        assert_eq!(super::parse_percent("100").unwrap(), 100);
        let wait = refused(&["hort-agent", "--archive-wait", "5x", "snapshots"]);
        assert!(wait.contains("`5x`: unknown unit `x` (use m, h, d, w, y)"), "{wait}");
        let assertion = super::parse_assertion("{\"name\": 1}").unwrap_err().to_string();
        assert!(
            assertion.starts_with(r#"expected {"name": ..., "database": ..., "sql": ...}: invalid type"#),
            "{assertion}"
        );
    }
}
