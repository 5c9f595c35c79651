//! The test database servers (`scripts/db-servers.sh start`, then
//! `eval "$(scripts/db-servers.sh env)"`) and their command-line clients.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// An environment variable set by `scripts/db-servers.sh env`; panics with how to set it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the servers with `scripts/db-servers.sh start` and load their \
             settings with `eval \"$(scripts/db-servers.sh env)\"` (scripts/test.sh does both)"
        )
    })
}

/// Which test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MariaDb,
}

impl Server {
    fn var(self, what: &str) -> String {
        match self {
            Server::Postgres => env(&format!("HORT_TEST_PG_{what}")),
            Server::MariaDb => env(&format!("HORT_TEST_MARIADB_{what}")),
        }
    }

    pub fn host(self) -> String {
        self.var("HOST")
    }

    pub fn port(self) -> String {
        self.var("PORT")
    }

    pub fn user(self) -> String {
        self.var("USER")
    }

    pub fn password(self) -> String {
        self.var("PASSWORD")
    }

    /// The port of the second server, the target of restores into another server.
    pub fn target_port(self) -> u16 {
        self.var("TARGET_PORT")
            .parse()
            .expect("the target port is a port number")
    }

    /// The agent's connection to the server.
    pub fn connection(self) -> hort_agent::database::Connection {
        hort_agent::database::Connection {
            host: self.host(),
            port: self.port().parse().expect("the port is a port number"),
            user: self.user(),
            password: Some(hort_agent::database::Password::new(self.password())),
            bin_dir: None,
            tls: Default::default(),
        }
    }

    /// Runs SQL statements (from stdin) in `db` (`None`: no database for MariaDB, `postgres`
    /// for PostgreSQL); returns the unaligned, tab-separated output.
    pub fn sql(self, db: Option<&str>, statements: &str) -> String {
        let mut cmd = match self {
            Server::Postgres => {
                let mut cmd = Command::new("psql");
                cmd.args(["-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
                    .env("PGHOST", self.host())
                    .env("PGPORT", self.port())
                    .env("PGUSER", self.user())
                    .env("PGPASSWORD", self.password())
                    .env("PGDATABASE", db.unwrap_or("postgres"));
                cmd
            }
            Server::MariaDb => {
                let mut cmd = Command::new("mariadb");
                // The test servers take TLS connections only.
                cmd.args([
                    "--no-defaults",
                    "--protocol=TCP",
                    "--ssl",
                    "--batch",
                    "--skip-column-names",
                ])
                .arg(format!("--host={}", self.host()))
                .arg(format!("--port={}", self.port()))
                .arg(format!("--user={}", self.user()))
                .env("MYSQL_PWD", self.password());
                if let Some(db) = db {
                    cmd.arg(format!("--database={db}"));
                }
                cmd
            }
        };
        let mut child = cmd
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the database client");
        child.stdin.take().unwrap().write_all(statements.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{self:?} {statements}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Drops database `name` if it exists.
    pub fn drop_db(self, name: &str) {
        match self {
            Server::Postgres => self.sql(None, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE);")),
            Server::MariaDb => self.sql(None, &format!("DROP DATABASE IF EXISTS `{name}`;")),
        };
    }

    /// Creates database `name` afresh.
    pub fn fresh_db(self, name: &str) {
        self.drop_db(name);
        match self {
            Server::Postgres => self.sql(None, &format!("CREATE DATABASE {name};")),
            Server::MariaDb => self.sql(None, &format!("CREATE DATABASE `{name}`;")),
        };
    }

    /// Every row of `table` in `db`, ordered by its first column.
    pub fn rows(self, db: &str, table: &str) -> String {
        self.sql(Some(db), &format!("SELECT * FROM {table} ORDER BY 1;"))
    }

    /// Whether `table` exists in `db`.
    pub fn has_table(self, db: &str, table: &str) -> bool {
        let query = match self {
            Server::Postgres => format!("SELECT count(*) FROM pg_tables WHERE tablename = '{table}';"),
            Server::MariaDb => format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{db}' AND table_name = '{table}';"
            ),
        };
        self.sql(Some(db), &query) != "0"
    }
}

/// A database name unique to this test process.
pub fn unique(base: &str) -> String {
    format!("{base}_{}", std::process::id())
}

/// `base` with this test process's id: names that parallel test runs do not share.
pub fn unique_name(base: &str) -> String {
    format!("{base}_{}", std::process::id())
}

/// Kills this process's children running `comm` (only ours, by id), checking first that
/// their command lines do not hold `secret`. Returns how many it killed.
pub fn kill_children(comm: &str, secret: &str) -> usize {
    let me = std::process::id().to_string();
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let child_comm = head.split_once(" (").map(|(_, c)| c).unwrap_or("");
        let ppid = tail.split(' ').nth(1).unwrap_or("");
        if child_comm == comm && ppid == me {
            let pid = entry.file_name().to_string_lossy().to_string();
            // Credentials never appear on a command line (readable by anyone in /proc).
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(secret),
                "password on the command line of {comm}"
            );
            assert!(Command::new("kill").args(["-9", &pid]).status().unwrap().success());
            killed += 1;
        }
    }
    killed
}

/// A sink that keeps the estimate a backup gives it and counts the bytes it stores.
pub struct Estimating {
    streams: hort_agent::database::DirStreams,
    /// The estimate, once given.
    pub estimate: Option<u64>,
    /// Bytes of all streams stored.
    pub stored: u64,
}

impl Estimating {
    /// Stores into `streams`.
    pub fn new(streams: hort_agent::database::DirStreams) -> Self {
        Self {
            streams,
            estimate: None,
            stored: 0,
        }
    }
}

impl hort_agent::database::StreamSink for Estimating {
    fn put(&mut self, name: &str, data: &mut dyn std::io::Read) -> std::io::Result<u64> {
        let n = self.streams.put(name, data)?;
        self.stored += n;
        Ok(n)
    }

    fn expect_total(&mut self, bytes: u64) {
        assert!(self.estimate.replace(bytes).is_none(), "one estimate per backup");
    }
}

/// A backup of `server` through `backup` (the connection, the databases to dump; the streams
/// go to `streams`) fails with a typed error that says what is wrong, and never shows the
/// password: with a wrong password, against a closed port, and of a database that does not
/// exist. Returns the error of the wrong password.
pub fn assert_clear_connection_errors(
    server: Server,
    streams: &mut hort_agent::database::DirStreams,
    backup: impl Fn(
        &hort_agent::database::Connection,
        Vec<String>,
        &mut hort_agent::database::DirStreams,
    ) -> Result<(), hort_agent::database::DatabaseError>,
) -> hort_agent::database::DatabaseError {
    use hort_agent::database::{DatabaseError, Password};

    let mut wrong = server.connection();
    wrong.password = Some(Password::new("not-the-password"));
    let refused = backup(&wrong, Vec::new(), streams).unwrap_err();
    assert!(matches!(refused, DatabaseError::Authentication { .. }), "{refused}");
    assert!(!refused.to_string().contains("not-the-password"));

    let mut down = server.connection();
    down.host = "127.0.0.1".into();
    down.port = 1;
    let err = backup(&down, Vec::new(), streams).unwrap_err();
    assert!(matches!(err, DatabaseError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");

    let err = backup(&server.connection(), vec!["hort_no_such_db".into()], streams).unwrap_err();
    assert!(
        err.to_string().contains("database `hort_no_such_db` does not exist"),
        "{err}"
    );
    refused
}

/// A sink that kills the dump command `program` (found by the password in its environment)
/// once the first stream that `killed_in` picks has delivered `head` bytes, then stores the
/// rest of that stream: a dump killed half-way.
pub struct KillingSink {
    /// Where the streams go.
    pub streams: hort_agent::database::DirStreams,
    /// The dump command's name (`pg_dump`, `mariadb-dump`).
    pub program: &'static str,
    /// The server's password, which finds the command among this process's children.
    pub password: String,
    /// Bytes read before the kill.
    pub head: usize,
    /// Whether the kill happens in the stream of this name.
    pub killed_in: fn(&str) -> bool,
}

impl hort_agent::database::StreamSink for KillingSink {
    fn put(&mut self, name: &str, data: &mut dyn std::io::Read) -> std::io::Result<u64> {
        use std::io::Read;

        if (self.killed_in)(name) {
            let mut head = vec![0u8; self.head];
            data.read_exact(&mut head)?;
            assert_eq!(kill_children(self.program, &self.password), 1);
            let mut chained = head.as_slice().chain(data);
            return self.streams.put(name, &mut chained);
        }
        self.streams.put(name, data)
    }
}
