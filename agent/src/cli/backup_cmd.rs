//! `backup`: a directory, or named streams from stdin or from commands; and the report every
//! kind of backup leaves for the operator.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hort_protocol::{BackupReport, ExitCode};
use serde_json::json;

use super::CliError;
use super::args::BackupArgs;
use super::context::{Context, write_report};
use crate::progress::Reporter;
use hort_engine::archiver::{self, BackupOptions, StreamInput};
use hort_engine::filter::Selection;
use hort_engine::id::Id;
use hort_engine::progress::Counters;
use hort_engine::snapshot::Snapshot;

/// Why the command of `--stream-command` failed; its stream is not saved.
#[derive(Debug, thiserror::Error)]
enum StreamCommandError {
    /// It exited unsuccessfully.
    #[error("`{command}` failed ({status}); the stream is not saved")]
    Failed {
        /// The command.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// Waiting for it failed.
    #[error("`{command}`: {source}")]
    Wait {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
}

fn stream_from_command(spec: &str) -> Result<StreamInput, CliError> {
    let (name, command) = spec
        .split_once('=')
        .ok_or_else(|| CliError::Usage(format!("--stream-command `{spec}`: expected NAME=COMMAND")))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Usage(format!("cannot run `{command}`: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CliError::Usage("no stdout pipe".into()))?;
    let command = command.to_owned();
    Ok(StreamInput {
        name: name.to_owned(),
        reader: Box::new(stdout),
        complete: Some(Box::new(move || match child.wait() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(StreamCommandError::Failed { command, status }.into()),
            Err(source) => Err(StreamCommandError::Wait { command, source }.into()),
        })),
    })
}

pub(super) fn backup(ctx: &Context, args: BackupArgs) -> Result<(), CliError> {
    let (repo, lock) = ctx.open_for_backup()?;
    let options = BackupOptions {
        tags: args.tags,
        compression_level: args.compression,
        hostname: args.host,
        parent: None,
        force: args.force,
        threads: args.threads,
        selection: Selection::new(&args.paths, &args.exclude).map_err(|e| CliError::Usage(e.to_string()))?,
        time: args.time,
    };
    let counters = Arc::new(Counters::default());
    let reporter = Reporter::start(ctx.mode, "backup", counters.clone(), Duration::from_secs(1));
    let result = if let Some(dir) = &args.dir {
        archiver::backup_tree(&repo, &lock, dir, &options, counters)
    } else {
        let mut inputs = Vec::new();
        if args.stdin {
            let name = args.stream_name.clone().unwrap_or_default();
            inputs.push(StreamInput {
                name,
                reader: Box::new(std::io::stdin()),
                complete: None,
            });
        }
        for spec in &args.stream_command {
            inputs.push(stream_from_command(spec)?);
        }
        archiver::backup_streams(&repo, &lock, inputs, &options, counters)
    };
    drop(reporter);
    let (id, snapshot) = result?;
    report_backup(ctx, &id, &snapshot, repo.backend().missed_writes())
}

/// Writes a backup's report and summary (with the group's targets that missed some of its
/// files); an incomplete backup is an error.
pub(super) fn report_backup(ctx: &Context, id: &Id, snapshot: &Snapshot, behind: Vec<String>) -> Result<(), CliError> {
    let s = &snapshot.stats;
    write_report(&BackupReport {
        snapshot_id: id.to_hex(),
        bytes_read: s.bytes,
        bytes_new: s.new_bytes,
        bytes_stored: s.stored_bytes,
        files: s.files,
        duration_seconds: s.duration_secs,
        targets_behind: behind.clone(),
        catalog_error: None,
    });
    if !behind.is_empty() {
        tracing::warn!(targets = ?behind, "targets missed some of this backup's files; a resync brings them level");
    }
    if ctx.json() {
        ctx.print_json(&json!({"type": "summary", "snapshot": id, "stats": s, "targets_behind": behind}));
    } else {
        println!(
            "snapshot {} saved: {} files, {} dirs ({} unchanged), {:.1} MiB read, {:.1} MiB new, {:.1} MiB stored, {:.1} s",
            id.short(),
            s.files,
            s.dirs,
            s.files_unchanged,
            s.bytes as f64 / 1048576.0,
            s.new_bytes as f64 / 1048576.0,
            s.stored_bytes as f64 / 1048576.0,
            s.duration_secs
        );
    }
    if s.errors > 0 {
        return Err(CliError::Partial {
            message: format!(
                "{} entries could not be read (see the log); the snapshot lacks them",
                s.errors
            ),
            exit: ExitCode::Incomplete,
        });
    }
    Ok(())
}
