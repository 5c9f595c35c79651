//! `hort-agent backup-postgres|backup-mariadb|restore-postgres|restore-mariadb` as the operator
//! runs them: the real binary, a filesystem repository and the real database servers of
//! `scripts/db-servers.sh start` (settings from `eval "$(scripts/db-servers.sh env)"`).

mod support;

use std::path::PathBuf;
use std::process::Output;

use hort_protocol::report::decode;
use hort_protocol::{BackupReport, RestoreReport};
use serde_json::Value;
use support::db::{Server, unique};
use support::{Kind, Repo};

/// A repository plus the database credentials and a termination log, as in an agent pod.
struct Agent {
    repo: Repo,
    server: Server,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn new(server: Server) -> Self {
        let repo = Repo::new(Kind::Fs);
        repo.init();
        let dir = tempfile::tempdir().unwrap();
        Agent {
            repo,
            server,
            log: dir.path().join("termination-log"),
            _dir: dir,
        }
    }

    /// Runs `hort-agent COMMAND --host H --port P ARGS…` with `password` in `HORT_DB_PASSWORD`.
    fn run_with_password(&self, command: &[&str], args: &[&str], password: &str) -> Output {
        let _ = std::fs::remove_file(&self.log);
        let (host, port) = (self.server.host(), self.server.port());
        let mut all: Vec<&str> = command.to_vec();
        all.extend(["--host", &host, "--port", &port]);
        all.extend_from_slice(args);
        self.repo
            .cmd(&all)
            .env("HORT_DB_USER", self.server.user())
            .env("HORT_DB_PASSWORD", password)
            .env("HORT_TERMINATION_LOG", &self.log)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its termination-log report.
    fn ok(&self, command: &[&str], args: &[&str]) -> Value {
        let out = self.run_with_password(command, args, &self.server.password());
        assert!(
            out.status.success(),
            "hort-agent {command:?} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&std::fs::read_to_string(&self.log).expect("a report")).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, command: &[&str], args: &[&str], password: &str) -> String {
        let out = self.run_with_password(command, args, password);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "hort-agent {command:?} {args:?} succeeded");
        assert!(!self.log.exists(), "a failed command wrote a report");
        assert!(!stderr.contains(password), "the password is in the output:\n{stderr}");
        stderr
    }

    fn snapshots(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.repo.ok(&["snapshots", "--json"])).unwrap()["snapshots"]
            .as_array()
            .unwrap()
            .clone()
    }
}

fn assert_backup_report(report: &Value) {
    let typed: BackupReport = decode(&report.to_string()).unwrap_or_else(|e| panic!("{e}: {report}"));
    assert!(typed.bytes_read > 0, "{report}");
    assert!(typed.files > 0, "{report}");
}

fn assert_restore_report(report: &Value, snapshot: &Value) {
    let typed: RestoreReport = decode(&report.to_string()).unwrap_or_else(|e| panic!("{e}: {report}"));
    assert_eq!(Some(typed.snapshot_id.as_str()), snapshot.as_str());
    assert!(typed.bytes_restored > 0, "{report}");
    assert!(!typed.row_counts.is_empty(), "{report}");
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn postgres_database_restores_under_a_new_name_and_one_table_alone() {
    let pg = Server::Postgres;
    let (db, copy, tables_only) = (unique("cli_pg"), unique("cli_pg_copy"), unique("cli_pg_tables"));
    pg.fresh_db(&db);
    pg.sql(
        Some(&db),
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE orders (id serial PRIMARY KEY, customer int REFERENCES customers, item text);
         CREATE INDEX orders_item ON orders (item);
         INSERT INTO customers (name) SELECT 'customer ' || i FROM generate_series(1, 50) i;
         INSERT INTO orders (customer, item) SELECT 1 + i % 50, 'item ' || i FROM generate_series(1, 30000) i;",
    );
    let agent = Agent::new(pg);

    let backup = agent.ok(
        &["backup-postgres"],
        &["--database", &db, "--tag", "hort.dev/backup-job=nightly"],
    );
    assert_backup_report(&backup);
    let snapshots = agent.snapshots();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["id"], backup["snapshotId"]);
    let tags: Vec<&str> = snapshots[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["hort.dev/backup-job=nightly", "hort.dev/source=postgres"]);

    // The whole database under a new name, found as `latest` by tag.
    pg.drop_db(&copy);
    let restore = agent.ok(
        &["restore-postgres", "latest"],
        &[
            "--tag",
            "hort.dev/backup-job=nightly",
            "--database",
            &format!("{db}={copy}"),
        ],
    );
    assert_restore_report(&restore, &backup["snapshotId"]);
    assert_eq!(
        restore["rowCounts"][format!("{copy}.public.orders")],
        30000,
        "{restore}"
    );
    assert_eq!(
        restore["rowCounts"][format!("{copy}.public.customers")],
        50,
        "{restore}"
    );
    for table in ["customers", "orders"] {
        assert_eq!(pg.rows(&copy, table), pg.rows(&db, table), "{table} differs");
    }

    // A second restore without --clean refuses to touch the existing database.
    let short = &backup["snapshotId"].as_str().unwrap()[..8];
    let err = agent.fails(
        &["restore-postgres", short],
        &["--database", &format!("{db}={copy}")],
        &pg.password(),
    );
    assert!(err.contains(&format!("`{copy}`")), "{err}");

    // One table into another (existing) database.
    pg.fresh_db(&tables_only);
    let restore = agent.ok(
        &["restore-postgres", short],
        &["--database", &format!("{db}={tables_only}"), "--table", "customers"],
    );
    assert_eq!(
        restore["rowCounts"],
        serde_json::json!({format!("{tables_only}.public.customers"): 50})
    );
    assert_eq!(pg.rows(&tables_only, "customers"), pg.rows(&db, "customers"));
    assert!(
        !pg.has_table(&tables_only, "orders"),
        "only the chosen table is restored"
    );

    // Names that are not in the backup are named, with what the backup has.
    let err = agent.fails(&["restore-postgres", short], &["--database", "shop"], &pg.password());
    assert!(
        err.contains(&format!("database `shop` is not in snapshot {short} (it has: {db})")),
        "{err}"
    );
    let err = agent.fails(
        &["restore-postgres", short],
        &["--database", &format!("{db}={tables_only}"), "--table", "invoices"],
        &pg.password(),
    );
    assert!(
        err.contains("table `invoices`") && err.contains("public.orders"),
        "{err}"
    );
    let err = agent.fails(&["restore-mariadb", short], &[], &pg.password());
    assert!(err.contains("not a MariaDB backup"), "{err}");

    for name in [&db, &copy, &tables_only] {
        pg.drop_db(name);
    }
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn postgres_wrong_password_and_a_dump_failing_half_way_leave_no_snapshot() {
    let pg = Server::Postgres;
    let agent = Agent::new(pg);
    let err = agent.fails(&["backup-postgres"], &[], "not-the-password");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(err.contains("no snapshot was written"), "{err}");
    assert!(agent.snapshots().is_empty());

    // The first database is dumped and stored, the second fails: still no snapshot.
    let (good, bad, role) = (unique("cli_pg_good"), unique("cli_pg_bad"), unique("cli_pg_limited"));
    pg.fresh_db(&good);
    pg.fresh_db(&bad);
    pg.sql(Some(&good), "CREATE TABLE t AS SELECT generate_series(1, 1000) AS i;");
    pg.sql(Some(&bad), "CREATE TABLE secret AS SELECT 1 AS i;");
    pg.sql(
        None,
        &format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'limited-pw';
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        ),
    );
    pg.sql(
        Some(&good),
        &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"),
    );
    let (host, port) = (pg.host(), pg.port());
    let out = agent
        .repo
        .cmd(&["backup-postgres", "--host", &host, "--port", &port, "--skip-globals"])
        .args(["--database", &good, "--database", &bad])
        .env("HORT_DB_USER", &role)
        .env("HORT_DB_PASSWORD", "limited-pw")
        .env("HORT_TERMINATION_LOG", &agent.log)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a backup without access to `secret` succeeded");
    assert!(
        err.contains("permission denied") && err.contains("no snapshot was written"),
        "{err}"
    );
    // Whether the first database's data reached a pack before the failure depends on timing;
    // what matters is that no snapshot refers to it (a later prune collects such packs).
    assert!(agent.snapshots().is_empty());
    assert!(!agent.log.exists());

    pg.drop_db(&good);
    pg.drop_db(&bad);
    pg.sql(None, &format!("DROP ROLE {role};"));
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn mariadb_round_trip_and_wrong_password() {
    let maria = Server::MariaDb;
    let (db, copy) = (unique("cli_maria"), unique("cli_maria_copy"));
    maria.fresh_db(&db);
    maria.sql(
        Some(&db),
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64), price DECIMAL(8,2)) ENGINE=InnoDB;
         CREATE TABLE notes (id INT PRIMARY KEY AUTO_INCREMENT, body TEXT) ENGINE=InnoDB;
         INSERT INTO items SELECT seq, CONCAT('item ', seq), seq / 7 FROM seq_1_to_2000;
         INSERT INTO notes (body) VALUES ('it''s \"quoted\"'), (NULL), ('line\\nbreak');",
    );
    let agent = Agent::new(maria);

    let err = agent.fails(&["backup-mariadb"], &["--database", &db], "not-the-password");
    assert!(
        err.contains("authentication failed") || err.contains("Access denied"),
        "{err}"
    );
    assert!(agent.snapshots().is_empty());

    let backup = agent.ok(&["backup-mariadb"], &["--database", &db, "--tag", "t=1"]);
    assert_backup_report(&backup);
    let snapshots = agent.snapshots();
    assert_eq!(snapshots.len(), 1);
    assert!(
        snapshots[0]["tags"]
            .as_array()
            .unwrap()
            .contains(&Value::from("hort.dev/source=mariadb"))
    );

    maria.drop_db(&copy);
    let restore = agent.ok(
        &["restore-mariadb", "latest"],
        &["--tag", "t=1", "--database", &format!("{db}={copy}")],
    );
    assert_restore_report(&restore, &backup["snapshotId"]);
    assert_eq!(
        restore["rowCounts"],
        serde_json::json!({format!("{copy}.items"): 2000, format!("{copy}.notes"): 3})
    );
    for table in ["items", "notes"] {
        assert_eq!(maria.rows(&copy, table), maria.rows(&db, table), "{table} differs");
    }

    // One table, replacing what is there.
    maria.sql(Some(&copy), "DELETE FROM notes;");
    let restore = agent.ok(
        &["restore-mariadb", "latest"],
        &["--database", &format!("{db}={copy}"), "--table", "notes", "--clean"],
    );
    assert_eq!(restore["rowCounts"], serde_json::json!({format!("{copy}.notes"): 3}));
    assert_eq!(maria.rows(&copy, "notes"), maria.rows(&db, "notes"));

    maria.drop_db(&db);
    maria.drop_db(&copy);
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn dump_tools_get_the_database_password_only_and_never_in_their_arguments() {
    use std::os::unix::fs::PermissionsExt;
    let pg = Server::Postgres;
    let agent = Agent::new(pg);
    // A `pg_dumpall` that records its arguments and environment, then fails.
    let tools = tempfile::tempdir().unwrap();
    let seen = tools.path().join("seen");
    let script = tools.path().join("pg_dumpall");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"ARGS $*\"; env; }} > '{}'\necho 'pg_dumpall: refusing' >&2\nexit 1\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", tools.path().display(), std::env::var("PATH").unwrap());
    let (host, port) = (pg.host(), pg.port());
    let out = agent
        .repo
        .cmd(&["backup-postgres", "--host", &host, "--port", &port])
        .env("PATH", path)
        .env("HORT_DB_USER", pg.user())
        .env("HORT_DB_PASSWORD", pg.password())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pg_dumpall: refusing") && err.contains("no snapshot was written"),
        "{err}"
    );
    let seen = std::fs::read_to_string(&seen).unwrap();
    let args = seen.lines().next().unwrap();
    assert!(!args.contains(&pg.password()), "password in the arguments: {args}");
    assert!(seen.contains(&format!("PGPASSWORD={}", pg.password())), "no PGPASSWORD");
    for secret in ["HORT_PASSWORD=", "HORT_DB_PASSWORD=", "AWS_SECRET_ACCESS_KEY="] {
        assert!(!seen.contains(secret), "{secret} reached the dump tool");
    }
    assert!(agent.snapshots().is_empty());
}

/// `--database DB --tls-mode MODE [--tls-ca CA]`.
fn tls_args<'a>(db: &'a str, mode: &'a str, ca: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["--database", db, "--tls-mode", mode];
    args.extend(ca.iter().flat_map(|ca| ["--tls-ca", *ca]));
    args
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn tls_verify_full_connects_only_to_a_server_whose_certificate_chains_to_the_ca() {
    // The test servers take TLS connections only; their certificate is signed by
    // HORT_TEST_DB_CA and names 127.0.0.1.
    let ca = support::db::env("HORT_TEST_DB_CA");
    let other_ca = support::db::env("HORT_TEST_DB_OTHER_CA");
    for (server, backup) in [
        (Server::Postgres, "backup-postgres"),
        (Server::MariaDb, "backup-mariadb"),
    ] {
        let db = unique("cli_tls");
        server.fresh_db(&db);
        server.sql(
            Some(&db),
            "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);",
        );
        let agent = Agent::new(server);
        let password = server.password();
        let verified = tls_args(&db, "verify-full", Some(&ca));
        assert_backup_report(&agent.ok(&[backup], &verified));

        let wrong_ca = tls_args(&db, "verify-full", Some(&other_ca));
        let err = agent.fails(&[backup], &wrong_ca, &password);
        assert!(
            err.to_lowercase().contains("certificate"),
            "{server:?}: a server whose certificate the CA did not sign is refused, and the message says so: {err}"
        );

        agent.fails(&[backup], &tls_args(&db, "disable", None), &password);

        let err = agent.fails(&[backup], &tls_args(&db, "verify-full", None), &password);
        assert!(err.contains("--tls-ca"), "{server:?}: {err}");
        assert_eq!(
            agent.snapshots().len(),
            1,
            "{server:?}: only the verified backup wrote a snapshot"
        );
        server.drop_db(&db);
    }
}
