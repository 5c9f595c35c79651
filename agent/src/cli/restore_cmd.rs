//! `restore`: a snapshot's files into a directory, or one stream to stdout.

use std::sync::Arc;
use std::time::Duration;

use hort_protocol::{ExitCode, Overwrite, RestoreReport};
use serde_json::json;

use super::CliError;
use super::args::RestoreArgs;
use super::context::{Context, write_report};
use crate::progress::Reporter;
use hort_engine::filter::Selection;
use hort_engine::progress::Counters;
use hort_engine::restorer::{self, RestoreOptions};

pub(super) fn restore(ctx: &Context, args: &RestoreArgs) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let (id, snapshot) = repo.find_tagged_snapshot(&args.snapshot, &args.tags)?;
    hort_engine::archive::make_snapshot_readable(&repo, &snapshot, ctx.archive_wait())?;
    let counters = Arc::new(Counters::default());
    if let Some(name) = &args.stream {
        let mut stdout = std::io::stdout().lock();
        let started = std::time::Instant::now();
        let bytes = restorer::restore_stream(&repo, &snapshot, &id, name, &mut stdout, &counters)?;
        tracing::info!(stream = %name, bytes, "stream restored");
        write_report(&RestoreReport {
            snapshot_id: id.to_hex(),
            bytes_restored: bytes,
            files: 1,
            skipped: 0,
            duration_seconds: started.elapsed().as_secs_f64(),
            row_counts: Default::default(),
        });
        return Ok(());
    }
    let target = args
        .target
        .clone()
        .ok_or_else(|| CliError::Usage("--target or --stream is required".into()))?;
    // A whole snapshot restores every byte it recorded: the progress has a total.
    if args.paths.is_empty() && args.exclude.is_empty() {
        let _ = counters.bytes_total.set(snapshot.stats.bytes);
    }
    let started = std::time::Instant::now();
    let reporter = Reporter::start(ctx.mode, "restore", counters.clone(), Duration::from_secs(1));
    let options = RestoreOptions {
        selection: Selection::new(&args.paths, &args.exclude).map_err(|e| CliError::Usage(e.to_string()))?,
        overwrite: engine_overwrite(args.overwrite),
        threads: 0,
        memory: 0,
        keep_setid: args.keep_setid,
    };
    let report = restorer::restore_tree(&repo, &snapshot, &id, &target, &options, counters);
    drop(reporter);
    let report = report?;
    if ctx.json() {
        let failures: Vec<_> = report
            .failures
            .iter()
            .map(|f| json!({"path": f.path.to_string_lossy(), "error": f.error}))
            .collect();
        ctx.print_json(
            &json!({"type": "summary", "snapshot": id, "files": report.files, "links": report.links,
                    "bytes": report.bytes, "failures": failures, "skipped": report.skipped}),
        );
    } else {
        println!(
            "restored {} files, {:.1} MiB from snapshot {}; {} existing entries kept (--overwrite {})",
            report.files,
            report.bytes as f64 / 1048576.0,
            id.short(),
            report.skipped,
            args.overwrite.as_str()
        );
        for f in &report.failures {
            println!("NOT restored: {}: {}", f.path.display(), f.error);
        }
    }
    // A restore that wrote nothing of what was asked did not do its job.
    if !args.paths.is_empty() && report.matched == 0 {
        let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        return Err(CliError::Usage(format!(
            "nothing restored: snapshot {} has no entry at --path {}",
            id.short(),
            paths.join(", ")
        )));
    }
    if report.kept_everything() {
        return Err(CliError::Usage(format!(
            "nothing restored: all {} entries of snapshot {} that were asked for exist in {} and \
             --overwrite {} keeps them (use --overwrite always, or restore into an empty directory)",
            report.skipped,
            id.short(),
            target.display(),
            args.overwrite.as_str()
        )));
    }
    if report.failures.is_empty() {
        write_report(&RestoreReport {
            snapshot_id: id.to_hex(),
            bytes_restored: report.bytes,
            files: report.files,
            skipped: report.skipped,
            duration_seconds: started.elapsed().as_secs_f64(),
            row_counts: Default::default(),
        });
    } else {
        return Err(CliError::Partial {
            message: format!(
                "{} entries could not be restored, the first: {}: {}",
                report.failures.len(),
                report.failures[0].path.display(),
                report.failures[0].error
            ),
            exit: ExitCode::Damaged,
        });
    }
    Ok(())
}

/// The engine's overwrite policy for the protocol's.
fn engine_overwrite(overwrite: Overwrite) -> restorer::Overwrite {
    match overwrite {
        Overwrite::Never => restorer::Overwrite::Never,
        Overwrite::IfNewer => restorer::Overwrite::IfNewer,
        Overwrite::Always => restorer::Overwrite::Always,
    }
}
