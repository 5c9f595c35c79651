//! The operator's side of the contract meets the agent's parser: every command the operator
//! can run (`hort_protocol::AgentCommand`) is rendered to arguments, parsed by `hort-agent`'s
//! own command line, and what the agent understood is turned back into a command that must
//! equal the original. A flag renamed on either side, or a value the agent would read
//! differently, fails here.

use clap::Parser;
use hort_protocol::command::DATABASE_CA_FILE;
use hort_protocol::command::LATEST;
use hort_protocol::{
    AgentCommand, DatabaseKind, DatabaseMapping, DatabaseTls, Keep, Overwrite, ReadData, SqlAssertion, TlsMode,
};

use super::args::KeepArgs;
use super::database_cmd::database_mapping;
use super::{Cli, Commands};

fn text(path: Option<std::path::PathBuf>) -> String {
    path.expect("the argument is given").to_string_lossy().into_owned()
}

fn tls(server: &super::args::DbServerArgs) -> DatabaseTls {
    DatabaseTls {
        mode: server.tls_mode,
        ca_file: server.tls_ca.clone().map(|ca| text(Some(ca))),
    }
}

fn keep(args: KeepArgs) -> Keep {
    Keep {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args.keep_within,
    }
}

/// What the agent understood from `command`'s arguments, as a command.
fn understood(command: &AgentCommand) -> AgentCommand {
    let mut argv = vec!["hort-agent".to_owned()];
    argv.extend(command.to_args());
    if matches!(
        command,
        AgentCommand::BackupDatabase { .. }
            | AgentCommand::RestoreDatabase { .. }
            | AgentCommand::VerifyRestoreDatabase { .. }
    ) {
        // In a pod the user comes from `env::DB_USER`, this flag's variable, which a test
        // cannot set safely; the flag stands in for it.
        argv.extend(["--db-user".into(), "from-the-environment".into()]);
    }
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let database = |kind| {
        move |args: super::args::DbBackupArgs| AgentCommand::BackupDatabase {
            kind,
            tls: tls(&args.server),
            host: args.server.host,
            port: args.server.port.expect("the operator always sends the port"),
            databases: args.databases,
            tags: args.tags,
        }
    };
    let restore_database = |kind| {
        move |args: super::args::DbRestoreArgs| AgentCommand::RestoreDatabase {
            kind,
            snapshot: args.snapshot,
            tls: tls(&args.server),
            host: args.server.host,
            port: args.server.port.expect("the operator always sends the port"),
            databases: args
                .databases
                .iter()
                .map(|spec| {
                    let (from, to) = database_mapping(spec).expect("a valid mapping");
                    DatabaseMapping { from, to }
                })
                .collect(),
            tables: args.tables,
            clean: args.clean,
            tags: args.tags,
        }
    };
    let verify_database = |kind| {
        move |args: super::args::DbVerifyArgs| {
            assert_eq!(args.server.tls_mode, TlsMode::Prefer, "no TLS flags");
            AgentCommand::VerifyRestoreDatabase {
                kind,
                snapshot: args.snapshot,
                tags: args.tags,
                host: args.server.host,
                port: args.server.port.expect("the operator always sends the port"),
                assertions: args.assertions,
            }
        }
    };
    match cli.command {
        Commands::Check {
            init,
            repository_id,
            resync,
            rotate_key,
            snapshots,
            ..
        } => AgentCommand::Check {
            init,
            repository_id,
            resync,
            rotate_key,
            snapshots,
        },
        Commands::Backup(args) => AgentCommand::Backup {
            dir: text(args.dir),
            paths: args.paths.into_iter().map(|p| text(Some(p))).collect(),
            excludes: args.exclude,
            host: args.host.expect("the operator always sends the host"),
            tags: args.tags,
        },
        Commands::BackupPostgres(args) => database(DatabaseKind::Postgres)(args),
        Commands::BackupMariadb(args) => database(DatabaseKind::Mariadb)(args),
        Commands::Restore(args) => AgentCommand::Restore {
            snapshot: args.snapshot,
            target: text(args.target),
            paths: args.paths.into_iter().map(|p| text(Some(p))).collect(),
            overwrite: args.overwrite,
            tags: args.tags,
        },
        Commands::RestorePostgres(args) => restore_database(DatabaseKind::Postgres)(args),
        Commands::RestoreMariadb(args) => restore_database(DatabaseKind::Mariadb)(args),
        Commands::Forget(args) => AgentCommand::Forget {
            tags: args.tags,
            keep: keep(args.keep),
            prune: args.prune,
        },
        Commands::VerifyRestore(args) => AgentCommand::VerifyRestore {
            snapshot: args.snapshot,
            tags: args.tags,
            scratch: text(Some(args.scratch)),
            keep: args.keep,
        },
        Commands::VerifyRestorePostgres(args) => verify_database(DatabaseKind::Postgres)(args),
        Commands::VerifyRestoreMariadb(args) => verify_database(DatabaseKind::Mariadb)(args),
        Commands::Verify {
            read_data,
            read_data_subset,
        } => AgentCommand::Verify {
            read_data: match (read_data, read_data_subset) {
                (true, None) => ReadData::All,
                (false, Some(percent)) => ReadData::Subset { percent },
                (false, None) => ReadData::No,
                (true, Some(_)) => panic!("both --read-data and --read-data-subset"),
            },
        },
        Commands::Snapshots { tags } => AgentCommand::Snapshots { tags },
        Commands::Ls { snapshot, path } => AgentCommand::Ls { snapshot, path },
        Commands::Cat { snapshot, path } => AgentCommand::Cat { snapshot, path },
        Commands::Catalog(super::catalog_cmds::CatalogCommand::Show { namespace }) => {
            AgentCommand::CatalogShow { namespace }
        }
        other => panic!("the operator never runs {other:?}"),
    }
}

fn tags() -> Vec<String> {
    vec!["hort.dev/namespace=shop".into(), "nightly run".into()]
}

#[test]
fn every_operator_command_means_the_same_to_the_agent() {
    let commands = [
        AgentCommand::Check {
            init: true,
            repository_id: None,
            resync: false,
            rotate_key: false,
            snapshots: false,
        },
        AgentCommand::Check {
            init: false,
            repository_id: Some("ab12".into()),
            resync: true,
            rotate_key: true,
            snapshots: true,
        },
        AgentCommand::Backup {
            dir: "/source".into(),
            paths: vec!["media".into(), "db dumps".into()],
            excludes: vec!["*.tmp".into(), "cache/".into()],
            host: "shop/data".into(),
            tags: tags(),
        },
        AgentCommand::BackupDatabase {
            kind: DatabaseKind::Postgres,
            host: "db.shop.svc".into(),
            port: 5433,
            tls: DatabaseTls {
                mode: TlsMode::VerifyFull,
                ca_file: Some(DATABASE_CA_FILE.into()),
            },
            databases: vec!["app".into(), "billing".into()],
            tags: tags(),
        },
        AgentCommand::BackupDatabase {
            kind: DatabaseKind::Mariadb,
            host: "maria".into(),
            port: 3306,
            tls: DatabaseTls {
                mode: TlsMode::Disable,
                ca_file: None,
            },
            databases: vec![],
            tags: vec![],
        },
        AgentCommand::Restore {
            snapshot: "0123abcd".into(),
            target: "/target/restored".into(),
            paths: vec!["media/2026".into()],
            overwrite: Overwrite::IfNewer,
            tags: vec![],
        },
        AgentCommand::Restore {
            snapshot: LATEST.into(),
            target: "/target".into(),
            paths: vec![],
            overwrite: Overwrite::Never,
            tags: tags(),
        },
        AgentCommand::RestoreDatabase {
            kind: DatabaseKind::Postgres,
            snapshot: LATEST.into(),
            host: "db".into(),
            port: 5432,
            tls: DatabaseTls::default(),
            databases: vec![
                DatabaseMapping {
                    from: "app".into(),
                    to: Some("app_restored".into()),
                },
                DatabaseMapping {
                    from: "billing".into(),
                    to: None,
                },
            ],
            tables: vec![],
            clean: true,
            tags: tags(),
        },
        AgentCommand::RestoreDatabase {
            kind: DatabaseKind::Mariadb,
            snapshot: "c0ffee".into(),
            host: "maria".into(),
            port: 3307,
            tls: DatabaseTls::default(),
            databases: vec![DatabaseMapping {
                from: "shop".into(),
                to: None,
            }],
            tables: vec!["orders".into(), "items".into()],
            clean: false,
            tags: vec![],
        },
        AgentCommand::Forget {
            tags: tags(),
            keep: Keep {
                last: Some(3),
                hourly: Some(24),
                daily: Some(7),
                weekly: Some(4),
                monthly: Some(6),
                yearly: Some(2),
                within: Some("1y2mo".parse().unwrap()),
            },
            prune: true,
        },
        AgentCommand::Forget {
            tags: vec![],
            keep: Keep {
                daily: Some(1),
                ..Keep::default()
            },
            prune: false,
        },
        AgentCommand::VerifyRestore {
            snapshot: LATEST.into(),
            tags: tags(),
            scratch: "/scratch/restore".into(),
            keep: true,
        },
        AgentCommand::VerifyRestore {
            snapshot: "ab12cd".into(),
            tags: vec![],
            scratch: "/scratch".into(),
            keep: false,
        },
        AgentCommand::VerifyRestoreDatabase {
            kind: DatabaseKind::Postgres,
            snapshot: LATEST.into(),
            tags: tags(),
            host: "127.0.0.1".into(),
            port: 5432,
            assertions: vec![
                SqlAssertion {
                    name: "balance".into(),
                    database: "shop".into(),
                    sql: "SELECT sum(amount) = 0 FROM ledger WHERE note <> 'it''s \"odd\"'".into(),
                },
                SqlAssertion {
                    name: "--tag".into(),
                    database: "billing db".into(),
                    sql: "select true;\nselect 1".into(),
                },
            ],
        },
        AgentCommand::VerifyRestoreDatabase {
            kind: DatabaseKind::Mariadb,
            snapshot: "c0ffee".into(),
            tags: vec![],
            host: "localhost".into(),
            port: 3307,
            assertions: vec![],
        },
        AgentCommand::Verify {
            read_data: ReadData::No,
        },
        AgentCommand::Verify {
            read_data: ReadData::Subset { percent: 10 },
        },
        AgentCommand::Verify {
            read_data: ReadData::Subset { percent: 100 },
        },
        AgentCommand::Verify {
            read_data: ReadData::All,
        },
        AgentCommand::Snapshots { tags: tags() },
        AgentCommand::Snapshots { tags: vec![] },
        AgentCommand::Ls {
            snapshot: "0123abcd".into(),
            path: Some("media/a b".into()),
        },
        AgentCommand::Ls {
            snapshot: LATEST.into(),
            path: None,
        },
        AgentCommand::Cat {
            snapshot: LATEST.into(),
            path: "postgres/shop.dump".into(),
        },
        AgentCommand::CatalogShow { namespace: None },
        AgentCommand::CatalogShow {
            namespace: Some("shop".into()),
        },
    ];
    for command in commands {
        assert_eq!(understood(&command), command);
    }
}
