//! The agent side of a BackupJob: the arguments an agent pod runs with, the report it leaves
//! in its termination message, and the backoff between attempts.
//!
//! Contract with `hort-agent` (see `docs/agent-protocol.md`):
//! - volume sources are mounted read-only at `/source` and backed up with
//!   `hort-agent backup /source [--path P]... [--exclude GLOB]... --host NAMESPACE/CLAIM --tag T...`
//!   (the host name stays the same from pod to pod, so the agent finds the claim's previous
//!   snapshot and skips unchanged files);
//! - PostgreSQL and MariaDB sources run `hort-agent backup-postgres` / `backup-mariadb` with
//!   `--host`, `--port`, `--database` (repeatable; all when absent), credentials from the
//!   environment (`HORT_DB_USER`, `HORT_DB_PASSWORD`), and `--tag`;
//! - on success the agent writes a [`BackupReport`] as JSON to its termination message.

use std::time::Duration;

use hort_crds::backup_job::{BackupJobSpec, BackupSource, BackupStats};
use hort_crds::common::Progress;
use serde::Deserialize;

use crate::agent_pod::RepositoryAccess;
use crate::target_check::human_bytes;

/// Where a volume source is mounted in the agent pod.
pub const SOURCE_DIR: &str = "/source";
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What `hort-agent backup*` reports on success.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    /// Id of the snapshot written.
    pub snapshot_id: String,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes of chunks new to the repository.
    pub bytes_new: u64,
    /// Bytes added to the storage group.
    pub bytes_stored: u64,
    /// Files or streams backed up.
    pub files: u64,
    /// Seconds the backup took.
    pub duration_seconds: f64,
}

impl BackupReport {
    /// Parses an agent's termination message.
    pub fn parse(message: &str) -> Result<Self, String> {
        serde_json::from_str(message.trim()).map_err(|e| format!("the agent's backup report is not valid ({e})"))
    }

    /// The stats shown in the BackupJob's status.
    pub fn stats(&self) -> BackupStats {
        BackupStats {
            bytes_read: self.bytes_read,
            bytes_new: self.bytes_new,
            bytes_stored: self.bytes_stored,
            stored_size: human_bytes(self.bytes_stored),
            files: self.files,
            dedup_ratio: if self.bytes_stored == 0 {
                0.0
            } else {
                (self.bytes_read as f64 / self.bytes_stored as f64 * 100.0).round() / 100.0
            },
            duration_seconds: self.duration_seconds,
        }
    }
}

/// One progress line the agent prints on stdout while it works (JSON, one object per line).
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct ProgressLine {
    #[serde(rename = "type")]
    kind: String,
    bytes: u64,
    #[serde(default)]
    bytes_total: Option<u64>,
}

/// The progress shown in the status, from the newest progress line in `log` (the tail of the
/// agent's output); `None` when it holds none.
pub fn progress_from_log(log: &str) -> Option<Progress> {
    let line = log
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<ProgressLine>(l.trim()).ok())
        .find(|l| l.kind == "progress")?;
    let percent = line
        .bytes_total
        .filter(|total| *total > 0)
        .map(|total| (line.bytes.saturating_mul(100) / total).min(100) as u8);
    Some(Progress {
        bytes_done: line.bytes,
        bytes_total: line.bytes_total,
        percent,
    })
}

/// The arguments of `hort-agent` for a job in `namespace`, and the extra environment, volumes
/// and mounts its source needs, added to `access`.
pub fn agent_args(
    spec: &BackupJobSpec,
    namespace: &str,
    tags: &[String],
    access: &mut RepositoryAccess,
) -> Vec<String> {
    let mut args = Vec::new();
    let BackupSource {
        postgres,
        mariadb,
        volume,
    } = &spec.source;
    if let Some(volume) = volume {
        access.mount_claim("source", &volume.claim_name, SOURCE_DIR, true);
        args.extend(["backup".into(), SOURCE_DIR.into()]);
        for path in &volume.paths {
            args.extend(["--path".into(), path.clone()]);
        }
        for glob in &volume.exclude {
            args.extend(["--exclude".into(), glob.clone()]);
        }
        args.extend(["--host".into(), format!("{namespace}/{}", volume.claim_name)]);
    }
    let database = postgres
        .as_ref()
        .map(|p| {
            (
                "backup-postgres",
                &p.host,
                p.port,
                &p.databases,
                &p.credentials_secret_ref.name,
            )
        })
        .or(mariadb.as_ref().map(|m| {
            (
                "backup-mariadb",
                &m.host,
                m.port,
                &m.databases,
                &m.credentials_secret_ref.name,
            )
        }));
    if let Some((command, host, port, databases, credentials)) = database {
        args.extend([
            command.into(),
            "--host".into(),
            host.clone(),
            "--port".into(),
            port.to_string(),
        ]);
        for database in databases {
            args.extend(["--database".into(), database.clone()]);
        }
        if let Some(p) = postgres {
            args.extend(["--jobs".into(), p.parallel_jobs.to_string()]);
        }
        access.database_credentials(credentials);
    }
    for tag in tags {
        args.extend(["--tag".into(), tag.clone()]);
    }
    args
}

/// The pause before attempt `next` (2, 3, …): `base` doubled per failed attempt, at most five
/// minutes.
pub fn backoff(base: Duration, next: u32) -> Duration {
    let doublings = next.saturating_sub(2).min(16);
    base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_env<'a>(
        env: &'a [k8s_openapi::api::core::v1::EnvVar],
        name: &str,
    ) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
        env.iter().find(|e| e.name == name)
    }

    fn spec(source: &str) -> BackupJobSpec {
        serde_yaml::from_str(&format!("storageGroupRef: {{name: s3}}\nsource: {source}")).unwrap()
    }

    #[test]
    fn volume_source_is_mounted_read_only() {
        let mut access = RepositoryAccess::default();
        let args = agent_args(
            &spec("{volume: {claimName: data, paths: [media], exclude: ['*.tmp']}}"),
            "shop",
            &["manual".into()],
            &mut access,
        );
        assert_eq!(
            args,
            [
                "backup",
                "/source",
                "--path",
                "media",
                "--exclude",
                "*.tmp",
                "--host",
                "shop/data",
                "--tag",
                "manual"
            ]
        );
        assert_eq!(access.mounts[0].read_only, Some(true));
        let claim = access.volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("data", Some(true)));
    }

    #[test]
    fn database_credentials_come_from_the_secret_by_reference() {
        let mut access = RepositoryAccess::default();
        let args = agent_args(
            &spec("{postgres: {host: db, databases: [app], credentialsSecretRef: {name: db-creds}, parallelJobs: 2}}"),
            "shop",
            &[],
            &mut access,
        );
        assert_eq!(
            args,
            [
                "backup-postgres",
                "--host",
                "db",
                "--port",
                "5432",
                "--database",
                "app",
                "--jobs",
                "2"
            ]
        );
        assert!(!args.iter().any(|a| a.contains("password")));
        let password = find_env(&access.env, "HORT_DB_PASSWORD").unwrap();
        assert!(password.value.is_none());
        let selector = password.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(
            (selector.name.as_str(), selector.key.as_str()),
            ("db-creds", "password")
        );
    }

    #[test]
    fn report_and_stats() {
        let report = BackupReport::parse(
            r#"{"snapshotId": "ab12", "bytesRead": 3000, "bytesNew": 1500, "bytesStored": 1000,
                "files": 7, "durationSeconds": 1.5}"#,
        )
        .unwrap();
        let stats = report.stats();
        assert_eq!(stats.dedup_ratio, 3.0);
        assert_eq!(stats.stored_size, "1000 B");
        assert!(BackupReport::parse("killed").unwrap_err().contains("not valid"));
    }

    #[test]
    fn progress_is_the_newest_progress_line() {
        let log = "starting\n\
                   {\"type\":\"progress\",\"operation\":\"backup\",\"bytes\":100,\"bytes_total\":400}\n\
                   {\"type\":\"progress\",\"operation\":\"backup\",\"bytes\":300,\"bytes_total\":400}\n\
                   a warning\n";
        let progress = progress_from_log(log).unwrap();
        assert_eq!((progress.bytes_done, progress.percent), (300, Some(75)));
        let unknown_total = progress_from_log("{\"type\":\"progress\",\"bytes\":5}").unwrap();
        assert_eq!((unknown_total.bytes_done, unknown_total.percent), (5, None));
        assert!(progress_from_log("no json here").is_none());
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 3), Duration::from_secs(20));
        assert_eq!(backoff(base, 4), Duration::from_secs(40));
        assert_eq!(backoff(base, 11), Duration::from_secs(300));
    }
}
