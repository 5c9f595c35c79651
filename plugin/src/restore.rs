//! `kubectl hort restore`: a RestoreRequest built from flags (pure), printed
//! (`--dry-run=client`) or created and followed.

use hort_crds::RestoreRequest;
use hort_crds::common::{GroupKind, GroupRef, LocalObjectRef, SecretRef};
use hort_crds::restore_request::{
    DatabaseMapping, DatabaseRestoreTarget, OverwritePolicy, RestoreRequestSpec, RestoreSource, RestoreTarget,
    VolumeRestoreTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;

use crate::backup::submit;
use crate::cli::FollowFlags;
use crate::error::{PluginError, Result};
use crate::output::Format;

/// `--dry-run`: as kubectl's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    /// Create the object.
    #[default]
    None,
    /// Only print the object.
    Client,
    /// Send it to the API server, which validates it without storing it.
    Server,
}

/// `--overwrite` of a claim target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Overwrite {
    /// Keep existing files.
    Never,
    /// Replace files older than the snapshot's copy.
    IfNewer,
    /// Replace every existing file.
    Always,
}

/// Which snapshot a restore or verification reads: at most one of the three (the commands
/// that need one say so with a required argument group `source`).
#[derive(Debug, Clone, clap::Args)]
pub struct SourceFlags {
    /// The snapshot id (a unique prefix of 8 or more hex characters).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// The snapshot this BackupJob wrote.
    #[arg(long, value_name = "JOB")]
    pub from_job: Option<String>,
    /// The newest snapshot carrying all of these tags (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

impl SourceFlags {
    /// The API's form, `None` when no flag was given.
    pub fn source(&self) -> Option<RestoreSource> {
        (self.snapshot.is_some() || self.from_job.is_some() || !self.tags.is_empty()).then(|| RestoreSource {
            backup_job_ref: self.from_job.clone().map(|name| LocalObjectRef { name }),
            snapshot_id: self.snapshot.clone(),
            tags: self.tags.clone(),
        })
    }
}

/// The flags of `restore`.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(false).args(["snapshot", "from_job", "tags"]))]
#[command(group = clap::ArgGroup::new("target").required(true).multiple(false).args(["to_claim", "to_postgres", "to_mariadb"]))]
pub struct RestoreFlags {
    /// The StorageGroup that holds the snapshot (with `--shared`, a ClusterStorageGroup).
    pub group: String,
    /// The group is a ClusterStorageGroup shared with this namespace: the restore reads the
    /// namespace's own repository in it.
    #[arg(long)]
    pub shared: bool,
    /// Name of the RestoreRequest; `<group>-restore-<random>` when unset.
    #[arg(long)]
    pub name: Option<String>,
    /// Which snapshot.
    #[command(flatten)]
    pub source: SourceFlags,
    /// Restore files into this PersistentVolumeClaim.
    #[arg(long, value_name = "CLAIM")]
    pub to_claim: Option<String>,
    /// Only these paths of the snapshot (repeatable; with --to-claim).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Directory inside the claim to restore into (with --to-claim).
    #[arg(long)]
    pub sub_path: Option<String>,
    /// What happens to files that exist (with --to-claim); the API's default, Never, when unset.
    #[arg(long, value_enum)]
    pub overwrite: Option<Overwrite>,
    /// StorageClass of the claim created when it does not exist (with --size).
    #[arg(long, requires = "size")]
    pub storage_class: Option<String>,
    /// Size of the claim created when it does not exist, e.g. 10Gi (with --storage-class).
    #[arg(long, requires = "storage_class")]
    pub size: Option<String>,
    /// Restore PostgreSQL dumps into this server (host or Service name).
    #[arg(long, value_name = "HOST", requires = "credentials")]
    pub to_postgres: Option<String>,
    /// Restore MariaDB dumps into this server (host or Service name).
    #[arg(long, value_name = "HOST", requires = "credentials")]
    pub to_mariadb: Option<String>,
    /// Port of the database server; the server kind's default when unset.
    #[arg(long)]
    pub port: Option<u16>,
    /// Secret with keys `username` and `password` of a user who may create databases.
    #[arg(long, value_name = "SECRET")]
    pub credentials: Option<String>,
    /// A database to restore, optionally under a new name: `FROM` or `FROM:TO` (repeatable).
    #[arg(long = "database", value_name = "FROM[:TO]")]
    pub databases: Vec<String>,
    /// Only these tables of the one database given (repeatable).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Drop what the restore replaces.
    #[arg(long)]
    pub clean: bool,
    /// Minutes to wait for packs in an archive storage class, whose restore the agent
    /// requests (`spec.archiveWaitMinutes`); without it the restore fails at once naming them.
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(1..=20160))]
    pub archive_wait: Option<u32>,
    /// `client`: print the RestoreRequest (see -o) without creating it; `server`: have the
    /// API server check it without storing it.
    #[arg(long, value_enum, default_value_t = DryRun::None, default_missing_value = "client", num_args = 0..=1, require_equals = true)]
    pub dry_run: DryRun,
    /// Following the created object.
    #[command(flatten)]
    pub follow: FollowFlags,
}

/// `FROM` or `FROM:TO`.
fn mapping(spec: &str) -> Result<DatabaseMapping> {
    let (from, to) = match spec.split_once(':') {
        Some((from, to)) => (from, Some(to)),
        None => (spec, None),
    };
    if from.is_empty() || to.is_some_and(str::is_empty) {
        return Err(PluginError::Usage(format!(
            "--database {spec:?}: write FROM or FROM:TO, e.g. --database shop:shop_restored"
        )));
    }
    Ok(DatabaseMapping {
        from: from.into(),
        to: to.filter(|to| *to != from).map(str::to_owned),
    })
}

/// The RestoreRequest the flags describe, in `namespace`.
pub fn build(flags: &RestoreFlags, namespace: &str) -> Result<RestoreRequest> {
    let database_flags = !flags.databases.is_empty() || !flags.tables.is_empty() || flags.clean || flags.port.is_some();
    if flags.to_claim.is_some() && database_flags {
        return Err(PluginError::Usage(
            "--database, --table, --clean and --port go with --to-postgres or --to-mariadb, not --to-claim".into(),
        ));
    }
    let claim_flags = !flags.paths.is_empty()
        || flags.sub_path.is_some()
        || flags.overwrite.is_some()
        || flags.storage_class.is_some()
        || flags.size.is_some();
    if flags.to_claim.is_none() && claim_flags {
        return Err(PluginError::Usage(
            "--path, --sub-path, --overwrite, --storage-class and --size go with --to-claim, not a database target"
                .into(),
        ));
    }
    if !flags.tables.is_empty() && flags.databases.len() != 1 {
        return Err(PluginError::Usage(
            "--table needs exactly one --database: name the database the tables come from".into(),
        ));
    }
    let source = flags.source.source().ok_or_else(|| {
        PluginError::Usage("say which snapshot to restore: --snapshot ID, --from-job JOB or --tag TAG".into())
    })?;
    let database = |host: &String| -> Result<DatabaseRestoreTarget> {
        Ok(DatabaseRestoreTarget {
            host: host.clone(),
            port: flags.port,
            credentials_secret_ref: SecretRef {
                name: flags.credentials.clone().ok_or_else(|| {
                    PluginError::Usage("--credentials SECRET is required with --to-postgres and --to-mariadb".into())
                })?,
            },
            tls: None,
            databases: flags.databases.iter().map(|d| mapping(d)).collect::<Result<_>>()?,
            tables: flags.tables.clone(),
            clean: flags.clean,
        })
    };
    let target = RestoreTarget {
        postgres: flags.to_postgres.as_ref().map(database).transpose()?,
        mariadb: flags.to_mariadb.as_ref().map(database).transpose()?,
        volume: flags.to_claim.as_ref().map(|claim| VolumeRestoreTarget {
            claim_name: claim.clone(),
            storage_class_name: flags.storage_class.clone(),
            size: flags.size.clone().map(Quantity),
            paths: flags.paths.clone(),
            sub_path: flags.sub_path.clone().unwrap_or_default(),
            overwrite: match flags.overwrite {
                None | Some(Overwrite::Never) => OverwritePolicy::Never,
                Some(Overwrite::IfNewer) => OverwritePolicy::IfNewer,
                Some(Overwrite::Always) => OverwritePolicy::Always,
            },
        }),
    };
    let mut request = RestoreRequest::new(
        "",
        RestoreRequestSpec {
            storage_group_ref: GroupRef {
                kind: if flags.shared {
                    GroupKind::ClusterStorageGroup
                } else {
                    GroupKind::StorageGroup
                },
                name: flags.group.clone(),
            },
            source,
            target,
            active_deadline_seconds: None,
            archive_wait_minutes: flags.archive_wait,
            agent: None,
        },
    );
    request.metadata = ObjectMeta {
        name: flags.name.clone(),
        generate_name: flags.name.is_none().then(|| format!("{}-restore-", flags.group)),
        namespace: Some(namespace.into()),
        ..ObjectMeta::default()
    };
    Ok(request)
}

/// Runs `restore`.
pub async fn run(client: &Client, namespace: &str, flags: &RestoreFlags, format: Format) -> Result<()> {
    let request = build(flags, namespace)?;
    let what = format!("a RestoreRequest of group {}", flags.group);
    submit(client, namespace, &request, flags.dry_run, &flags.follow, format, &what).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Test {
        #[command(flatten)]
        flags: RestoreFlags,
    }

    fn parse(args: &str) -> std::result::Result<RestoreFlags, clap::Error> {
        Test::try_parse_from(std::iter::once("restore").chain(args.split_whitespace())).map(|t| t.flags)
    }

    fn yaml(args: &str) -> String {
        serde_yaml::to_string(&build(&parse(args).unwrap(), "demo").unwrap()).unwrap()
    }

    #[test]
    fn files_into_a_claim() {
        assert_eq!(
            yaml(
                "s3 --snapshot 0123abcd --to-claim data --path media --path etc/app.toml --overwrite if-newer --dry-run=client"
            ),
            "apiVersion: hort.dev/v1alpha1
kind: RestoreRequest
metadata:
  generateName: s3-restore-
  namespace: demo
spec:
  storageGroupRef:
    name: s3
  source:
    snapshotId: 0123abcd
  target:
    volume:
      claimName: data
      paths:
      - media
      - etc/app.toml
      subPath: ''
      overwrite: IfNewer
"
        );
        let created = yaml(
            "s3 --tag nightly --tag app --to-claim new --storage-class local --size 1Gi --name r1 --archive-wait 90",
        );
        assert!(created.contains("archiveWaitMinutes: 90"), "{created}");
        assert!(
            created.contains("name: r1") && !created.contains("generateName"),
            "{created}"
        );
        assert!(created.contains("tags:\n    - nightly\n    - app"), "{created}");
        assert!(
            created.contains("storageClassName: local") && created.contains("size: 1Gi"),
            "{created}"
        );
    }

    #[test]
    fn a_shared_group_is_named_with_its_kind() {
        let shared = yaml("shared --shared --snapshot 0123abcd --to-claim data");
        assert!(
            shared.contains("storageGroupRef:\n    kind: ClusterStorageGroup\n    name: shared\n"),
            "{shared}"
        );
        let own = yaml("s3 --snapshot 0123abcd --to-claim data");
        assert!(own.contains("storageGroupRef:\n    name: s3\n"), "{own}");
    }

    #[test]
    fn a_database_under_a_new_name() {
        let text = yaml(
            "s3 --from-job nightly-1 --to-postgres db.demo.svc --credentials pg --database shop:shop_restored --table orders --clean",
        );
        assert!(text.contains("backupJobRef:\n      name: nightly-1"), "{text}");
        assert!(
            text.contains("postgres:\n      host: db.demo.svc\n      credentialsSecretRef:\n        name: pg"),
            "{text}"
        );
        assert!(text.contains("- from: shop\n        to: shop_restored"), "{text}");
        assert!(text.contains("tables:\n      - orders\n      clean: true"), "{text}");
        let maria = yaml("s3 --tag x --to-mariadb maria --port 3307 --credentials m --database shop");
        assert!(
            maria.contains("mariadb:") && maria.contains("port: 3307") && maria.contains("- from: shop\n"),
            "{maria}"
        );
    }

    #[test]
    fn contradictions_are_refused_with_the_fix() {
        let usage = |args: &str| build(&parse(args).unwrap(), "demo").unwrap_err().to_string();
        assert!(
            parse("s3 --snapshot 0123abcd --tag x --to-claim d").is_err(),
            "two sources"
        );
        assert!(parse("s3 --snapshot 0123abcd").is_err(), "no target");
        assert!(
            parse("s3 --snapshot 0123abcd --to-postgres db").is_err(),
            "no credentials"
        );
        assert!(
            usage("s3 --snapshot 0123abcd --to-postgres db --credentials c --path x").contains("go with --to-claim"),
            "--path needs a claim"
        );
        assert!(
            parse("s3 --tag x --to-claim d --size 1Gi").is_err(),
            "--size needs --storage-class"
        );
        assert!(
            usage("s3 --snapshot 0123abcd --to-claim d --clean").contains("go with --to-postgres"),
            "database flags on a claim"
        );
        assert!(usage("s3 --tag x --to-postgres db --credentials c --table t").contains("exactly one --database"));
        assert!(usage("s3 --tag x --to-postgres db --credentials c --database shop:").contains("FROM:TO"));
        assert_eq!(
            parse("s3 --tag x --to-claim d --dry-run").unwrap().dry_run,
            DryRun::Client
        );
        assert_eq!(parse("s3 --tag x --to-claim d").unwrap().dry_run, DryRun::None);
    }
}
