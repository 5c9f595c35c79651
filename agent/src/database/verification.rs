//! Proving a database backup restorable: restore every database into a throwaway server,
//! check that every database and table of the backup is there with the rows recorded at
//! backup time, and run the user's SQL assertions. What the backup's contents cause (a dump
//! that does not restore, rows missing, an assertion that does not hold) is a [`Finding`];
//! what keeps the checks from running (the server never answers, refuses the user) is a
//! [`DatabaseError`].

use std::thread::sleep;
use std::time::{Duration, Instant};

use hort_protocol::{DatabaseKind, SqlAssertion};

use super::{Connection, DatabaseError, RestoreOptions, RestoreScope, StreamSource, mariadb, postgres};

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What failed: a database, a table (`db.schema.table`, MariaDB `db.table`), an
    /// assertion's name, or `restore`.
    pub subject: String,
    /// How.
    pub detail: String,
}

/// A table of the backup and the rows it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTable {
    /// PostgreSQL: the schema; MariaDB: `None`.
    pub schema: Option<String>,
    /// Name.
    pub name: String,
    /// Rows recorded at backup time.
    pub rows: u64,
}

/// A database of the backup and its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDatabase {
    /// Name.
    pub name: String,
    /// Tables.
    pub tables: Vec<ExpectedTable>,
}

/// What the checks after the restore found.
#[derive(Debug, Default)]
pub struct Checked {
    /// One line per database checked.
    pub lines: Vec<String>,
    /// Failed checks.
    pub findings: Vec<Finding>,
    /// Tables checked.
    pub tables: u64,
}

/// Pause between two attempts to reach a starting server.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Waits until the server accepts a connection, for at most `wait` (one attempt when zero).
/// Only "not reachable (yet)" and "starting up" are waited out; a refused user fails at once.
pub fn wait_for_server(kind: DatabaseKind, conn: &Connection, wait: Duration) -> Result<(), DatabaseError> {
    let deadline = Instant::now() + wait;
    loop {
        let attempt = match kind {
            DatabaseKind::Postgres => postgres::connect(conn, "postgres").map(drop),
            DatabaseKind::Mariadb => mariadb::query(conn, "SELECT 1").map(drop),
        };
        let starting = match &attempt {
            Err(DatabaseError::Unreachable { .. }) => true,
            Err(DatabaseError::Query(message)) => message.contains("the database system is"),
            _ => false,
        };
        if !starting || Instant::now() + RETRY_PAUSE > deadline {
            return attempt;
        }
        tracing::info!("waiting for the database server to accept connections");
        sleep(RETRY_PAUSE);
    }
}

/// The databases and tables of the backup in `source`, with their recorded rows.
pub fn expected(kind: DatabaseKind, source: &dyn StreamSource) -> Result<Vec<ExpectedDatabase>, DatabaseError> {
    let database = |name, tables: Vec<ExpectedTable>| ExpectedDatabase { name, tables };
    let table = |schema, name, rows| ExpectedTable { schema, name, rows };
    Ok(match kind {
        DatabaseKind::Postgres => postgres::manifest(source)?
            .databases
            .into_iter()
            .map(|db| {
                let tables = db.tables.into_iter();
                database(db.name, tables.map(|t| table(Some(t.schema), t.name, t.rows)).collect())
            })
            .collect(),
        DatabaseKind::Mariadb => mariadb::manifest(source)?
            .databases
            .into_iter()
            .map(|db| {
                let tables = db.tables.into_iter();
                database(db.name, tables.map(|t| table(None, t.name, t.rows)).collect())
            })
            .collect(),
    })
}

/// How [`restore_all`] ended.
#[derive(Debug)]
pub enum Restored {
    /// The restore ran to its end (row counts are left to [`check_restored`]).
    Complete,
    /// The restore tool failed, or a stream of the backup could not be read.
    Failed(Finding),
    /// A query of the restore failed (e.g. counting a table that is missing): what
    /// [`check_restored`] finds says more; this is the cause when it finds nothing.
    QueryFailed(Finding),
}

/// Restores the whole backup (databases with roles or users) into the empty server. What the
/// backup's contents cause is a [`Restored`] finding, not an error.
pub fn restore_all(
    kind: DatabaseKind,
    conn: &Connection,
    source: &dyn StreamSource,
) -> Result<Restored, DatabaseError> {
    let options = RestoreOptions {
        scope: RestoreScope::Server,
        clean: false,
    };
    let restored = match kind {
        DatabaseKind::Postgres => postgres::restore(conn, source, &options),
        DatabaseKind::Mariadb => mariadb::restore(conn, source, &options),
    };
    let finding = |e: DatabaseError| Finding {
        subject: "restore".into(),
        detail: e.to_string(),
    };
    match restored {
        Ok(_) | Err(DatabaseError::RowCountMismatch(_)) => Ok(Restored::Complete),
        Err(e @ (DatabaseError::RestoreFailed { .. } | DatabaseError::Source { .. })) => {
            Ok(Restored::Failed(finding(e)))
        }
        Err(e @ (DatabaseError::Query(_) | DatabaseError::NoSuchTable { .. })) => {
            tracing::warn!(error = %e, "a query of the restore failed");
            Ok(Restored::QueryFailed(finding(e)))
        }
        Err(e) => Err(e),
    }
}

/// Checks that every database and table of `expected` exists with its recorded rows.
pub fn check_restored(
    kind: DatabaseKind,
    conn: &Connection,
    expected: &[ExpectedDatabase],
) -> Result<Checked, DatabaseError> {
    let mut checked = Checked::default();
    for db in expected {
        let before = checked.findings.len();
        let counts = match kind {
            DatabaseKind::Postgres => postgres_counts(conn, db)?,
            DatabaseKind::Mariadb => mariadb_counts(conn, db)?,
        };
        let Some(counts) = counts else {
            checked.findings.push(Finding {
                subject: format!("database {}", db.name),
                detail: format!("missing after the restore (with its {} tables)", db.tables.len()),
            });
            continue;
        };
        for (table, restored) in db.tables.iter().zip(counts) {
            checked.tables += 1;
            let subject = match &table.schema {
                Some(schema) => format!("{}.{schema}.{}", db.name, table.name),
                None => format!("{}.{}", db.name, table.name),
            };
            let detail = match restored {
                None => "table missing after the restore".to_owned(),
                Some(rows) if rows != table.rows => {
                    format!("{rows} rows restored, {} recorded at backup time", table.rows)
                }
                Some(_) => continue,
            };
            checked.findings.push(Finding { subject, detail });
        }
        let verdict = if checked.findings.len() == before {
            "row counts match the backup"
        } else {
            "compared with the backup"
        };
        checked
            .lines
            .push(format!("database {}: {} tables, {verdict}", db.name, db.tables.len()));
    }
    Ok(checked)
}

/// Rows of each table of `db` (`None`: missing); `None` when the database is missing.
fn postgres_counts(conn: &Connection, db: &ExpectedDatabase) -> Result<Option<Vec<Option<u64>>>, DatabaseError> {
    let mut client = match postgres::connect(conn, &db.name) {
        Ok(client) => client,
        Err(DatabaseError::NoSuchDatabase(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let query_error = |e: ::postgres::Error| DatabaseError::Query(postgres::error_text(&e));
    let mut counts = Vec::new();
    for table in &db.tables {
        let name = format!(
            "{}.{}",
            postgres::quote_ident(table.schema.as_deref().unwrap_or("public")),
            postgres::quote_ident(&table.name)
        );
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .map_err(query_error)?
            .get(0);
        if !exists {
            counts.push(None);
            continue;
        }
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM ONLY {name}"), &[])
            .map_err(query_error)?
            .get(0);
        counts.push(Some(rows as u64));
    }
    Ok(Some(counts))
}

/// Rows of each table of `db` (`None`: missing); `None` when the database is missing.
fn mariadb_counts(conn: &Connection, db: &ExpectedDatabase) -> Result<Option<Vec<Option<u64>>>, DatabaseError> {
    let literal = mariadb::quote_literal(&db.name);
    let schema = format!("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {literal}");
    if mariadb::query(conn, &schema)?.is_empty() {
        return Ok(None);
    }
    let present: std::collections::HashSet<String> = mariadb::query(
        conn,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {literal} AND TABLE_TYPE = 'BASE TABLE'"
        ),
    )?
    .into_iter()
    .filter_map(|row| row.into_iter().next())
    .collect();
    let mut counts = Vec::new();
    for table in &db.tables {
        if !present.contains(&table.name) {
            counts.push(None);
            continue;
        }
        let sql = format!(
            "SELECT COUNT(*) FROM {}.{}",
            mariadb::quote_ident(&db.name),
            mariadb::quote_ident(&table.name)
        );
        let rows = mariadb::query(conn, &sql)?;
        let count = rows.first().and_then(|r| r.first()).and_then(|c| c.parse().ok());
        counts.push(Some(count.unwrap_or(u64::MAX)));
    }
    Ok(Some(counts))
}

/// Runs `assertion` in its database: the checked line when it returned one true value, else
/// the finding that says what it returned.
pub fn run_assertion(
    kind: DatabaseKind,
    conn: &Connection,
    assertion: &SqlAssertion,
    databases: &[String],
) -> Result<String, Finding> {
    let fail = |detail: String| Finding {
        subject: format!("assertion {}", assertion.name),
        detail,
    };
    if !databases.contains(&assertion.database) {
        return Err(fail(format!(
            "database `{}` is not in the backup (it has: {})",
            assertion.database,
            super::list(databases.iter())
        )));
    }
    let rows = match kind {
        DatabaseKind::Postgres => postgres_rows(conn, &assertion.database, &assertion.sql),
        DatabaseKind::Mariadb => mariadb::query_in(conn, Some(&assertion.database), &assertion.sql).map(|rows| {
            rows.into_iter()
                .map(|row| row.into_iter().map(|v| (v != "NULL").then_some(v)).collect())
                .collect()
        }),
    }
    .map_err(|e| fail(format!("SQL error in database `{}`: {e}", assertion.database)))?;
    match rows.as_slice() {
        [row] => match row.as_slice() {
            [Some(value)] if ["t", "true", "1"].contains(&value.to_ascii_lowercase().as_str()) => {
                Ok(format!("assertion {} ({}): true", assertion.name, assertion.database))
            }
            [Some(value)] => Err(fail(format!("returned `{}`, not true", shortened(value)))),
            [None] => Err(fail("returned NULL, not true".into())),
            columns => Err(fail(format!("returned {} columns, not one", columns.len()))),
        },
        rows => Err(fail(format!("returned {} rows, not one", rows.len()))),
    }
}

/// The rows `sql` returns in database `db`, as text (`None`: NULL).
fn postgres_rows(conn: &Connection, db: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, DatabaseError> {
    use ::postgres::SimpleQueryMessage;
    let mut client = postgres::connect(conn, db)?;
    let messages = client
        .simple_query(sql)
        .map_err(|e| DatabaseError::Query(postgres::error_text(&e)))?;
    Ok(messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect()),
            _ => None,
        })
        .collect())
}

/// `value` cut to 80 characters for a message.
fn shortened(value: &str) -> String {
    match value.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}
