//! What every command shares: the repository opened from the global arguments, where output
//! goes, and the report for the operator.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use hort_protocol::report::{self, Report};
use hort_protocol::{BytesPerSecond, Strategy, env};

use super::CliError;
use super::args::GlobalArgs;
use super::tenant;
use crate::progress::Mode;
use hort_engine::backend::group;
use hort_engine::backend::throttle::{Limits, Throttle};
use hort_engine::backup_lock::BackupLock;
use hort_engine::location::{self, S3Defaults};
use hort_engine::repository::{IndexedRepository, Repository};

/// The global arguments and the output mode of a run, and the bandwidth limits every
/// repository it opens shares.
pub(super) struct Context {
    pub(super) global: GlobalArgs,
    pub(super) mode: Mode,
    pub(super) throttle: Throttle,
}

impl Context {
    /// The context of a run with `global` arguments, printing in `mode`.
    pub(super) fn new(global: GlobalArgs, mode: Mode) -> Self {
        let throttle = Throttle::new(Limits {
            upload: global.limit_upload.map(BytesPerSecond::get),
            download: global.limit_download.map(BytesPerSecond::get),
        });
        Self { global, mode, throttle }
    }

    /// Logs how long the bandwidth limits held this run's transfers back, if they did.
    pub(super) fn log_throttling(&self) {
        for (direction, counted) in [
            ("upload", self.throttle.uploaded()),
            ("download", self.throttle.downloaded()),
        ] {
            if !counted.waited.is_zero() {
                tracing::info!(
                    direction,
                    bytes = counted.bytes,
                    waited_seconds = counted.waited.as_secs_f64(),
                    "the bandwidth limit held transfers back"
                );
            }
        }
    }

    pub(super) fn json(&self) -> bool {
        self.global.json || !std::io::stdout().is_terminal()
    }

    /// `--tenant`'s namespace, if given.
    fn tenant(&self) -> Result<Option<hort_protocol::tenant::Namespace>, CliError> {
        let g = &self.global;
        Ok(tenant::namespace(
            g.tenant.as_deref(),
            g.tenant_root_secret_file.as_deref(),
        )?)
    }

    /// The locations of the repository: `--repo`, inside `--tenant`'s prefix if given.
    fn locations(&self) -> Result<std::borrow::Cow<'_, [String]>, CliError> {
        Ok(match self.tenant()? {
            Some(namespace) => tenant::locations(&self.global.repo, &namespace)?.into(),
            None => self.global.repo.as_slice().into(),
        })
    }

    pub(super) fn backend(&self) -> Result<Arc<dyn hort_engine::backend::Backend>, CliError> {
        Ok(location::open(
            &self.locations()?,
            self.group_options(),
            &self.s3(),
            &self.throttle,
        )?)
    }

    /// The targets as a `mirror` group, also when there is only one (for `resync`, which
    /// copies every file to every target: under another strategy that would defeat it).
    pub(super) fn group(&self) -> Result<group::TargetGroup, CliError> {
        if self.global.strategy != Strategy::Mirror {
            return Err(CliError::Usage(format!(
                "resync copies every file to every target, which only --strategy mirror asks for (this group is {})",
                self.global.strategy.as_str()
            )));
        }
        Ok(location::open_group(
            &self.locations()?,
            self.group_options(),
            &self.s3(),
            &self.throttle,
        )?)
    }

    fn group_options(&self) -> location::GroupOptions<'_> {
        location::GroupOptions {
            strategy: self.global.strategy.into(),
            weights: &self.global.weights,
            min_healthy: self.global.min_healthy_targets,
        }
    }

    pub(super) fn s3(&self) -> S3Defaults {
        let g = &self.global;
        S3Defaults {
            endpoint: g.s3_endpoint.clone(),
            region: g.s3_region.clone(),
            path_style: g.s3_path_style,
            access_key_id: g.s3_access_key_id.clone(),
            secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
        }
    }

    pub(super) fn password(&self) -> Result<Vec<u8>, CliError> {
        if let Some(namespace) = self.tenant()? {
            let g = &self.global;
            return Ok(tenant::password(
                &namespace,
                g.password_file.as_deref(),
                g.tenant_root_secret_file.as_deref(),
            )?);
        }
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
        match std::env::var_os(env::PASSWORD) {
            Some(p) => Ok(p.into_encoded_bytes()),
            None => Err(CliError::Usage(format!(
                "no password: set {} or {}",
                env::PASSWORD,
                env::PASSWORD_FILE
            ))),
        }
    }

    pub(super) fn open(&self) -> Result<Repository, CliError> {
        Ok(self.spooling(Repository::open(self.backend()?, &self.password()?)?))
    }

    /// Applies `--spool-dir`.
    pub(super) fn spooling(&self, repo: Repository) -> Repository {
        match &self.global.spool_dir {
            Some(dir) => repo.with_spool_dir(dir.clone()),
            None => repo,
        }
    }

    /// `--archive-wait`: how long a restore waits for packs restored from an archive class.
    pub(super) fn archive_wait(&self) -> std::time::Duration {
        self.global.archive_wait.to_std().unwrap_or_default()
    }

    pub(super) fn open_indexed(&self) -> Result<IndexedRepository, CliError> {
        Ok(self.open()?.load_index()?)
    }

    /// Opens the repository for a backup: takes the backup lock, then loads the index.
    pub(super) fn open_for_backup(&self) -> Result<(IndexedRepository, BackupLock), CliError> {
        let repo = self.open()?;
        let lock = BackupLock::acquire(&repo)?;
        Ok((repo.load_index()?, lock))
    }

    /// Prints one JSON value as a line on stdout.
    pub(super) fn print_json(&self, value: &impl serde::Serialize) {
        if let Ok(line) = serde_json::to_string(value) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }
}

/// Writes a command's report for the operator to the termination log:
/// `HORT_TERMINATION_LOG` if set, else the kubelet's path if it exists (in a pod).
pub(super) fn write_report<R: Report>(report: &R) {
    write_message(&report::encode(report));
}

/// Where reports go: `HORT_TERMINATION_LOG` if set, else the kubelet's path if it exists.
fn report_path() -> Option<PathBuf> {
    match std::env::var_os(env::TERMINATION_LOG) {
        Some(path) => Some(PathBuf::from(path)),
        None if std::path::Path::new(env::TERMINATION_MESSAGE_PATH).exists() => {
            Some(PathBuf::from(env::TERMINATION_MESSAGE_PATH))
        }
        None => None,
    }
}

/// The report this run wrote (see [`write_report`]), if it wrote one of this type.
pub(super) fn written_report<R: Report>() -> Option<R> {
    let text = std::fs::read_to_string(report_path()?).ok()?;
    report::decode(&text).ok()
}

/// Writes a termination message made by the protocol crate (see [`write_report`]).
pub(super) fn write_message(message: &str) {
    let Some(path) = report_path() else {
        return;
    };
    if let Err(e) = std::fs::write(&path, message) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the report");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use hort_engine::backend::{Backend, FileKind};

    use super::*;
    use crate::cli::Cli;

    fn context(args: &[&str]) -> Context {
        let cli = Cli::try_parse_from(args).unwrap();
        Context::new(cli.global, Mode::Quiet)
    }

    #[test]
    fn the_limits_wrap_every_repository_the_run_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let repo = format!("{},{}", a.display(), b.display());
        let ctx = context(&[
            "hort-agent",
            "--repo",
            &repo,
            "--strategy",
            "mirror",
            "--limit-upload",
            "500Mi",
            "--limit-download",
            "1Gi",
            "snapshots",
        ]);
        let limits = ctx.throttle.limits();
        let rate = |n: u64| std::num::NonZeroU64::new(n);
        assert_eq!((limits.upload, limits.download), (rate(500 << 20), rate(1 << 30)));
        let backend = ctx.backend().unwrap();
        backend.write(FileKind::Index, "i", &[0; 1000]).unwrap();
        backend.read(FileKind::Index, "i").unwrap();
        ctx.group().unwrap().write(FileKind::Index, "j", &[0; 10]).unwrap();
        assert_eq!(ctx.throttle.uploaded().bytes, 2 * 1000 + 2 * 10, "each target's copy");
        assert_eq!(ctx.throttle.downloaded().bytes, 1000);

        let unlimited = context(&["hort-agent", "--repo", &repo, "snapshots"]);
        assert_eq!(unlimited.throttle.limits(), Limits::default());
        let refused = Cli::try_parse_from(["hort-agent", "--limit-upload", "20MB", "snapshots"]).unwrap_err();
        assert!(
            refused.to_string().contains("`20MB`: expected bytes per second"),
            "{refused}"
        );
    }
}
