//! The commands the operator runs in agent pods, rendered to `hort-agent`'s arguments.
//!
//! Only what the operator uses is here; the agent's command line has more for people (e.g.
//! `--compression`). The agent's tests parse every variant's [`AgentCommand::to_args`] with
//! its own parser and compare what it understood with the command.

/// How a storage group's targets form one repository ([`crate::env::STRATEGY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Strategy {
    /// Each pack on one target, chosen by weight.
    Spread,
    /// Every file on every target.
    Mirror,
    /// Each pack on the first target that accepts it.
    Failover,
}

impl Strategy {
    /// The value of [`crate::env::STRATEGY`].
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Spread => "spread",
            Strategy::Mirror => "mirror",
            Strategy::Failover => "failover",
        }
    }
}

/// What a volume restore does with files that exist in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Overwrite {
    /// Keep existing files.
    Never,
    /// Replace files older than the snapshot's copy.
    IfNewer,
    /// Replace every existing file.
    #[default]
    Always,
}

impl Overwrite {
    /// The value of `--overwrite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overwrite::Never => "never",
            Overwrite::IfNewer => "if-newer",
            Overwrite::Always => "always",
        }
    }
}

/// How the agent's connections to a database server are protected (`--tls-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TlsMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate; plain otherwise.
    #[default]
    Prefer,
    /// TLS or no connection; the server's certificate must chain to the CA of `--tls-ca` and
    /// name the host connected to.
    VerifyFull,
}

impl TlsMode {
    /// The value of `--tls-mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// TLS of the agent's connections to a database server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseTls {
    /// Whether TLS is used, and how the server is checked.
    pub mode: TlsMode,
    /// PEM file of the CA that signed the server's certificate (`--tls-ca`).
    pub ca_file: Option<String>,
}

/// Where the operator mounts the CA certificate of a database server (key `ca.crt` of the
/// Secret a spec's `tls.caSecretRef` names).
pub const DATABASE_CA_FILE: &str = "/etc/hort/database-ca/ca.crt";

/// The database servers the agent backs up through their own dump tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// PostgreSQL (`pg_dump`, `pg_restore`, `psql`).
    Postgres,
    /// MariaDB or MySQL (`mariadb-dump`, `mariadb`).
    Mariadb,
}

impl DatabaseKind {
    /// The server's usual port.
    pub fn default_port(self) -> u16 {
        match self {
            DatabaseKind::Postgres => 5432,
            DatabaseKind::Mariadb => 3306,
        }
    }

    /// The value of the `hort.dev/source` tag the agent adds to the kind's backups.
    pub fn source_tag(self) -> &'static str {
        match self {
            DatabaseKind::Postgres => "postgres",
            DatabaseKind::Mariadb => "mariadb",
        }
    }

    /// The product name, for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            DatabaseKind::Postgres => "PostgreSQL",
            DatabaseKind::Mariadb => "MariaDB",
        }
    }
}

/// A database to restore, optionally under another name (`--database FROM[=TO]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseMapping {
    /// Its name in the backup.
    pub from: String,
    /// Its name in the target server; `None`: the same.
    pub to: Option<String>,
}

/// A user's SQL assertion of a database verification: a query that must return exactly one
/// row of one column that is true (`--assertion JSON`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlAssertion {
    /// Its name, in the report's checked lines and failures.
    pub name: String,
    /// The database (its name in the backup) the query runs in.
    pub database: String,
    /// The query.
    pub sql: String,
}

/// How much of the packs' data `verify` reads and checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadData {
    /// None: only the structure (every blob of every snapshot indexed, every indexed pack present).
    #[default]
    No,
    /// A random share of the packs, at least one (`--read-data-subset N%`).
    Subset {
        /// Percent of the packs, 1..=100.
        percent: u8,
    },
    /// Every pack (`--read-data`).
    All,
}

/// Retention rules of `forget`: which snapshots to keep (`--keep-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    /// The newest N snapshots.
    pub last: Option<u32>,
    /// The newest snapshot of each of the last N hours.
    pub hourly: Option<u32>,
    /// The newest snapshot of each of the last N days.
    pub daily: Option<u32>,
    /// The newest snapshot of each of the last N weeks.
    pub weekly: Option<u32>,
    /// The newest snapshot of each of the last N months.
    pub monthly: Option<u32>,
    /// The newest snapshot of each of the last N years.
    pub yearly: Option<u32>,
    /// Every snapshot younger than this period, counted back from the newest.
    pub within: Option<crate::Period>,
}

/// One agent run, as the operator starts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    /// `check`: probe every target; with `init`, create the repository if every target
    /// answers and none holds one.
    Check {
        /// Create the repository when none exists (only for a group that has none recorded).
        init: bool,
        /// The repository the group is known to hold (`status.repositoryId`): the check
        /// fails if the targets hold another or none, and never creates one.
        repository_id: Option<String>,
        /// Copy to each target what the others hold and it lacks (`Mirror`), within the
        /// check's time, and report what each still lacks.
        resync: bool,
        /// First make the repository password the only one that opens the repository: add a
        /// key file for it, unlocked with [`crate::env::PREVIOUS_PASSWORD`], and remove the
        /// previous password's key file ([`CheckReport::key_rotation`](crate::CheckReport)).
        rotate_key: bool,
        /// Also count the repository's snapshots and name its newest
        /// ([`CheckReport::snapshots`](crate::CheckReport)); reads every snapshot file.
        snapshots: bool,
    },
    /// `backup DIR`: a directory (a mounted volume).
    Backup {
        /// The directory.
        dir: String,
        /// Only these paths below it.
        paths: Vec<String>,
        /// Globs of entries left out.
        excludes: Vec<String>,
        /// The host name recorded, the same for every backup of one volume (so that the
        /// previous snapshot is found and unchanged files are skipped).
        host: String,
        /// Tags of the snapshot.
        tags: Vec<String>,
    },
    /// `backup-postgres` / `backup-mariadb`: dumps through the database's own tools.
    BackupDatabase {
        /// Which server.
        kind: DatabaseKind,
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
        /// TLS of the connections.
        tls: DatabaseTls,
        /// Databases to back up; all when empty.
        databases: Vec<String>,
        /// Tags of the snapshot.
        tags: Vec<String>,
    },
    /// `restore SNAPSHOT --target DIR`: files into a directory (a mounted volume).
    Restore {
        /// Snapshot id, unique prefix, or `latest` (with `tags`).
        snapshot: String,
        /// The directory restored into.
        target: String,
        /// Only these paths of the snapshot.
        paths: Vec<String>,
        /// What happens to existing files.
        overwrite: Overwrite,
        /// With `latest`: the newest snapshot carrying all of these.
        tags: Vec<String>,
    },
    /// `restore-postgres` / `restore-mariadb SNAPSHOT`: databases into a server.
    RestoreDatabase {
        /// Which server.
        kind: DatabaseKind,
        /// Snapshot id, unique prefix, or `latest` (with `tags`).
        snapshot: String,
        /// The target server's host.
        host: String,
        /// Its port.
        port: u16,
        /// TLS of the connections.
        tls: DatabaseTls,
        /// Databases to restore; the whole server when empty.
        databases: Vec<DatabaseMapping>,
        /// Only these tables of the one database.
        tables: Vec<String>,
        /// Drop what the restore replaces.
        clean: bool,
        /// With `latest`: the newest snapshot carrying all of these.
        tags: Vec<String>,
    },
    /// `forget`: retention among the snapshots carrying every tag, with garbage collection
    /// when `prune`.
    Forget {
        /// Only snapshots carrying all of these count (and form one series).
        tags: Vec<String>,
        /// What to keep.
        keep: Keep,
        /// Also collect garbage.
        prune: bool,
    },
    /// `verify-restore SNAPSHOT --scratch DIR`: restore a volume snapshot into an empty scratch
    /// directory, compare every file with the snapshot, then empty the directory (unless
    /// `keep`).
    VerifyRestore {
        /// Snapshot id, unique prefix, or `latest` (with `tags`).
        snapshot: String,
        /// With `latest`: the newest snapshot carrying all of these.
        tags: Vec<String>,
        /// The scratch directory (empty or absent).
        scratch: String,
        /// `--keep`: leave the restored files in the scratch directory for a check that runs
        /// after the agent (the user's command of a volume verification).
        keep: bool,
    },
    /// `verify-restore-postgres` / `verify-restore-mariadb SNAPSHOT`: restore every database
    /// of a snapshot into a throwaway server, check databases, tables and row counts, and run
    /// the assertions. The user and password come from [`crate::env::DB_USER`] and
    /// [`crate::env::DB_PASSWORD`]; no TLS (the server runs beside the agent, on localhost).
    VerifyRestoreDatabase {
        /// Which server.
        kind: DatabaseKind,
        /// Snapshot id, unique prefix, or `latest` (with `tags`).
        snapshot: String,
        /// With `latest`: the newest snapshot carrying all of these.
        tags: Vec<String>,
        /// The throwaway server's host.
        host: String,
        /// Its port.
        port: u16,
        /// Queries that must return true after the restore.
        assertions: Vec<SqlAssertion>,
    },
    /// `verify`: check the repository's structure, and read some or all of its packs.
    Verify {
        /// How much data to read.
        read_data: ReadData,
    },
    /// `snapshots --json`: the snapshots carrying every tag, as a [`crate::report::SnapshotList`]
    /// on stdout (read by `kubectl hort snapshots`).
    Snapshots {
        /// Only snapshots carrying all of these.
        tags: Vec<String>,
    },
    /// `ls --json SNAPSHOT [PATH]`: the entries of a snapshot (below `path`), or its streams,
    /// as a [`crate::report::Listing`] on stdout (read by `kubectl hort ls`).
    Ls {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// Only this directory (or file) and what is below it; the whole snapshot when unset.
        path: Option<String>,
    },
    /// `cat SNAPSHOT PATH`: the exact bytes of one file, or of one stream (a database dump),
    /// on stdout (read by `kubectl hort cat` and `download`).
    Cat {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// Path of the file below the snapshot root, or the stream's name.
        path: String,
    },
    /// `catalog show --json [--namespace NS]`: the newest catalog of each namespace (or of
    /// `namespace`), as a [`crate::CatalogList`] on stdout (read by `kubectl hort dr`).
    CatalogShow {
        /// Only this namespace's catalog.
        namespace: Option<String>,
    },
}

/// Snapshot id meaning "the newest snapshot with the given tags".
pub const LATEST: &str = "latest";

/// `--tls-mode MODE`, and `--tls-ca FILE` when a CA is given.
fn tls_args(args: &mut Vec<String>, tls: &DatabaseTls) {
    args.extend(["--tls-mode".into(), tls.mode.as_str().into()]);
    if let Some(ca) = &tls.ca_file {
        args.extend(["--tls-ca".into(), ca.clone()]);
    }
}

fn repeated(args: &mut Vec<String>, flag: &str, values: &[String]) {
    for value in values {
        args.extend([flag.to_owned(), value.clone()]);
    }
}

impl AgentCommand {
    /// Whether the command may write to the repository (a check probes and may create,
    /// resync or rekey it; backups and retention write and delete). The others only read, so
    /// the operator mounts PVC targets read-only for them.
    pub fn writes_repository(&self) -> bool {
        match self {
            AgentCommand::Check { .. }
            | AgentCommand::Backup { .. }
            | AgentCommand::BackupDatabase { .. }
            | AgentCommand::Forget { .. } => true,
            AgentCommand::Restore { .. }
            | AgentCommand::RestoreDatabase { .. }
            | AgentCommand::VerifyRestore { .. }
            | AgentCommand::VerifyRestoreDatabase { .. }
            | AgentCommand::Verify { .. }
            | AgentCommand::Snapshots { .. }
            | AgentCommand::Ls { .. }
            | AgentCommand::Cat { .. }
            | AgentCommand::CatalogShow { .. } => false,
        }
    }

    /// The arguments of `hort-agent` that run this command.
    pub fn to_args(&self) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        match self {
            AgentCommand::Check {
                init,
                repository_id,
                resync,
                rotate_key,
                snapshots,
            } => {
                args.push("check".into());
                if *init {
                    args.push("--init".into());
                }
                if *resync {
                    args.push("--resync".into());
                }
                if *rotate_key {
                    args.push("--rotate-key".into());
                }
                if *snapshots {
                    args.push("--snapshots".into());
                }
                if let Some(id) = repository_id {
                    args.extend(["--repository-id".into(), id.clone()]);
                }
            }
            AgentCommand::Backup {
                dir,
                paths,
                excludes,
                host,
                tags,
            } => {
                args.extend(["backup".into(), dir.clone()]);
                repeated(&mut args, "--path", paths);
                repeated(&mut args, "--exclude", excludes);
                args.extend(["--host".into(), host.clone()]);
                repeated(&mut args, "--tag", tags);
            }
            AgentCommand::BackupDatabase {
                kind,
                host,
                port,
                tls,
                databases,
                tags,
            } => {
                args.push(format!("backup-{}", kind.source_tag()));
                args.extend(["--host".into(), host.clone(), "--port".into(), port.to_string()]);
                tls_args(&mut args, tls);
                repeated(&mut args, "--database", databases);
                repeated(&mut args, "--tag", tags);
            }
            AgentCommand::Restore {
                snapshot,
                target,
                paths,
                overwrite,
                tags,
            } => {
                args.extend(["restore".into(), snapshot.clone(), "--target".into(), target.clone()]);
                repeated(&mut args, "--path", paths);
                args.extend(["--overwrite".into(), overwrite.as_str().into()]);
                repeated(&mut args, "--tag", tags);
            }
            AgentCommand::RestoreDatabase {
                kind,
                snapshot,
                host,
                port,
                tls,
                databases,
                tables,
                clean,
                tags,
            } => {
                args.extend([format!("restore-{}", kind.source_tag()), snapshot.clone()]);
                args.extend(["--host".into(), host.clone(), "--port".into(), port.to_string()]);
                tls_args(&mut args, tls);
                for mapping in databases {
                    let value = match &mapping.to {
                        Some(to) => format!("{}={to}", mapping.from),
                        None => mapping.from.clone(),
                    };
                    args.extend(["--database".into(), value]);
                }
                repeated(&mut args, "--table", tables);
                if *clean {
                    args.push("--clean".into());
                }
                repeated(&mut args, "--tag", tags);
            }
            AgentCommand::Forget { tags, keep, prune } => {
                args.push("forget".into());
                if *prune {
                    args.push("--prune".into());
                }
                repeated(&mut args, "--tag", tags);
                let counts = [
                    ("--keep-last", keep.last),
                    ("--keep-hourly", keep.hourly),
                    ("--keep-daily", keep.daily),
                    ("--keep-weekly", keep.weekly),
                    ("--keep-monthly", keep.monthly),
                    ("--keep-yearly", keep.yearly),
                ];
                for (flag, count) in counts {
                    if let Some(count) = count {
                        args.extend([flag.to_owned(), count.to_string()]);
                    }
                }
                if let Some(within) = &keep.within {
                    args.extend(["--keep-within".into(), within.to_string()]);
                }
            }
            AgentCommand::VerifyRestore {
                snapshot,
                tags,
                scratch,
                keep,
            } => {
                args.extend([
                    "verify-restore".into(),
                    snapshot.clone(),
                    "--scratch".into(),
                    scratch.clone(),
                ]);
                repeated(&mut args, "--tag", tags);
                if *keep {
                    args.push("--keep".into());
                }
            }
            AgentCommand::VerifyRestoreDatabase {
                kind,
                snapshot,
                tags,
                host,
                port,
                assertions,
            } => {
                args.extend([format!("verify-restore-{}", kind.source_tag()), snapshot.clone()]);
                args.extend(["--host".into(), host.clone(), "--port".into(), port.to_string()]);
                repeated(&mut args, "--tag", tags);
                for assertion in assertions {
                    let json = serde_json::to_string(assertion).expect("assertions serialize");
                    args.extend(["--assertion".into(), json]);
                }
            }
            AgentCommand::Verify { read_data } => {
                args.push("verify".into());
                match read_data {
                    ReadData::No => {}
                    ReadData::Subset { percent } => {
                        args.extend(["--read-data-subset".into(), format!("{percent}%")]);
                    }
                    ReadData::All => args.push("--read-data".into()),
                }
            }
            AgentCommand::Snapshots { tags } => {
                args.extend(["snapshots".into(), "--json".into()]);
                repeated(&mut args, "--tag", tags);
            }
            AgentCommand::Ls { snapshot, path } => {
                args.extend(["ls".into(), "--json".into(), snapshot.clone()]);
                args.extend(path.iter().cloned());
            }
            AgentCommand::Cat { snapshot, path } => {
                args.extend(["cat".into(), snapshot.clone(), path.clone()]);
            }
            AgentCommand::CatalogShow { namespace } => {
                args.extend(["catalog".into(), "show".into(), "--json".into()]);
                repeated(&mut args, "--namespace", namespace.as_slice());
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_after_their_flags_and_secrets_never_appear() {
        let command = AgentCommand::RestoreDatabase {
            kind: DatabaseKind::Mariadb,
            snapshot: LATEST.into(),
            host: "db".into(),
            port: 3306,
            tls: DatabaseTls {
                mode: TlsMode::VerifyFull,
                ca_file: Some(DATABASE_CA_FILE.into()),
            },
            databases: vec![DatabaseMapping {
                from: "shop".into(),
                to: Some("shop_copy".into()),
            }],
            tables: vec!["orders".into()],
            clean: true,
            tags: vec!["nightly".into()],
        };
        assert_eq!(
            command.to_args(),
            [
                "restore-mariadb",
                "latest",
                "--host",
                "db",
                "--port",
                "3306",
                "--tls-mode",
                "verify-full",
                "--tls-ca",
                "/etc/hort/database-ca/ca.crt",
                "--database",
                "shop=shop_copy",
                "--table",
                "orders",
                "--clean",
                "--tag",
                "nightly"
            ]
        );
        let forget = AgentCommand::Forget {
            tags: vec!["hort.dev/schedule=s".into()],
            keep: Keep {
                daily: Some(7),
                within: Some("2d".parse().unwrap()),
                ..Keep::default()
            },
            prune: true,
        };
        assert_eq!(
            forget.to_args(),
            [
                "forget",
                "--prune",
                "--tag",
                "hort.dev/schedule=s",
                "--keep-daily",
                "7",
                "--keep-within",
                "2d"
            ]
        );
    }

    #[test]
    fn verification_commands_render_their_flags() {
        let volume = AgentCommand::VerifyRestore {
            snapshot: LATEST.into(),
            tags: vec!["hort.dev/schedule=s".into()],
            scratch: "/scratch".into(),
            keep: true,
        };
        assert_eq!(
            volume.to_args(),
            [
                "verify-restore",
                "latest",
                "--scratch",
                "/scratch",
                "--tag",
                "hort.dev/schedule=s",
                "--keep"
            ]
        );
        let assertion = SqlAssertion {
            name: "balance".into(),
            database: "shop".into(),
            sql: "select sum(amount) = 0 from ledger".into(),
        };
        let database = AgentCommand::VerifyRestoreDatabase {
            kind: DatabaseKind::Postgres,
            snapshot: "ab12".into(),
            tags: vec![],
            host: "127.0.0.1".into(),
            port: 5432,
            assertions: vec![assertion.clone()],
        };
        let args = database.to_args();
        assert_eq!(
            args[..6],
            [
                "verify-restore-postgres",
                "ab12",
                "--host",
                "127.0.0.1",
                "--port",
                "5432"
            ]
        );
        assert_eq!(args[6], "--assertion");
        assert!(args[7].contains("\"database\":\"shop\""), "{}", args[7]);
        assert_eq!(serde_json::from_str::<SqlAssertion>(&args[7]).unwrap(), assertion);
        assert_eq!(args.len(), 8);
        let read = |read_data| AgentCommand::Verify { read_data }.to_args();
        assert_eq!(read(ReadData::No), ["verify"]);
        assert_eq!(
            read(ReadData::Subset { percent: 10 }),
            ["verify", "--read-data-subset", "10%"]
        );
        assert_eq!(read(ReadData::All), ["verify", "--read-data"]);
    }

    #[test]
    fn repository_reads_render_to_json_listings_and_raw_bytes() {
        let snapshots = AgentCommand::Snapshots {
            tags: vec!["hort.dev/schedule=nightly".into()],
        };
        assert_eq!(
            snapshots.to_args(),
            ["snapshots", "--json", "--tag", "hort.dev/schedule=nightly"]
        );
        let ls = AgentCommand::Ls {
            snapshot: "ab12cd34".into(),
            path: Some("media/2026".into()),
        };
        assert_eq!(ls.to_args(), ["ls", "--json", "ab12cd34", "media/2026"]);
        let whole = AgentCommand::Ls {
            snapshot: LATEST.into(),
            path: None,
        };
        assert_eq!(whole.to_args(), ["ls", "--json", "latest"]);
        let cat = AgentCommand::Cat {
            snapshot: "ab12cd34".into(),
            path: "media/a b.jpg".into(),
        };
        assert_eq!(cat.to_args(), ["cat", "ab12cd34", "media/a b.jpg"]);
    }
}
