//! The verifications of a volume snapshot (`verify-restore`) and of the repository
//! (`verify`), and what every verification shares: its report is written also when a check
//! failed, and the exit code is then `Damaged`.

use hort_protocol::units::Bytes;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hort_protocol::report::{PacksRead, VerificationFailure, VerificationReport};
use hort_protocol::{DatabaseKind, ExitCode};

use super::CliError;
use super::args::VerifyRestoreArgs;
use super::context::{Context, write_message};
use crate::progress::Reporter;
use hort_engine::id::Id;
use hort_engine::progress::Counters;
use hort_engine::restore_check;
use hort_engine::restorer::{self, RestoreOptions};
use hort_engine::snapshot::Snapshot;
use hort_engine::verify::{self, PacksToRead};

/// The packs `verify --read-data` or `--read-data-subset N%` asks to read.
pub(super) fn packs_to_read(read_data: bool, subset: Option<u8>) -> PacksToRead {
    match (read_data, subset) {
        (true, _) => PacksToRead::All,
        (false, Some(percent)) => PacksToRead::Share(percent),
        (false, None) => PacksToRead::None,
    }
}

/// Writes the report (within the message limit), prints it (as JSON with the fields of
/// `details` added), and fails with `Damaged` when a check failed.
pub(super) fn finish(
    ctx: &Context,
    mut report: VerificationReport,
    details: serde_json::Value,
) -> Result<(), CliError> {
    report.failures_total = report.failures.len() as u64;
    report.ok = report.failures.is_empty();
    write_message(&report.encode_within_limit());
    if ctx.json() {
        let mut line = serde_json::to_value(&report).unwrap_or_default();
        line["type"] = "verification".into();
        if let (Some(line), serde_json::Value::Object(details)) = (line.as_object_mut(), details) {
            line.extend(details);
        }
        ctx.print_json(&line);
    } else {
        for line in &report.checked {
            println!("checked: {line}");
        }
        for failure in &report.failures {
            println!("FAILED: {}: {}", failure.subject, failure.detail);
        }
        println!(
            "restore {:.1} s, checks {:.1} s: {}",
            report.restore_seconds,
            report.check_seconds,
            if report.ok { "verified" } else { "VERIFICATION FAILED" }
        );
    }
    match report.failures.first() {
        None => Ok(()),
        Some(first) => Err(CliError::Partial {
            message: format!(
                "{} checks failed, the first: {}: {}",
                report.failures.len(),
                first.subject,
                first.detail
            ),
            exit: ExitCode::Damaged,
        }),
    }
}

pub(super) fn verify(ctx: &Context, read: PacksToRead) -> Result<(), CliError> {
    let started = Instant::now();
    let repo = ctx.open_indexed()?;
    let found = verify::verify(&repo, read)?;
    let mut checked = vec![format!(
        "snapshots: {} walked, every tree and content blob indexed, every indexed pack present",
        found.snapshots
    )];
    if read != PacksToRead::None {
        let share = match read {
            PacksToRead::Share(percent) => format!("{percent}%"),
            _ => "all".into(),
        };
        checked.push(format!(
            "packs: {} of {} read ({share}, {}), {} blobs decrypted and hashed",
            found.packs_read,
            found.packs_stored,
            Bytes(found.bytes_read),
            found.blobs_read
        ));
    }
    checked.extend(found.notes.iter().map(|note| format!("note: {note}")));
    checked.extend(found.archived.iter().map(|a| format!("not read (archived): {a}")));
    let details = serde_json::json!({"snapshots": found.snapshots, "packs_read": found.packs_read,
                                     "blobs_read": found.blobs_read, "bytes_read": found.bytes_read, "notes": found.notes,
                                     "archived": found.archived});
    let report = VerificationReport {
        snapshot_id: None,
        ok: found.is_ok(),
        restore_seconds: 0.0,
        check_seconds: started.elapsed().as_secs_f64(),
        checked,
        failures: found
            .problems
            .into_iter()
            .map(|p| VerificationFailure {
                subject: p.subject,
                detail: p.detail,
            })
            .collect(),
        failures_total: 0,
        files: 0,
        bytes: 0,
        tables: 0,
        packs: Some(PacksRead {
            snapshots: found.snapshots as u64,
            stored: found.packs_stored as u64,
            read: found.packs_read as u64,
            bytes_read: found.bytes_read,
        }),
    };
    finish(ctx, report, details)
}

/// The root tree of a volume snapshot; a snapshot of streams is refused, naming the command
/// that verifies it.
fn volume_tree(snapshot: &Snapshot, short: &str) -> Result<Id, CliError> {
    if let Some(root) = snapshot.tree {
        return Ok(root);
    }
    let kind = [DatabaseKind::Postgres, DatabaseKind::Mariadb]
        .into_iter()
        .find(|kind| {
            snapshot
                .tags
                .contains(&format!("hort.dev/source={}", kind.source_tag()))
        });
    Err(CliError::Usage(match kind {
        Some(kind) => format!(
            "snapshot {short} is a {} backup, not a volume's: verify it with verify-restore-{} (into a throwaway server)",
            kind.display_name(),
            kind.source_tag()
        ),
        None => format!(
            "snapshot {short} holds streams, not a file tree: verify-restore verifies volume backups; database backups are verified by verify-restore-postgres or verify-restore-mariadb"
        ),
    }))
}

/// Fails unless `scratch` is an empty directory or absent.
fn check_scratch(scratch: &Path) -> Result<(), CliError> {
    match std::fs::read_dir(scratch) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(CliError::Usage(format!(
                "--scratch {}: the directory is not empty; verify-restore restores into an empty directory and empties it afterwards, so it refuses to touch one holding anything",
                scratch.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::Usage(format!(
            "--scratch {}: {e} (an empty directory, or a path where one can be created)",
            scratch.display()
        ))),
    }
}

pub(super) fn verify_restore(ctx: &Context, args: &VerifyRestoreArgs) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let (id, snapshot) = repo.find_tagged_snapshot(&args.snapshot, &args.tags)?;
    let root = volume_tree(&snapshot, &id.short())?;
    check_scratch(&args.scratch)?;
    hort_engine::archive::make_snapshot_readable(&repo, &snapshot, ctx.archive_wait())?;
    let counters = Arc::new(Counters::default());
    let _ = counters.bytes_total.set(snapshot.stats.bytes);
    let started = Instant::now();
    let reporter = Reporter::start(ctx.mode, "restore", counters.clone(), Duration::from_secs(1));
    let restored = restorer::restore_tree(
        &repo,
        &snapshot,
        &id,
        &args.scratch,
        &RestoreOptions::default(),
        counters,
    );
    drop(reporter);
    let restore_seconds = started.elapsed().as_secs_f64();
    let result = restored.map_err(CliError::from).map(|restored| {
        let checking = Instant::now();
        let failed: HashSet<_> = restored.failures.iter().map(|f| f.path.clone()).collect();
        let check = restore_check::compare_tree(&repo, root, &args.scratch, &failed);
        let mut failures: Vec<VerificationFailure> = restored
            .failures
            .into_iter()
            .map(|f| VerificationFailure {
                subject: format!("/{}", f.path.display()),
                detail: format!("not restored: {}", f.error),
            })
            .collect();
        failures.extend(check.differences.into_iter().map(|d| VerificationFailure {
            subject: format!("/{}", d.path.display()),
            detail: d.detail,
        }));
        let mut checked = vec![
            format!(
                "{} files, {}: sizes, permissions and content hashes compared with the snapshot",
                check.files,
                Bytes(check.bytes)
            ),
            format!(
                "{} directories and {} symbolic links: types, permissions and link targets compared, nothing extra restored",
                check.dirs, check.links
            ),
        ];
        if check.special > 0 {
            checked.push(format!(
                "{} fifos, sockets or device nodes: not restored (as by restore), not compared",
                check.special
            ));
        }
        VerificationReport {
            snapshot_id: Some(id.to_hex()),
            ok: failures.is_empty(),
            restore_seconds,
            check_seconds: checking.elapsed().as_secs_f64(),
            checked,
            failures,
            failures_total: 0,
            files: check.files,
            bytes: check.bytes,
            tables: 0,
            packs: None,
        }
    });
    // Scratch: what this run restored goes, whatever happened (unless a later check reads it).
    if !args.keep
        && let Err(e) = restore_check::remove_contents(&args.scratch)
        && args.scratch.exists()
    {
        tracing::warn!(scratch = %args.scratch.display(), error = %e, "cannot empty the scratch directory");
    }
    finish(ctx, result?, serde_json::Value::Null)
}
