//! The agent side of a RestoreRequest: the arguments a restore pod runs with, the claim it
//! writes to, and the report it leaves in its termination message.
//!
//! Contract with `hort-agent` (see `docs/agent-protocol.md`):
//! - volume targets are mounted read-write at `/target` and restored with
//!   `hort-agent restore SNAPSHOT --target /target[/SUBPATH] [--path P]... --overwrite MODE`;
//! - database targets run `hort-agent restore-postgres` / `restore-mariadb SNAPSHOT` with
//!   `--host`, `--port`, `--database FROM[=TO]` (repeatable), `--table T` (repeatable),
//!   `--clean`, credentials from `HORT_DB_USER` / `HORT_DB_PASSWORD`;
//! - `SNAPSHOT` is an id, or `latest` with `--tag T` filters;
//! - on success the agent writes a [`RestoreReport`] as JSON to its termination message.

use std::collections::BTreeMap;

use hort_crds::restore_request::{DatabaseRestoreTarget, OverwritePolicy, RestoreRequestSpec, RestoreStats};
use serde::Deserialize;

use crate::agent_pod::RepositoryAccess;

/// Where a volume target is mounted in the restore pod.
pub const TARGET_DIR: &str = "/target";

/// What `hort-agent restore*` reports on success.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot_id: String,
    /// Bytes written to the target.
    pub bytes_restored: u64,
    /// Files or streams restored.
    pub files: u64,
    /// Seconds the restore took.
    pub duration_seconds: f64,
    /// Rows per restored table, counted in the target after the restore.
    #[serde(default)]
    pub row_counts: BTreeMap<String, u64>,
}

impl RestoreReport {
    /// Parses an agent's termination message.
    pub fn parse(message: &str) -> Result<Self, String> {
        serde_json::from_str(message.trim()).map_err(|e| format!("the agent's restore report is not valid ({e})"))
    }

    /// The stats shown in the RestoreRequest's status.
    pub fn stats(&self) -> RestoreStats {
        RestoreStats {
            bytes_restored: self.bytes_restored,
            files: self.files,
            row_counts: self.row_counts.clone(),
            duration_seconds: self.duration_seconds,
        }
    }
}

/// The arguments of `hort-agent` for a restore of `snapshot` (an id, or `None` for the newest
/// snapshot with the spec's tags), adding the target's volumes and credentials to `access`.
pub fn agent_args(spec: &RestoreRequestSpec, snapshot: Option<&str>, access: &mut RepositoryAccess) -> Vec<String> {
    let snapshot = snapshot.unwrap_or("latest").to_string();
    let mut args = Vec::new();
    let target = &spec.target;
    if let Some(volume) = &target.volume {
        access.mount_claim("target", &volume.claim_name, TARGET_DIR, false);
        let dir = if volume.sub_path.is_empty() {
            TARGET_DIR.to_string()
        } else {
            format!("{TARGET_DIR}/{}", volume.sub_path.trim_end_matches('/'))
        };
        args.extend(["restore".into(), snapshot, "--target".into(), dir]);
        for path in &volume.paths {
            args.extend(["--path".into(), path.clone()]);
        }
        let overwrite = match volume.overwrite {
            OverwritePolicy::Never => "never",
            OverwritePolicy::IfNewer => "if-newer",
            OverwritePolicy::Always => "always",
        };
        args.extend(["--overwrite".into(), overwrite.into()]);
    } else if let Some((command, db, port)) = target
        .postgres
        .as_ref()
        .map(|p| ("restore-postgres", p, 5432))
        .or(target.mariadb.as_ref().map(|m| ("restore-mariadb", m, 3306)))
    {
        args.extend([command.into(), snapshot]);
        args.extend(database_args(db, port));
        access.database_credentials(&db.credentials_secret_ref.name);
    }
    if spec.source.snapshot_id.is_none() && spec.source.backup_job_ref.is_none() {
        for tag in &spec.source.tags {
            args.extend(["--tag".into(), tag.clone()]);
        }
    }
    args
}

fn database_args(db: &DatabaseRestoreTarget, default_port: u16) -> Vec<String> {
    let mut args = vec![
        "--host".into(),
        db.host.clone(),
        "--port".into(),
        db.port.unwrap_or(default_port).to_string(),
    ];
    for mapping in &db.databases {
        let value = match &mapping.to {
            Some(to) => format!("{}={to}", mapping.from),
            None => mapping.from.clone(),
        };
        args.extend(["--database".into(), value]);
    }
    for table in &db.tables {
        args.extend(["--table".into(), table.clone()]);
    }
    if db.clean {
        args.push("--clean".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> RestoreRequestSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn volume_restore_of_chosen_paths_into_a_sub_path() {
        let spec = spec(
            "storageGroupRef: {name: g}\nsource: {snapshotId: 0123abcd}\n\
             target: {volume: {claimName: c, paths: [media/2026], subPath: restored, overwrite: IfNewer}}",
        );
        let mut access = RepositoryAccess::default();
        let args = agent_args(&spec, Some("0123abcd"), &mut access);
        assert_eq!(
            args,
            [
                "restore",
                "0123abcd",
                "--target",
                "/target/restored",
                "--path",
                "media/2026",
                "--overwrite",
                "if-newer"
            ]
        );
        assert_eq!(access.mounts[0].mount_path, "/target");
        assert_eq!(access.mounts[0].read_only, None);
    }

    #[test]
    fn database_restore_with_rename_tables_and_tags() {
        let spec = spec(
            "storageGroupRef: {name: g}\nsource: {tags: [nightly]}\n\
             target: {mariadb: {host: db, credentialsSecretRef: {name: creds}, databases: [{from: shop, to: shop_copy}], \
             tables: [orders], clean: true}}",
        );
        let mut access = RepositoryAccess::default();
        let args = agent_args(&spec, None, &mut access);
        assert_eq!(
            args,
            [
                "restore-mariadb",
                "latest",
                "--host",
                "db",
                "--port",
                "3306",
                "--database",
                "shop=shop_copy",
                "--table",
                "orders",
                "--clean",
                "--tag",
                "nightly"
            ]
        );
        assert!(
            access.env.iter().all(|e| e.value.is_none()),
            "credentials only by reference"
        );
    }

    #[test]
    fn report_with_row_counts() {
        let report = RestoreReport::parse(
            r#"{"snapshotId": "ab", "bytesRestored": 10, "files": 1, "durationSeconds": 0.5,
                "rowCounts": {"shop.orders": 42}}"#,
        )
        .unwrap();
        assert_eq!(report.stats().row_counts["shop.orders"], 42);
    }
}
