//! `verify-restore-postgres`, `verify-restore-mariadb`: every database of a backup restored
//! into a throwaway server beside the agent, then checked (databases, tables, row counts, the
//! user's assertions). The report is written also when a check failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hort_protocol::DatabaseKind;
use hort_protocol::report::{VerificationFailure, VerificationReport};

use super::CliError;
use super::args::DbVerifyArgs;
use super::context::Context;
use super::verify_cmds::finish;
use crate::database::verification::{self, Finding, Restored};
use crate::progress::Reporter;
use hort_engine::progress::Counters;
use hort_engine::snapshot_streams::SnapshotStreams;

fn failure(finding: Finding) -> VerificationFailure {
    VerificationFailure {
        subject: finding.subject,
        detail: finding.detail,
    }
}

pub(super) fn verify(ctx: &Context, kind: DatabaseKind, args: &DbVerifyArgs) -> Result<(), CliError> {
    let conn = args.server.connection(kind)?;
    let repo = Arc::new(ctx.open_indexed()?);
    let (id, snapshot) = repo.find_tagged_snapshot(&args.snapshot, &args.tags)?;
    let manifest = match kind {
        DatabaseKind::Postgres => crate::database::postgres::MANIFEST_STREAM,
        DatabaseKind::Mariadb => crate::database::mariadb::MANIFEST_STREAM,
    };
    if !snapshot.streams.iter().any(|s| s.name == manifest) {
        let what = if snapshot.tree.is_some() {
            "a volume's backup: verify it with verify-restore (into a scratch directory)".to_owned()
        } else {
            format!("not a {} backup (it has no stream `{manifest}`)", kind.display_name())
        };
        return Err(CliError::Usage(format!("snapshot {} is {what}", id.short())));
    }
    hort_engine::archive::make_snapshot_readable(&repo, &snapshot, ctx.archive_wait())?;
    let server = format!("{} at {}:{}", kind.display_name(), conn.host, conn.port);
    let failed = |what: &str| {
        let context = format!("verification of snapshot {}: {what} {server}", id.short());
        move |source| CliError::Database { context, source }
    };
    let wait = args.server_wait.to_std().unwrap_or_default();
    verification::wait_for_server(kind, &conn, wait).map_err(failed(&format!("waited {} s for", wait.as_secs())))?;
    let counters = Arc::new(Counters::default());
    let _ = counters.bytes_total.set(snapshot.stats.bytes);
    let source = SnapshotStreams::new(repo.clone(), snapshot, id, counters.clone());
    let expected = verification::expected(kind, &source).map_err(failed("reading the backup for"))?;

    let started = Instant::now();
    let reporter = Reporter::start(ctx.mode, "restore", counters.clone(), Duration::from_secs(1));
    let restored = verification::restore_all(kind, &conn, &source);
    drop(reporter);
    let restored = restored.map_err(failed("restore into"))?;
    let restore_seconds = started.elapsed().as_secs_f64();

    let checking = Instant::now();
    let checked = verification::check_restored(kind, &conn, &expected).map_err(failed("checking the restore in"))?;
    let mut failures: Vec<VerificationFailure> = Vec::new();
    match restored {
        Restored::Complete => {}
        Restored::Failed(finding) => failures.push(failure(finding)),
        // What is missing says more than the query that stumbled on it.
        Restored::QueryFailed(finding) if checked.findings.is_empty() => failures.push(failure(finding)),
        Restored::QueryFailed(_) => {}
    }
    failures.extend(checked.findings.into_iter().map(failure));
    let mut lines = checked.lines;
    let databases: Vec<String> = expected.iter().map(|db| db.name.clone()).collect();
    for assertion in &args.assertions {
        match verification::run_assertion(kind, &conn, assertion, &databases) {
            Ok(line) => lines.push(line),
            Err(finding) => failures.push(failure(finding)),
        }
    }
    finish(
        ctx,
        VerificationReport {
            snapshot_id: Some(id.to_hex()),
            ok: failures.is_empty(),
            restore_seconds,
            check_seconds: checking.elapsed().as_secs_f64(),
            checked: lines,
            failures,
            failures_total: 0,
            files: 0,
            bytes: counters.bytes.load(std::sync::atomic::Ordering::Relaxed),
            tables: checked.tables,
            packs: None,
        },
        serde_json::Value::Null,
    )
}
