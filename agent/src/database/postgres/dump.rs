//! Backup: globals, one `pg_dump` per database in an exported snapshot while a second session
//! counts the rows, then the manifest.

use std::collections::BTreeMap;

use crate::database::process;
use crate::database::{Connection, DatabaseError, StreamSink, major_minor, write_manifest};

use super::{
    GLOBALS_STREAM, MANIFEST_STREAM, PgBackupOptions, PgDatabase, PgManifest, PgTable, client_version, connect,
    count_rows_of, database_stream, dbname_conninfo, query_error, quote_literal, server_major, tool,
};

/// Backs up the server into `sink`: globals, one dump per database, then the manifest.
pub fn backup(
    conn: &Connection,
    options: &PgBackupOptions,
    sink: &mut dyn StreamSink,
) -> Result<PgManifest, DatabaseError> {
    let maintenance = options.maintenance_db.as_deref().unwrap_or("postgres");
    let mut client = connect(conn, maintenance)?;
    let (server_version, server_major) = server_major(&mut client)?;
    let client_version = client_version(conn, "pg_dump")?;
    let client_major = major_minor(&client_version).map(|v| v.0).unwrap_or(0);
    if client_major < server_major {
        return Err(DatabaseError::ClientTooOld {
            tool: "pg_dump".into(),
            client: client_version,
            server: server_version,
        });
    }
    let rows = client
        .query(
            "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype \
             FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname",
            &[],
        )
        .map_err(query_error)?;
    let mut all: BTreeMap<String, PgDatabase> = rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            (
                name.clone(),
                PgDatabase {
                    stream: database_stream(&name),
                    name,
                    owner: r.get(1),
                    encoding: r.get(2),
                    collate: r.get(3),
                    ctype: r.get(4),
                    tables: Vec::new(),
                },
            )
        })
        .collect();
    drop(client);
    let selected: Vec<PgDatabase> = if options.databases.is_empty() {
        all.into_values().collect()
    } else {
        let mut selected = Vec::new();
        for name in &options.databases {
            selected.push(
                all.remove(name)
                    .ok_or_else(|| DatabaseError::NoSuchDatabase(name.clone()))?,
            );
        }
        selected
    };
    // The size on disk estimates the dump's size (the progress total); without it (no
    // privilege to ask), progress has no total.
    let names: Vec<String> = selected.iter().map(|d| d.name.clone()).collect();
    match connect(conn, maintenance).and_then(|mut c| {
        c.query_one(
            "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint FROM pg_database WHERE datname = ANY($1)",
            &[&names],
        )
        .map_err(query_error)
    }) {
        Ok(row) => sink.expect_total(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
        Err(e) => tracing::debug!(error = %e, "no size estimate for progress"),
    }

    if !options.skip_globals {
        let mut cmd = tool(conn, "pg_dumpall", maintenance);
        cmd.args(["--globals-only", "--no-sync"])
            .arg("--database")
            .arg(dbname_conninfo(maintenance));
        process::dump(cmd, "pg_dumpall", GLOBALS_STREAM, |out| {
            sink.put(GLOBALS_STREAM, out).map_err(|source| DatabaseError::Sink {
                stream: GLOBALS_STREAM.into(),
                source,
            })
        })?;
    }

    let mut databases = Vec::new();
    for mut db in selected {
        let mut client = connect(conn, &db.name)?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(query_error)?;
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .map_err(query_error)?
            .get(0);
        let mut tables = list_tables(&mut client)?;
        let mut cmd = tool(conn, "pg_dump", &db.name);
        cmd.args(["--format=custom", "--compress=0", "--no-sync"])
            .arg(format!("--snapshot={snapshot}"));
        let stream = db.stream.clone();
        // The rows are counted in a second session that imports the same snapshot, while
        // the dump runs: the counts see exactly the dumped data without delaying the dump.
        let (dumped, counted) = std::thread::scope(|scope| {
            let counting = scope.spawn(|| count_rows(conn, &db.name, &snapshot, &mut tables));
            let dumped = process::dump(cmd, "pg_dump", &stream, |out| {
                sink.put(&stream, out).map_err(|source| DatabaseError::Sink {
                    stream: stream.clone(),
                    source,
                })
            });
            (dumped, counting.join().expect("the row-counting thread does not panic"))
        });
        dumped?;
        counted?;
        db.tables = tables;
        client.batch_execute("COMMIT").map_err(query_error)?;
        databases.push(db);
    }

    let manifest = PgManifest {
        version: 1,
        server_version,
        client_version,
        globals: !options.skip_globals,
        databases,
    };
    write_manifest(sink, MANIFEST_STREAM, &manifest)?;
    Ok(manifest)
}

/// Tables of the connected database with their indexes and owned sequences (rows not yet
/// counted), read in the caller's transaction.
pub(super) fn list_tables(client: &mut postgres::Client) -> Result<Vec<PgTable>, DatabaseError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text,
                ARRAY(SELECT ic.relname::text FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
                      WHERE x.indrelid = c.oid
                        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = c.oid)
                      ORDER BY 1),
                ARRAY(SELECT s.relname::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                        AND d.refobjid = c.oid AND s.relkind = 'S' AND d.deptype IN ('a', 'i')
                      ORDER BY 1)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r'
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                               AND e.objid = c.oid AND e.deptype = 'e')
             ORDER BY 1, 2",
            &[],
        )
        .map_err(query_error)?;
    Ok(rows
        .iter()
        .map(|r| PgTable {
            schema: r.get(0),
            name: r.get(1),
            rows: 0,
            indexes: r.get(2),
            sequences: r.get(3),
        })
        .collect())
}

/// Counts the rows of `tables` of database `db` in a new session that imports the exported
/// `snapshot` (the dump's), so the counts are those of the dumped data.
pub(super) fn count_rows(
    conn: &Connection,
    db: &str,
    snapshot: &str,
    tables: &mut [PgTable],
) -> Result<(), DatabaseError> {
    let mut client = connect(conn, db)?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(snapshot)
        ))
        .map_err(query_error)?;
    for table in tables.iter_mut() {
        table.rows = count_rows_of(&mut client, table)?;
    }
    client.batch_execute("COMMIT").map_err(query_error)
}
