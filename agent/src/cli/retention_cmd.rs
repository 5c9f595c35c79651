//! `prune` and `forget`: retention policies and garbage collection.

use hort_protocol::ForgetReport;
use serde_json::json;

use super::CliError;
use super::args::{ForgetArgs, PruneArgs};
use super::context::{Context, write_report};
use hort_engine::id::Id;
use hort_engine::prune::{self, PruneOptions, PruneReport};
use hort_engine::retention;
use hort_engine::snapshot::{Snapshot, Source};

pub(super) fn prune(ctx: &Context, args: &PruneArgs) -> Result<(), CliError> {
    let policy = args.keep.policy();
    if policy.is_empty() && !args.gc_only {
        return Err(CliError::Usage(
            "no --keep-* option given: that would forget every snapshot (use --gc-only to only collect garbage)".into(),
        ));
    }
    let repo = ctx.open()?;
    let decisions = if args.gc_only {
        Vec::new()
    } else {
        prune::forget(&repo, &policy, args.dry_run)?
    };
    let report = prune::collect_garbage(
        repo,
        PruneOptions {
            grace: args.grace,
            dry_run: args.dry_run,
        },
    )?;
    print_retention(ctx, &decisions, Some(&report), args.dry_run);
    Ok(())
}

/// Prints what retention decided for each snapshot and what garbage collection did: a JSON
/// summary, or a line per snapshot and one for the packs.
fn print_retention(ctx: &Context, decisions: &[retention::Decision], gc: Option<&PruneReport>, dry_run: bool) {
    if ctx.json() {
        let kept: Vec<_> = decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| json!({"id": d.id, "reasons": d.reasons}))
            .collect();
        let forgotten: Vec<String> = decisions.iter().filter(|d| !d.keep).map(|d| d.id.to_hex()).collect();
        ctx.print_json(
            &json!({"type": "summary", "dry_run": dry_run, "kept": kept, "forgotten": forgotten,
                               "gc": gc}),
        );
        return;
    }
    for d in decisions {
        let verdict = if d.keep {
            format!("keep ({})", d.reasons.join(", "))
        } else {
            "forget".to_owned()
        };
        println!("{} {verdict}", d.id.short());
    }
    if let Some(report) = gc {
        println!(
            "{} packs in use, {} repacked into {} ({} bytes copied), {} condemned now, {} deleted, {} indexed again, \
             {} waiting (for the grace period, or in {} markers held back by running backups), {} stale backup locks{}",
            report.live_packs,
            report.repacked.len(),
            report.repack_new_packs.len(),
            report.repacked_bytes,
            report.condemned.len(),
            report.deleted.len(),
            report.reindexed.len(),
            report.pending,
            report.waiting_for_backups,
            report.stale_locks,
            if dry_run { " (dry run: nothing changed)" } else { "" }
        );
    }
}

pub(super) fn forget(ctx: &Context, args: &ForgetArgs) -> Result<(), CliError> {
    let policy = args.keep.policy();
    if policy.is_empty() {
        return Err(CliError::Usage(
            "no --keep-* option given: that would forget every snapshot with the given tags".into(),
        ));
    }
    let repo = ctx.open()?;
    let considered: Vec<(Id, Snapshot)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| args.tags.iter().all(|t| s.tags.contains(t)))
        .collect();
    let decisions = if args.tags.is_empty() {
        retention::apply(&considered, &policy)
    } else {
        // Tagged snapshots form one series (one schedule's backups): each run comes from a
        // different pod, so the host names differ, and the databases dumped may change.
        // Retention groups by host and source; give every snapshot the same ones.
        let series: Vec<(Id, Snapshot)> = considered
            .into_iter()
            .map(|(id, s)| {
                let s = Snapshot {
                    hostname: String::new(),
                    source: Source::Streams,
                    streams: Vec::new(),
                    ..s
                };
                (id, s)
            })
            .collect();
        retention::apply(&series, &policy)
    };
    let mut decisions = decisions;
    prune::forget_decided(&repo, &mut decisions, args.dry_run)?;
    let removed: Vec<&retention::Decision> = decisions.iter().filter(|d| !d.keep).collect();
    let kept = decisions.len() - removed.len();
    let gc = if args.prune {
        Some(prune::collect_garbage(
            repo,
            PruneOptions {
                grace: args.grace,
                dry_run: args.dry_run,
            },
        )?)
    } else {
        None
    };
    if !args.dry_run {
        write_report(&ForgetReport {
            snapshots_kept: u32::try_from(kept).unwrap_or(u32::MAX),
            snapshots_removed: u32::try_from(removed.len()).unwrap_or(u32::MAX),
        });
    }
    print_retention(ctx, &decisions, gc.as_ref(), args.dry_run);
    Ok(())
}
