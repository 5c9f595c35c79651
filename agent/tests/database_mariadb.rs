//! MariaDB backup and restore against a real server (`scripts/db-servers.sh start`).
//!
//! The streams go to a directory ([`DirStreams`]), so these tests see the library alone;
//! `cli_database.rs` runs the CLI with a repository. Tests run one at a time (the killed-dump
//! test kills this process's `mariadb-dump` child).

#[path = "support/db.rs"]
mod db;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hort_agent::database::mariadb::{self, MariaDbBackupOptions};
use hort_agent::database::{Connection, DatabaseError, DirStreams};
use hort_agent::database::{RestoreOptions, RestoreScope};

static SERIAL: Mutex<()> = Mutex::new(());

fn conn() -> Connection {
    db::Server::MariaDb.connection()
}

fn client() -> Command {
    let c = conn();
    let mut cmd = Command::new("mariadb");
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", c.host))
        .arg(format!("--port={}", c.port))
        .arg(format!("--user={}", c.user))
        .args(["--ssl", "--batch", "--skip-column-names"])
        .env("MYSQL_PWD", c.password.as_ref().unwrap().expose())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn sql(statements: &str) -> String {
    let mut child = client()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(statements.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mariadb {statements}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A sink that kills `mariadb-dump` while the first table's rows stream.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

const ACCOUNTS: u64 = 20_000;
const BALANCE: u64 = 1_000;

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn backup_under_transfer_load_keeps_the_total_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bank = db::unique_name("hort_bank");
    let other = db::unique_name("hort_bank_other");
    let restored = db::unique_name("hort_bank_restored");
    sql(&format!(
        "DROP DATABASE IF EXISTS {bank}; DROP DATABASE IF EXISTS {other}; DROP DATABASE IF EXISTS {restored};
         CREATE DATABASE {bank}; CREATE DATABASE {other};
         CREATE TABLE {bank}.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL, note VARCHAR(50)) ENGINE=InnoDB;
         CREATE TABLE {bank}.transfers (id BIGINT AUTO_INCREMENT PRIMARY KEY, src INT, dst INT, amount INT) ENGINE=InnoDB;
         USE {bank}; INSERT INTO {bank}.accounts SELECT seq, {BALANCE}, CONCAT('it''s (account) ', seq) FROM seq_1_to_{ACCOUNTS};
         CREATE TABLE {other}.t (x INT) ENGINE=InnoDB; INSERT INTO {other}.t VALUES (1), (2);"
    ));

    // Transfers between random accounts, each in one transaction, until stopped.
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let (manifest, dir) = std::thread::scope(|s| {
        for worker in 0..3u64 {
            let (stop, done, bank) = (&stop, &done, &bank);
            s.spawn(move || {
                let mut child = client().stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
                let mut stdin = child.stdin.take().unwrap();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ worker;
                while !stop.load(Ordering::Relaxed) {
                    let mut batch = String::new();
                    for _ in 0..50 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let (src, dst, amount) = (x % ACCOUNTS + 1, (x >> 20) % ACCOUNTS + 1, x % 50 + 1);
                        batch.push_str(&format!(
                            "START TRANSACTION; UPDATE {bank}.accounts SET balance = balance - {amount} WHERE id = {src}; \
                             UPDATE {bank}.accounts SET balance = balance + {amount} WHERE id = {dst}; \
                             INSERT INTO {bank}.transfers (src, dst, amount) VALUES ({src}, {dst}, {amount}); COMMIT;\n"
                        ));
                    }
                    stdin.write_all(batch.as_bytes()).unwrap();
                    done.fetch_add(50, Ordering::Relaxed);
                }
                drop(stdin);
                assert!(child.wait().unwrap().success());
            });
        }
        // Stops the writers also when the backup panics (else the scope never ends).
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(std::time::Duration::from_secs(2));
        let dir = tempfile::tempdir().unwrap();
        let mut streams = DirStreams::new(dir.path());
        let options = MariaDbBackupOptions {
            databases: vec![bank.clone(), other.clone()],
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let manifest = mariadb::backup(&conn(), &options, &mut streams).unwrap();
        eprintln!("backup of {ACCOUNTS} accounts under load: {:?}", started.elapsed());
        std::thread::sleep(std::time::Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        (manifest, dir)
    });
    eprintln!("{} transfers issued during the test", done.load(Ordering::Relaxed));
    let transfers = manifest.databases[0]
        .tables
        .iter()
        .find(|t| t.name == "transfers")
        .unwrap()
        .rows;
    assert!(transfers > 0, "transfers ran before the backup");
    let live: u64 = sql(&format!("SELECT COUNT(*) FROM {bank}.transfers")).parse().unwrap();
    assert!(
        live > transfers,
        "transfers went on after the snapshot ({live} > {transfers})"
    );
    assert!(dir.path().join("mariadb/users.sql").exists());

    let streams = DirStreams::new(dir.path());
    let report = mariadb::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Database {
                name: bank.clone(),
                rename: Some(restored.clone()),
            },
            clean: false,
        },
    )
    .unwrap();
    assert_eq!(report.databases, [restored.as_str()]);
    let totals = sql(&format!(
        "SELECT SUM(balance), COUNT(*), (SELECT COUNT(*) FROM {restored}.transfers) FROM {restored}.accounts"
    ));
    assert_eq!(totals, format!("{}\t{ACCOUNTS}\t{transfers}", ACCOUNTS * BALANCE));
    assert_eq!(
        sql(&format!("SELECT note FROM {restored}.accounts WHERE id = 7")),
        "it's (account) 7",
        "quotes and parentheses survive"
    );
    // The other database was neither touched nor renamed.
    assert_eq!(sql(&format!("SELECT COUNT(*) FROM {other}.t")), "2");

    let err = mariadb::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Database {
                name: bank.clone(),
                rename: Some(restored.clone()),
            },
            clean: false,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, DatabaseError::ExistingObjects { database, objects } if *database == restored && objects.contains(&"table accounts".to_string())),
        "{err}"
    );

    // The whole backup into a fresh server: users, both databases, the same total.
    let mut target = conn();
    target.port = db::Server::MariaDb.target_port();
    let report = mariadb::restore(
        &target,
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Server,
            clean: true,
        },
    )
    .unwrap();
    assert_eq!(report.databases, [bank.as_str(), other.as_str()]);
    let on_target = |statement: &str| {
        let out = client()
            .arg(format!("--port={}", target.port))
            .args(["-e", statement])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(
        on_target(&format!("SELECT SUM(balance), COUNT(*) FROM {bank}.accounts")),
        format!("{}\t{ACCOUNTS}", ACCOUNTS * BALANCE)
    );
    assert_eq!(on_target(&format!("SELECT COUNT(*) FROM {other}.t")), "2");
    on_target(&format!("DROP DATABASE {bank}; DROP DATABASE {other};"));
    sql(&format!(
        "DROP DATABASE {bank}; DROP DATABASE {other}; DROP DATABASE {restored};"
    ));
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn one_table_restore_leaves_every_other_table_untouched() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let shop = db::unique_name("hort_shop");
    let crm = db::unique_name("hort_crm");
    sql(&format!(
        "DROP DATABASE IF EXISTS {shop}; DROP DATABASE IF EXISTS {crm};
         CREATE DATABASE {shop}; CREATE DATABASE {crm};
         CREATE TABLE {shop}.items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40), KEY (name));
         CREATE TABLE {shop}.audit (id INT AUTO_INCREMENT PRIMARY KEY, item INT);
         USE {shop};
         -- Unqualified names: bodies with `db.table` names would point at the old database after a rename.
         CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (item) VALUES (NEW.id);
         INSERT INTO {shop}.items (name) SELECT CONCAT('item ', seq) FROM seq_1_to_300;
         CREATE TABLE {crm}.items (id INT); INSERT INTO {crm}.items VALUES (1), (2), (3);
         CREATE VIEW {shop}.item_names AS SELECT name FROM {shop}.items;
         CREATE PROCEDURE {shop}.touch() SELECT 1;"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut streams = DirStreams::new(dir.path());
    mariadb::backup(
        &conn(),
        &MariaDbBackupOptions {
            databases: vec![shop.clone(), crm.clone()],
            ..Default::default()
        },
        &mut streams,
    )
    .unwrap();

    sql(&format!(
        "UPDATE {shop}.items SET name = 'changed'; DELETE FROM {shop}.items WHERE id > 100;
         DELETE FROM {shop}.audit WHERE id > 200; INSERT INTO {crm}.items VALUES (4);"
    ));
    let scope = |clean| RestoreOptions {
        scope: RestoreScope::Tables {
            database: shop.clone(),
            tables: vec!["items".into()],
            into: None,
        },
        clean,
    };
    let err = mariadb::restore(&conn(), &streams, &scope(false)).unwrap_err();
    assert!(
        matches!(&err, DatabaseError::ExistingObjects { objects, .. } if objects == &["table items".to_string()]),
        "{err}"
    );
    let report = mariadb::restore(&conn(), &streams, &scope(true)).unwrap();
    assert_eq!(report.tables.len(), 1);
    assert_eq!((report.tables[0].expected, report.tables[0].restored), (300, 300));
    assert_eq!(
        sql(&format!("SELECT COUNT(*) FROM {shop}.items WHERE name = 'changed'")),
        "0"
    );
    assert_eq!(
        sql(&format!("SELECT COUNT(*) FROM {shop}.audit")),
        "200",
        "audit untouched"
    );
    assert_eq!(
        sql(&format!("SELECT COUNT(*) FROM {crm}.items")),
        "4",
        "the other database untouched"
    );
    assert_eq!(
        sql(&format!(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{shop}'"
        )),
        "1",
        "the trigger came back with its table"
    );

    // Whole database under a new name: views and routines come along.
    let copy = db::unique_name("hort_shop_copy");
    sql(&format!("DROP DATABASE IF EXISTS {copy}"));
    mariadb::restore(
        &conn(),
        &streams,
        &RestoreOptions {
            scope: RestoreScope::Database {
                name: shop.clone(),
                rename: Some(copy.clone()),
            },
            clean: false,
        },
    )
    .unwrap();
    assert_eq!(sql(&format!("SELECT COUNT(*) FROM {copy}.item_names")), "300");
    assert_eq!(
        sql(&format!(
            "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{copy}'"
        )),
        "1"
    );

    let missing = RestoreOptions {
        scope: RestoreScope::Tables {
            database: shop.clone(),
            tables: vec!["nosuch".into()],
            into: None,
        },
        clean: false,
    };
    let err = mariadb::restore(&conn(), &streams, &missing).unwrap_err();
    assert!(err.to_string().contains("table `nosuch`"), "{err}");
    let into_missing = RestoreOptions {
        scope: RestoreScope::Tables {
            database: shop.clone(),
            tables: vec!["items".into()],
            into: Some("hort_no_such_db".into()),
        },
        clean: false,
    };
    let err = mariadb::restore(&conn(), &streams, &into_missing).unwrap_err();
    assert!(
        err.to_string().contains("database `hort_no_such_db` does not exist"),
        "{err}"
    );
    sql(&format!(
        "DROP DATABASE {shop}; DROP DATABASE {crm}; DROP DATABASE {copy};"
    ));
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn bad_credentials_hosts_databases_and_killed_dumps_are_clear_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut streams = DirStreams::new(dir.path());

    db::assert_clear_connection_errors(db::Server::MariaDb, &mut streams, |conn, databases, streams| {
        let options = MariaDbBackupOptions {
            databases,
            ..Default::default()
        };
        mariadb::backup(conn, &options, streams).map(drop)
    });

    let big = db::unique_name("hort_killed");
    sql(&format!(
        "DROP DATABASE IF EXISTS {big}; CREATE DATABASE {big};
         CREATE TABLE {big}.t (id INT PRIMARY KEY, pad CHAR(200));
         USE {big}; INSERT INTO {big}.t SELECT seq, REPEAT('x', 200) FROM seq_1_to_200000;"
    ));
    let mut killing = db::KillingSink {
        streams: DirStreams::new(dir.path().join("killed")),
        program: "mariadb-dump",
        password: db::Server::MariaDb.password(),
        head: 1 << 16,
        killed_in: |name| name.contains("/table/"),
    };
    let err = mariadb::backup(
        &conn(),
        &MariaDbBackupOptions {
            databases: vec![big.clone()],
            skip_users: true,
        },
        &mut killing,
    )
    .unwrap_err();
    assert!(
        matches!(&err, DatabaseError::DumpFailed { reason, .. } if reason.contains("killed by signal 9")),
        "{err}"
    );
    assert!(
        !dir.path().join("killed/mariadb/manifest.json").exists(),
        "no manifest: the backup does not look complete"
    );
    sql(&format!("DROP DATABASE {big}"));
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn a_dump_announces_its_estimated_size_for_progress() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = db::unique_name("hort_estimate");
    sql(&format!(
        "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name};
         CREATE TABLE {name}.t (id INT PRIMARY KEY, body VARCHAR(250));
         USE {name}; INSERT INTO t SELECT seq, REPEAT('x', 200) FROM seq_1_to_5000;
         ANALYZE TABLE t; -- the estimate comes from the server's table statistics"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut sink = db::Estimating::new(DirStreams::new(dir.path()));
    let options = MariaDbBackupOptions {
        databases: vec![name.clone()],
        skip_users: true,
    };
    mariadb::backup(&conn(), &options, &mut sink).unwrap();
    let estimate = sink.estimate.expect("an estimate before the dumps");
    assert!(estimate > 500_000, "5000 rows of 200 bytes: {estimate}");
    sql(&format!("DROP DATABASE {name}"));
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn replayed_streams_run_no_client_command() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = db::unique_name("hort_meta");
    sql(&format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY);"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut streams = DirStreams::new(dir.path());
    let options = MariaDbBackupOptions {
        databases: vec![db.clone()],
        ..Default::default()
    };
    mariadb::backup(&conn(), &options, &mut streams).unwrap();
    // A snapshot whose users stream Hort did not write: the client would run `\!` and `system`
    // as shell commands.
    let marker = dir.path().join("shell-command-ran");
    let users = dir.path().join(mariadb::USERS_STREAM);
    // First, before the line by which mariadb-dump itself turns the sandbox on.
    let text = std::fs::read_to_string(&users).unwrap();
    let hostile = format!("\\! touch {0}\nsystem touch {0}\n{text}", marker.display());
    std::fs::write(&users, hostile).unwrap();
    let mut target = conn();
    target.port = db::Server::MariaDb.target_port();
    let restore = RestoreOptions {
        scope: RestoreScope::Server,
        clean: true,
    };
    let err = mariadb::restore(&target, &streams, &restore).unwrap_err();
    assert!(!marker.exists(), "a client command ran");
    assert!(matches!(err, DatabaseError::RestoreFailed { .. }), "{err}");
    sql(&format!("DROP DATABASE {db};"));
}
