//! `repair index|snapshots`: rebuild what can be rebuilt from the data itself (see
//! [`hort_engine::repair`]).

use clap::Subcommand;
use hort_protocol::ExitCode;
use serde_json::json;

use super::CliError;
use super::context::Context;

/// What `repair` rebuilds.
#[derive(Debug, Subcommand)]
pub(super) enum RepairCommand {
    /// Rewrite the index from the intact index files and the trailers of the packs none of
    /// them lists (after index files were lost or damaged); drop packs that are gone.
    Index {
        /// Only report what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write each snapshot that refers to lost data again without the files, directories and
    /// streams whose data is gone (tagged `repaired`), so everything else stays restorable.
    Snapshots {
        /// Delete each damaged snapshot once its repaired copy is written.
        #[arg(long)]
        forget: bool,
        /// Only report what is lost.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(super) fn run(ctx: &Context, command: &RepairCommand) -> Result<(), CliError> {
    match *command {
        RepairCommand::Index { dry_run } => index(ctx, dry_run),
        RepairCommand::Snapshots { forget, dry_run } => snapshots(ctx, forget, dry_run),
    }
}

fn index(ctx: &Context, dry_run: bool) -> Result<(), CliError> {
    let report = hort_engine::repair::repair_index(&ctx.open()?, dry_run)?;
    if ctx.json() {
        ctx.print_json(&json!({"type": "repair-index", "dry_run": dry_run, "report": report}));
    } else {
        println!(
            "{} packs kept, {} indexed from their trailers, {} missing packs dropped, {} damaged index files replaced, {} unreadable packs, {} index files written{}",
            report.packs_kept,
            report.packs_from_trailers.len(),
            report.missing_packs.len(),
            report.damaged_index_files.len(),
            report.unreadable_packs.len(),
            report.index_files_written,
            if dry_run { " (dry run: nothing changed)" } else { "" }
        );
    }
    if report.unreadable_packs.is_empty() {
        return Ok(());
    }
    Err(CliError::Partial {
        message: format!(
            "{} packs have unreadable trailers; their data is not indexed: {}",
            report.unreadable_packs.len(),
            report.unreadable_packs.join("; ")
        ),
        exit: ExitCode::Damaged,
    })
}

fn snapshots(ctx: &Context, forget: bool, dry_run: bool) -> Result<(), CliError> {
    let (repo, lock) = ctx.open_for_backup()?;
    let repairs = hort_engine::repair::repair_snapshots(&repo, &lock, forget, dry_run)?;
    if ctx.json() {
        ctx.print_json(&json!({"type": "repair-snapshots", "dry_run": dry_run, "snapshots": repairs}));
    } else {
        for r in &repairs {
            println!(
                "snapshot {} lost {} entries{}: {}",
                r.snapshot.short(),
                r.lost.len(),
                r.repaired
                    .map(|id| format!(", repaired as {}", id.short()))
                    .unwrap_or_default(),
                r.lost.join(", ")
            );
        }
        if repairs.is_empty() {
            println!("no snapshot refers to lost data");
        }
    }
    Ok(())
}
