//! `verify-restore-postgres|mariadb` as the operator runs them: backups of the test servers of
//! `scripts/db-servers.sh` (settings from `eval "$(scripts/db-servers.sh env)"`) restored into
//! their second ("target") servers, which stand in for the throwaway server of a verification.

mod support;

use std::process::Output;

use hort_protocol::report::decode;
use hort_protocol::{SqlAssertion, VerificationReport};
use support::db::{Server, env, unique};
use support::{Kind, Repo};

/// A repository and the database servers, as in an agent pod.
struct Agent {
    repo: Repo,
    server: Server,
    log: tempfile::NamedTempFile,
}

impl Agent {
    fn new(server: Server) -> Self {
        let repo = Repo::new(Kind::Fs);
        repo.init();
        Agent {
            repo,
            server,
            log: tempfile::NamedTempFile::new().unwrap(),
        }
    }

    fn target_port(&self) -> String {
        match self.server {
            Server::Postgres => env("HORT_TEST_PG_TARGET_PORT"),
            Server::MariaDb => env("HORT_TEST_MARIADB_TARGET_PORT"),
        }
    }

    fn command(&self) -> &'static str {
        match self.server {
            Server::Postgres => "postgres",
            Server::MariaDb => "mariadb",
        }
    }

    /// Runs `hort-agent ARGS…` with the database credentials; empties the termination log first.
    fn run(&self, args: &[&str]) -> Output {
        std::fs::write(self.log.path(), "").unwrap();
        self.repo
            .cmd(args)
            .env("HORT_DB_USER", self.server.user())
            .env("HORT_DB_PASSWORD", self.server.password())
            .env("HORT_TERMINATION_LOG", self.log.path())
            .output()
            .unwrap()
    }

    /// Backs up `db` of the source server with `tag`.
    fn backup(&self, db: &str, tag: &str) {
        let (command, host, port) = (
            format!("backup-{}", self.command()),
            self.server.host(),
            self.server.port(),
        );
        let out = self.run(&[
            &command,
            "--host",
            &host,
            "--port",
            &port,
            "--database",
            db,
            "--tag",
            tag,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Verifies the newest snapshot tagged `tag` into the target server; returns the output
    /// and the report (checking that neither holds the password).
    fn verify(&self, tag: &str, assertions: &[SqlAssertion], extra: &[&str]) -> (Output, Option<VerificationReport>) {
        let command = format!("verify-restore-{}", self.command());
        let (host, port) = (self.server.host(), self.target_port());
        let json: Vec<String> = assertions.iter().map(|a| serde_json::to_string(a).unwrap()).collect();
        let mut args = vec![
            command.as_str(),
            "latest",
            "--tag",
            tag,
            "--host",
            &host,
            "--port",
            &port,
        ];
        for assertion in &json {
            args.extend(["--assertion", assertion]);
        }
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let message = std::fs::read_to_string(self.log.path()).unwrap();
        let password = self.server.password();
        let texts = [
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
            message.clone(),
        ];
        for text in texts {
            assert!(!text.contains(&password), "the password is in the output:\n{text}");
        }
        (out, (!message.is_empty()).then(|| decode(&message).unwrap()))
    }

    /// Drops `db` on the target server (what a verification restored there).
    fn drop_restored(&self, db: &str) {
        let target = self.target_port();
        let mut cmd = match self.server {
            Server::Postgres => {
                let mut cmd = std::process::Command::new("psql");
                cmd.args(["-X", "-q", "-c", &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")])
                    .env("PGHOST", self.server.host())
                    .env("PGPORT", &target)
                    .env("PGUSER", self.server.user())
                    .env("PGPASSWORD", self.server.password())
                    .env("PGOPTIONS", "-c client_min_messages=warning")
                    .env("PGDATABASE", "postgres");
                cmd
            }
            Server::MariaDb => {
                let mut cmd = std::process::Command::new("mariadb");
                cmd.args([
                    "--no-defaults",
                    "--protocol=TCP",
                    "--ssl",
                    "-e",
                    &format!("DROP DATABASE IF EXISTS `{db}`"),
                ])
                .arg(format!("--host={}", self.server.host()))
                .arg(format!("--port={target}"))
                .arg(format!("--user={}", self.server.user()))
                .env("MYSQL_PWD", self.server.password());
                cmd
            }
        };
        assert!(cmd.status().unwrap().success());
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assertion(name: &str, database: &str, sql: &str) -> SqlAssertion {
    SqlAssertion {
        name: name.into(),
        database: database.into(),
        sql: sql.into(),
    }
}

/// A ledger whose entries sum to zero (the invariant the assertion checks); `broken` adds an
/// entry that breaks it before the backup.
fn ledger(server: Server, db: &str, broken: bool) {
    server.fresh_db(db);
    server.sql(
        Some(db),
        "CREATE TABLE accounts (id int PRIMARY KEY, name varchar(20));
         CREATE TABLE ledger (id int PRIMARY KEY, account int, amount int);
         INSERT INTO accounts VALUES (1, 'cash'), (2, 'bank');
         INSERT INTO ledger VALUES (1, 1, 100), (2, 2, -100), (3, 1, -40), (4, 2, 40);",
    );
    if broken {
        server.sql(Some(db), "INSERT INTO ledger VALUES (5, 1, 7);");
    }
}

/// Good data verifies with a true assertion; data that breaks the invariant fails naming the
/// assertion and what it returned, as do assertions that return NULL, several rows or an error.
fn assertions_decide(server: Server) {
    let db = unique(&format!("verify_{}", server.user()));
    let agent = Agent::new(server);
    ledger(server, &db, false);
    agent.backup(&db, "good");
    ledger(server, &db, true);
    agent.backup(&db, "broken");
    server.drop_db(&db);
    let balance = assertion("balance", &db, "SELECT sum(amount) = 0 FROM ledger");

    agent.drop_restored(&db);
    let (out, report) = agent.verify("good", std::slice::from_ref(&balance), &[]);
    agent.drop_restored(&db);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = report.expect("a report");
    assert!(report.ok && report.failures.is_empty(), "{report:?}");
    assert_eq!(report.tables, 2, "{report:?}");
    assert!(report.bytes > 0 && report.restore_seconds > 0.0, "{report:?}");
    assert!(
        report
            .checked
            .contains(&format!("database {db}: 2 tables, row counts match the backup")),
        "{:?}",
        report.checked
    );
    assert!(
        report.checked.contains(&format!("assertion balance ({db}): true")),
        "{:?}",
        report.checked
    );

    let null = assertion("null", &db, "SELECT NULL");
    let many = assertion("many", &db, "SELECT 1 FROM ledger");
    let error = assertion("error", &db, "SELECT nothing FROM nowhere");
    let elsewhere = assertion("elsewhere", "not_in_the_backup", "SELECT 1");
    let (out, report) = agent.verify("broken", &[balance, null, many, error, elsewhere], &[]);
    agent.drop_restored(&db);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let report = report.expect("a report also when a check failed");
    assert!(!report.ok && report.failures_total == 5, "{report:?}");
    let detail = |name: &str| {
        let subject = format!("assertion {name}");
        report
            .failures
            .iter()
            .find(|f| f.subject == subject)
            .unwrap_or_else(|| panic!("no failure of {subject}: {report:?}"))
            .detail
            .clone()
    };
    let false_value = if server == Server::Postgres { "`f`" } else { "`0`" };
    assert_eq!(detail("balance"), format!("returned {false_value}, not true"));
    assert_eq!(detail("null"), "returned NULL, not true");
    assert_eq!(detail("many"), "returned 5 rows, not one");
    assert!(
        detail("error").starts_with(&format!("SQL error in database `{db}`")),
        "{report:?}"
    );
    assert!(detail("error").contains("nowhere"), "{report:?}");
    assert!(detail("elsewhere").contains("not in the backup"), "{report:?}");
    assert!(
        report
            .checked
            .contains(&format!("database {db}: 2 tables, row counts match the backup")),
        "the data itself restored: {:?}",
        report.checked
    );
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn postgres_verification_runs_the_assertions_on_the_restored_data() {
    assertions_decide(Server::Postgres);
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn mariadb_verification_runs_the_assertions_on_the_restored_data() {
    assertions_decide(Server::MariaDb);
}

/// Rows missing from a backup: a copy of a MariaDB backup whose dump of `orders` lost a row
/// and whose dump of `notes` is empty (as if they had been cut short), written as a new
/// snapshot with every other stream unchanged, including the manifest and the row counts it
/// recorded at backup time. The verification names both tables.
#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn mariadb_verification_names_the_tables_whose_rows_are_missing() {
    let server = Server::MariaDb;
    let db = unique("verify_rows");
    let agent = Agent::new(server);
    server.fresh_db(&db);
    server.sql(
        Some(&db),
        "CREATE TABLE orders (id int PRIMARY KEY, item varchar(20));
         CREATE TABLE notes (id int PRIMARY KEY, text varchar(20));
         INSERT INTO orders VALUES (1, 'apple'), (2, 'pear'), (3, 'plum');
         INSERT INTO notes VALUES (1, 'hello');",
    );
    agent.backup(&db, "original");
    server.drop_db(&db);

    let work = tempfile::tempdir().unwrap();
    // `ls --json` of a database snapshot: one listing whose entries are its streams.
    let listing: serde_json::Value = serde_json::from_str(&agent.repo.ok(&["ls", "latest", "--json"])).unwrap();
    let names: Vec<String> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.is_empty(), "{listing}");
    // ... and the tables its manifest records, with their rows at backup time.
    let tables: Vec<(String, String, u64)> = listing["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let text = |k: &str| t[k].as_str().unwrap().to_owned();
            (text("database"), text("table"), t["rows"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        tables,
        [(db.clone(), "notes".into(), 1), (db.clone(), "orders".into(), 3)],
        "{listing}"
    );
    let mut specs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let out = agent.repo.run(&["restore", "latest", "--stream", name]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut text = String::from_utf8(out.stdout).unwrap();
        if name.ends_with("/orders.sql") {
            assert!(text.contains("(2,'pear'),"), "{text}");
            text = text.replace("(2,'pear'),", "");
        }
        if name.ends_with("/notes.sql") {
            text.clear();
        }
        let file = work.path().join(i.to_string());
        std::fs::write(&file, text).unwrap();
        specs.push(format!("{name}=cat {}", file.display()));
    }
    assert!(specs.len() > 4, "{names:?}");
    let mut args = vec!["backup", "--tag", "cut", "--tag", "hort.dev/source=mariadb"];
    for spec in &specs {
        args.extend(["--stream-command", spec]);
    }
    agent.repo.ok(&args);

    agent.drop_restored(&db);
    let (out, report) = agent.verify("original", &[], &[]);
    agent.drop_restored(&db);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(report.unwrap().ok);

    let (out, report) = agent.verify("cut", &[], &[]);
    agent.drop_restored(&db);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let report = report.expect("a report");
    let failures: Vec<(String, String)> = report
        .failures
        .iter()
        .map(|f| (f.subject.clone(), f.detail.clone()))
        .collect();
    assert_eq!(
        failures,
        [
            (format!("{db}.notes"), "table missing after the restore".to_owned()),
            (
                format!("{db}.orders"),
                "2 rows restored, 3 recorded at backup time".to_owned()
            ),
        ],
        "{report:?}"
    );
    assert!(
        report
            .checked
            .contains(&format!("database {db}: 2 tables, compared with the backup")),
        "{:?}",
        report.checked
    );
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn a_server_that_never_answers_ends_without_a_report() {
    let server = Server::Postgres;
    let db = unique("verify_down");
    let agent = Agent::new(server);
    ledger(server, &db, false);
    agent.backup(&db, "t");
    server.drop_db(&db);
    // A port nothing listens on: one attempt (`--server-wait 0`), then the error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let out = agent.run(&[
        "verify-restore-postgres",
        "latest",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--server-wait",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(agent.log.path()).unwrap().is_empty(),
        "no report"
    );
    assert!(stderr(&out).contains(&format!("127.0.0.1:{port}")), "{}", stderr(&out));
}

/// Forwards connections to `127.0.0.1:port` to `upstream`, from `delay` on: a server that
/// starts late, as the throwaway server beside the agent does.
fn late_server(port: u16, upstream: String, delay: std::time::Duration) {
    use std::net::{TcpListener, TcpStream};
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        for client in listener.incoming() {
            let client = client.unwrap();
            let server = TcpStream::connect(&upstream).unwrap();
            let (mut client_in, mut server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut client_in, &mut server_out));
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || std::io::copy(&mut server_in, &mut client_out));
        }
    });
}

#[test]
#[ignore = "needs PostgreSQL and MariaDB servers: run scripts/test.sh"]
fn the_verification_waits_for_a_server_that_starts_late() {
    let server = Server::Postgres;
    let db = unique("verify_late");
    let agent = Agent::new(server);
    ledger(server, &db, false);
    agent.backup(&db, "t");
    server.drop_db(&db);
    agent.drop_restored(&db);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let delay = std::time::Duration::from_secs(3);
    late_server(port, format!("{}:{}", server.host(), agent.target_port()), delay);
    let started = std::time::Instant::now();
    let port = port.to_string();
    let out = agent.run(&[
        "verify-restore-postgres",
        "latest",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--server-wait",
        "1m",
    ]);
    agent.drop_restored(&db);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    let report: VerificationReport = decode(&std::fs::read_to_string(agent.log.path()).unwrap()).unwrap();
    assert!(report.ok && report.tables == 2, "{report:?}");
}
