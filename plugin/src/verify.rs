//! `kubectl hort verify`: a Verification built from flags (pure), printed
//! (`--dry-run=client`) or created and followed; the exit code is 0 when every check passed
//! and 1 when one failed, with the first failure named.

use hort_crds::Verification;
use hort_crds::common::{GroupKind, GroupRef, Phase, Progress};
use hort_crds::verification::{
    DatabaseKind, DatabaseVerification, RepositoryVerification, SqlAssertion, VerificationSpec, VolumeVerification,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;

use crate::backup::submit;
use crate::cli::FollowFlags;
use crate::error::{PluginError, Result};
use crate::follow::Followed;
use crate::output::Format;
use crate::restore::{DryRun, SourceFlags};

/// The flags of `verify`.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(false).args(["postgres", "mariadb", "volume_size", "repository"]))]
#[command(group = clap::ArgGroup::new("source").multiple(false).args(["snapshot", "from_job", "tags"]))]
pub struct VerifyFlags {
    /// The StorageGroup that holds the snapshot (or, with --repository, the repository);
    /// with `--shared`, a ClusterStorageGroup.
    pub group: String,
    /// The group is a ClusterStorageGroup shared with this namespace: the Verification reads
    /// the namespace's own repository in it.
    #[arg(long)]
    pub shared: bool,
    /// Name of the Verification; `<group>-verify-<random>` when unset.
    #[arg(long)]
    pub name: Option<String>,
    /// Which snapshot (none with --repository).
    #[command(flatten)]
    pub source: SourceFlags,
    /// Restore PostgreSQL dumps into a throwaway server and check them.
    #[arg(long)]
    pub postgres: bool,
    /// Restore MariaDB dumps into a throwaway server and check them.
    #[arg(long)]
    pub mariadb: bool,
    /// Image of the throwaway server (with --postgres or --mariadb); `postgres:17` or
    /// `mariadb:11` when unset.
    #[arg(long)]
    pub image: Option<String>,
    /// A query that must return true after the restore: `NAME:DATABASE:SQL` (repeatable;
    /// with --postgres or --mariadb).
    #[arg(long = "assert", value_name = "NAME:DATABASE:SQL")]
    pub assertions: Vec<String>,
    /// Restore files into a temporary claim of this size (e.g. 10Gi) and compare every file.
    #[arg(long, value_name = "SIZE")]
    pub volume_size: Option<String>,
    /// StorageClass of the temporary claim (with --volume-size); the cluster's default when
    /// unset.
    #[arg(long)]
    pub storage_class: Option<String>,
    /// Check the repository itself, reading this percent of its packs (1 to 100).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub repository: Option<u8>,
    /// `client`: print the Verification (see -o) without creating it; `server`: have the API
    /// server check it without storing it.
    #[arg(long, value_enum, default_value_t = DryRun::None, default_missing_value = "client", num_args = 0..=1, require_equals = true)]
    pub dry_run: DryRun,
    /// Following the created object.
    #[command(flatten)]
    pub follow: FollowFlags,
}

/// `NAME:DATABASE:SQL`.
fn assertion(spec: &str) -> Result<SqlAssertion> {
    match spec.splitn(3, ':').collect::<Vec<_>>()[..] {
        [name, database, sql] if !name.is_empty() && !database.is_empty() && !sql.is_empty() => Ok(SqlAssertion {
            name: name.into(),
            database: database.into(),
            sql: sql.into(),
        }),
        _ => Err(PluginError::Usage(format!(
            "--assert {spec:?}: write NAME:DATABASE:SQL, e.g. --assert 'balanced:shop:SELECT sum(amount) = 0 FROM ledger'"
        ))),
    }
}

/// The Verification the flags describe, in `namespace`.
pub fn build(flags: &VerifyFlags, namespace: &str) -> Result<Verification> {
    let database = flags.postgres || flags.mariadb;
    if !database && (flags.image.is_some() || !flags.assertions.is_empty()) {
        return Err(PluginError::Usage(
            "--image and --assert go with --postgres or --mariadb".into(),
        ));
    }
    if flags.volume_size.is_none() && flags.storage_class.is_some() {
        return Err(PluginError::Usage("--storage-class goes with --volume-size".into()));
    }
    let source = match (flags.repository, flags.source.source()) {
        (Some(_), Some(_)) => {
            return Err(PluginError::Usage(
                "--repository checks the whole repository: leave out --snapshot, --from-job and --tag".into(),
            ));
        }
        (None, None) => {
            return Err(PluginError::Usage(
                "say which snapshot to verify: --snapshot ID, --from-job JOB or --tag TAG".into(),
            ));
        }
        (_, source) => source,
    };
    let database = database
        .then(|| -> Result<DatabaseVerification> {
            Ok(DatabaseVerification {
                kind: if flags.postgres {
                    DatabaseKind::Postgres
                } else {
                    DatabaseKind::Mariadb
                },
                image: flags.image.clone(),
                resources: None,
                assertions: flags.assertions.iter().map(|a| assertion(a)).collect::<Result<_>>()?,
            })
        })
        .transpose()?;
    let mut verification = Verification::new(
        "",
        VerificationSpec {
            storage_group_ref: GroupRef {
                kind: if flags.shared {
                    GroupKind::ClusterStorageGroup
                } else {
                    GroupKind::StorageGroup
                },
                name: flags.group.clone(),
            },
            source,
            database,
            volume: flags.volume_size.clone().map(|size| VolumeVerification {
                storage_class_name: flags.storage_class.clone(),
                size: Quantity(size),
                command: None,
            }),
            repository: flags.repository.map(|percent| RepositoryVerification {
                read_data_percent: percent,
            }),
            active_deadline_seconds: None,
            agent: None,
        },
    );
    verification.metadata = ObjectMeta {
        name: flags.name.clone(),
        generate_name: flags.name.is_none().then(|| format!("{}-verify-", flags.group)),
        namespace: Some(namespace.into()),
        ..ObjectMeta::default()
    };
    Ok(verification)
}

impl Followed for Verification {
    const KIND: &'static str = "Verification";
    fn phase(&self) -> Phase {
        self.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }
    fn progress(&self) -> Option<Progress> {
        None
    }
    fn message(&self) -> Option<String> {
        self.status.as_ref().and_then(|s| s.message.clone())
    }
    fn outcome(&self) -> String {
        let status = self.status.clone().unwrap_or_default();
        let mut text = match &status.snapshot_id {
            Some(id) => format!("snapshot {id}"),
            None => "the repository".to_owned(),
        };
        text.push_str(&format!(": {} checks passed", status.checked.len()));
        if let Some(seconds) = status.restore_duration_seconds {
            text.push_str(&format!(", restored in {seconds:.1} s"));
        }
        text
    }
}

/// Runs `verify`.
pub async fn run(client: &Client, namespace: &str, flags: &VerifyFlags, format: Format) -> Result<()> {
    let verification = build(flags, namespace)?;
    let what = format!("a Verification of group {}", flags.group);
    submit(
        client,
        namespace,
        &verification,
        flags.dry_run,
        &flags.follow,
        format,
        &what,
    )
    .await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Test {
        #[command(flatten)]
        flags: VerifyFlags,
    }

    fn parse(args: &[&str]) -> std::result::Result<VerifyFlags, clap::Error> {
        Test::try_parse_from(std::iter::once("verify").chain(args.iter().copied())).map(|t| t.flags)
    }

    fn yaml(args: &[&str]) -> String {
        serde_yaml::to_string(&build(&parse(args).unwrap(), "demo").unwrap()).unwrap()
    }

    #[test]
    fn a_database_backup_with_an_assertion() {
        let text = yaml(&[
            "s3",
            "--from-job",
            "nightly-1",
            "--postgres",
            "--assert",
            "balanced:shop:SELECT sum(amount) = 0 FROM ledger",
        ]);
        assert!(text.contains("generateName: s3-verify-"), "{text}");
        assert!(text.contains("backupJobRef:\n      name: nightly-1"), "{text}");
        assert!(
            text.contains("database:\n    kind: Postgres\n    assertions:\n    - name: balanced\n      database: shop\n      sql: SELECT sum(amount) = 0 FROM ledger"),
            "{text}"
        );
        let maria = yaml(&[
            "s3",
            "--tag",
            "nightly",
            "--mariadb",
            "--image",
            "mariadb:10.11",
            "--name",
            "v1",
        ]);
        assert!(
            maria.contains("name: v1") && maria.contains("kind: Mariadb") && maria.contains("image: mariadb:10.11"),
            "{maria}"
        );
    }

    #[test]
    fn files_and_the_repository() {
        let files = yaml(&[
            "s3",
            "--snapshot",
            "0123abcd",
            "--volume-size",
            "2Gi",
            "--storage-class",
            "local",
        ]);
        assert!(
            files.contains("volume:\n    storageClassName: local\n    size: 2Gi"),
            "{files}"
        );
        let repo = yaml(&["s3", "--repository", "10"]);
        assert!(
            repo.contains("repository:\n    readDataPercent: 10") && !repo.contains("source"),
            "{repo}"
        );
        assert!(
            !repo.contains("kind: StorageGroup"),
            "the default kind is left out: {repo}"
        );
        let shared = yaml(&["shared", "--shared", "--repository", "10"]);
        assert!(
            shared.contains("storageGroupRef:\n    kind: ClusterStorageGroup\n    name: shared\n"),
            "{shared}"
        );
    }

    #[test]
    fn contradictions_are_refused_with_the_fix() {
        let usage = |args: &[&str]| build(&parse(args).unwrap(), "demo").unwrap_err().to_string();
        assert!(
            parse(&["s3", "--snapshot", "0123abcd"]).is_err(),
            "what to verify is required"
        );
        assert!(
            parse(&["s3", "--postgres", "--mariadb", "--tag", "x"]).is_err(),
            "one kind"
        );
        assert!(parse(&["s3", "--repository", "0"]).is_err(), "1 to 100");
        assert!(usage(&["s3", "--repository", "5", "--tag", "x"]).contains("leave out --snapshot"));
        assert!(usage(&["s3", "--postgres"]).contains("--from-job JOB"));
        assert!(usage(&["s3", "--tag", "x", "--volume-size", "1Gi", "--image", "i"]).contains("go with --postgres"));
        assert!(usage(&["s3", "--tag", "x", "--postgres", "--assert", "only:two"]).contains("NAME:DATABASE:SQL"));
    }
}
