//! PostgreSQL backup and restore against a real server (`scripts/db-servers.sh start`).
//!
//! The streams go to a directory ([`DirStreams`]), so these tests see the library alone;
//! `cli_database.rs` runs the CLI with a repository. Tests run one at a time (the killed-dump
//! test kills this process's `pg_dump` child).

#[path = "support/db.rs"]
mod db;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use hort_agent::database::postgres::{self, PgBackupOptions};
use hort_agent::database::{Connection, DatabaseError, DirStreams};
use hort_agent::database::{RestoreOptions, RestoreScope};

static SERIAL: Mutex<()> = Mutex::new(());

fn conn() -> Connection {
    db::Server::Postgres.connection()
}

fn client_cmd(tool: &str, db: &str) -> Command {
    let c = conn();
    let mut cmd = Command::new(tool);
    cmd.env("PGHOST", &c.host)
        .env("PGPORT", c.port.to_string())
        .env("PGUSER", &c.user)
        .env("PGPASSWORD", c.password.as_ref().unwrap().expose())
        .env("PGDATABASE", db)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn psql(db: &str, sql: &str) -> String {
    let out = client_cmd("psql", db)
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn fresh_db(name: &str) {
    psql("postgres", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql("postgres", &format!("CREATE DATABASE {name}"));
}

fn pgbench_init(db: &str, scale: u32) {
    let out = client_cmd("pgbench", db)
        .args(["-i", "-q", "-s", &scale.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A sink that kills `pg_dump` after the first megabyte of a database dump.
#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn backup_under_pgbench_load_restores_with_exact_invariants() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bench = db::unique_name("hort_bench");
    let other = db::unique_name("hort_other");
    let restored = db::unique_name("hort_bench_restored");
    fresh_db(&bench);
    fresh_db(&other);
    psql("postgres", &format!("DROP DATABASE IF EXISTS {restored} WITH (FORCE)"));
    pgbench_init(&bench, 5);
    psql(
        &other,
        "CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) SELECT 'n' || g FROM generate_series(1, 1000) g",
    );

    let mut load: Child = client_cmd("pgbench", &bench)
        .args(["-n", "-c", "4", "-j", "2", "-T", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let mut streams = DirStreams::new(dir.path());
    let options = PgBackupOptions {
        databases: vec![bench.clone(), other.clone()],
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let manifest = postgres::backup(&conn(), &options, &mut streams).unwrap();
    let took = started.elapsed();
    std::thread::sleep(std::time::Duration::from_secs(1));
    load.kill().unwrap();
    load.wait().unwrap();
    eprintln!("backup of {bench} (pgbench -s 5) under load: {took:?}");

    let db = &manifest.databases[0];
    let history = db.tables.iter().find(|t| t.name == "pgbench_history").unwrap();
    assert!(history.rows > 0, "the write load ran before and during the backup");
    let live_history: u64 = psql(&bench, "SELECT count(*) FROM pgbench_history").parse().unwrap();
    assert!(
        live_history > history.rows,
        "the load went on after the dump's snapshot"
    );
    assert!(dir.path().join("postgres/globals.sql").exists());

    let report = postgres::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Database {
                name: bench.clone(),
                rename: Some(restored.clone()),
            },
            clean: false,
        },
    )
    .unwrap();
    assert_eq!(report.databases, [restored.as_str()]);
    assert!(report.tables.iter().all(|t| t.expected == t.restored));
    let sums = psql(
        &restored,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(delta) FROM pgbench_history), \
         (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), \
         (SELECT count(*) FROM pgbench_history)",
    );
    let sums: Vec<&str> = sums.split('|').collect();
    assert_eq!(sums[0], sums[1], "accounts vs history: {sums:?}");
    assert_eq!(sums[0], sums[2], "accounts vs tellers: {sums:?}");
    assert_eq!(sums[0], sums[3], "accounts vs branches: {sums:?}");
    assert_eq!(sums[4], history.rows.to_string());
    // The primary keys came back with the tables.
    assert_eq!(
        psql(
            &restored,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND connamespace = 'public'::regnamespace"
        ),
        "3"
    );

    // Restoring again under the same name without clean names what is in the way.
    let err = postgres::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Database {
                name: bench.clone(),
                rename: Some(restored.clone()),
            },
            clean: false,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, DatabaseError::ExistingObjects { database, objects } if *database == restored && objects.contains(&"table public.pgbench_accounts".to_string())),
        "{err}"
    );
    // With clean it replaces the database.
    postgres::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Database {
                name: bench.clone(),
                rename: Some(restored.clone()),
            },
            clean: true,
        },
    )
    .unwrap();

    // The whole backup into a fresh server: roles, both databases, the same invariants.
    let mut target = conn();
    target.port = db::Server::Postgres.target_port();
    let report = postgres::restore(
        &target,
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Server,
            clean: true,
        },
    )
    .unwrap();
    assert_eq!(report.databases, [bench.as_str(), other.as_str()]);
    let on_target = |db: &str, sql: &str| {
        let out = client_cmd("psql", db)
            .env("PGPORT", target.port.to_string())
            .args(["-X", "-At", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let target_sums = on_target(
        &bench,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(delta) FROM pgbench_history), \
         (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), \
         (SELECT count(*) FROM pgbench_history)",
    );
    assert_eq!(target_sums.split('|').collect::<Vec<_>>(), sums);
    assert_eq!(on_target(&other, "SELECT count(*) FROM notes"), "1000");

    for db in [&bench, &other, &restored] {
        psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
    }
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn one_table_restore_leaves_every_other_table_untouched() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let app = db::unique_name("hort_app");
    let other = db::unique_name("hort_app_other");
    fresh_db(&app);
    fresh_db(&other);
    psql(
        &app,
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); \
         CREATE INDEX items_name ON items (name); \
         CREATE TABLE orders (id int PRIMARY KEY, item int REFERENCES items (id)); \
         INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 500) g; \
         INSERT INTO orders SELECT g, g FROM generate_series(1, 300) g",
    );
    psql(
        &other,
        "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 7)",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut streams = DirStreams::new(dir.path());
    postgres::backup(
        &conn(),
        &PgBackupOptions {
            databases: vec![app.clone(), other.clone()],
            ..Default::default()
        },
        &mut streams,
    )
    .unwrap();

    // Damage: items loses rows, orders and the other database change.
    psql(
        &app,
        "DELETE FROM orders WHERE id > 250; UPDATE items SET name = 'changed'; INSERT INTO orders VALUES (1000, 1)",
    );
    psql(&other, "INSERT INTO items VALUES (8)");
    let orders_before = psql(&app, "SELECT count(*), sum(id) FROM orders");

    let tables_scope = |clean| RestoreOptions {
        scope: RestoreScope::Tables {
            database: app.clone(),
            tables: vec!["public.items".into()],
            into: None,
        },
        clean,
    };
    let err = postgres::restore(&conn(), &streams, &tables_scope(false)).unwrap_err();
    assert!(
        matches!(&err, DatabaseError::ExistingObjects { objects, .. } if objects == &["table public.items".to_string()]),
        "{err}"
    );
    // `orders` references items: restoring items alone with clean must drop it first, which the
    // foreign key forbids; drop the constraint the way a user would, then restore.
    psql(&app, "ALTER TABLE orders DROP CONSTRAINT orders_item_fkey");
    let report = postgres::restore(&conn(), &streams, &tables_scope(true)).unwrap();
    assert_eq!(report.tables.len(), 1);
    assert_eq!(report.tables[0].table, "public.items");
    assert_eq!(report.tables[0].restored, 500);
    assert_eq!(psql(&app, "SELECT count(*) FROM items WHERE name = 'changed'"), "0");
    assert_eq!(
        psql(
            &app,
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('items_name', 'items_pkey')"
        ),
        "2"
    );
    assert_eq!(
        psql(&app, "SELECT nextval('items_id_seq')"),
        "501",
        "the owned sequence came back"
    );
    assert_eq!(
        psql(&app, "SELECT count(*), sum(id) FROM orders"),
        orders_before,
        "orders untouched"
    );
    assert_eq!(
        psql(&other, "SELECT count(*) FROM items"),
        "8",
        "the other database untouched"
    );

    // A table or database that is not in the backup is named.
    let err = postgres::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Tables {
                database: app.clone(),
                tables: vec!["nosuch".into()],
                into: None,
            },
            clean: false,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("table `nosuch`"), "{err}");
    let err = postgres::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Database {
                name: "nosuchdb".into(),
                rename: None,
            },
            clean: false,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("database `nosuchdb`"), "{err}");
    for db in [&app, &other] {
        psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
    }
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn bad_credentials_hosts_databases_and_killed_dumps_are_clear_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut streams = DirStreams::new(dir.path());

    let refused = db::assert_clear_connection_errors(db::Server::Postgres, &mut streams, |conn, databases, streams| {
        let options = PgBackupOptions {
            databases,
            ..Default::default()
        };
        postgres::backup(conn, &options, streams).map(drop)
    });
    let user = db::Server::Postgres.user();
    assert!(refused.to_string().contains(&format!("user `{user}`")), "{refused}");

    let big = db::unique_name("hort_killed");
    fresh_db(&big);
    pgbench_init(&big, 2);
    let mut killing = db::KillingSink {
        streams: DirStreams::new(dir.path().join("killed")),
        program: "pg_dump",
        password: db::Server::Postgres.password(),
        head: 1 << 20,
        killed_in: |name| name.ends_with(".dump"),
    };
    let err = postgres::backup(
        &conn(),
        &PgBackupOptions {
            databases: vec![big.clone()],
            ..Default::default()
        },
        &mut killing,
    )
    .unwrap_err();
    assert!(
        matches!(&err, DatabaseError::DumpFailed { stream, reason } if stream.contains(&big) && reason.contains("killed by signal 9")),
        "{err}"
    );
    assert!(
        !dir.path().join("killed/postgres/manifest.json").exists(),
        "no manifest: the backup does not look complete"
    );
    let err = postgres::restore(
        &conn(),
        &DirStreams::new(dir.path().join("killed")),
        &RestoreOptions {
            scope: RestoreScope::Server,
            clean: false,
        },
    )
    .unwrap_err();
    assert!(matches!(err, DatabaseError::Manifest { .. }), "{err}");
    psql("postgres", &format!("DROP DATABASE {big} WITH (FORCE)"));
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn a_database_name_that_looks_like_a_connection_string_stays_a_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let source = db::unique_name("hort_hostile_src");
    // Restored under a name that libpq would read as "connect to another host".
    let hostile = format!("{}' host=nowhere.invalid dbname=postgres", db::unique_name("x"));
    fresh_db(&source);
    psql(
        &source,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 7)",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut streams = DirStreams::new(dir.path());
    let options = PgBackupOptions {
        databases: vec![source.clone()],
        skip_globals: true,
        ..Default::default()
    };
    postgres::backup(&conn(), &options, &mut streams).unwrap();
    let report = postgres::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Database {
                name: source.clone(),
                rename: Some(hostile.clone()),
            },
            clean: false,
        },
    )
    .unwrap();
    assert_eq!(report.databases, [hostile.as_str()]);
    let quoted = hostile.replace('\'', "''");
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{quoted}'")
        ),
        "1"
    );
    let out = client_cmd("psql", "postgres")
        .env("PGDATABASE", &hostile)
        .args(["-X", "-At", "-c", "SELECT count(*) FROM t"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "7",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    psql(
        "postgres",
        &format!("DROP DATABASE \"{}\" WITH (FORCE)", hostile.replace('"', "\"\"")),
    );
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn a_dump_announces_its_estimated_size_for_progress() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = db::unique_name("hort_estimate");
    fresh_db(&name);
    psql(
        &name,
        "CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS body FROM generate_series(1, 20000) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut sink = db::Estimating::new(DirStreams::new(dir.path()));
    let options = PgBackupOptions {
        databases: vec![name.clone()],
        skip_globals: true,
        ..Default::default()
    };
    postgres::backup(&conn(), &options, &mut sink).unwrap();
    let estimate = sink.estimate.expect("an estimate before the dumps");
    assert!(
        estimate >= sink.stored,
        "the database's size ({estimate}) bounds its dump ({})",
        sink.stored
    );
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn replayed_roles_run_no_psql_backslash_command() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let source = db::unique_name("hort_meta_src");
    fresh_db(&source);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = DirStreams::new(dir.path());
    let options = PgBackupOptions {
        databases: vec![source.clone()],
        ..Default::default()
    };
    postgres::backup(&conn(), &options, &mut streams).unwrap();
    // A snapshot whose roles stream Hort did not write: psql would run `\!` as a shell command.
    let marker = dir.path().join("shell-command-ran");
    let globals = dir.path().join("postgres/globals.sql");
    let mut text = std::fs::read_to_string(&globals).unwrap();
    text.push_str(&format!("SELECT 1; \\! touch {}\n", marker.display()));
    std::fs::write(&globals, text).unwrap();
    let mut target = conn();
    target.port = db::Server::Postgres.target_port();
    let restore = RestoreOptions {
        scope: RestoreScope::Server,
        clean: true,
    };
    let err = postgres::restore(&target, &streams, &restore).unwrap_err();
    assert!(!marker.exists(), "the backslash command ran");
    assert!(err.to_string().contains("restricted"), "{err}");
    psql("postgres", &format!("DROP DATABASE {source}"));
}
