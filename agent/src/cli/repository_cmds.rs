//! Commands on the repository as a whole: `init`, `check` (the operator's StorageGroup
//! check), `resync`, `stats`.

use std::io::Write;

use hort_protocol::report::encode;
use hort_protocol::{CheckReport, ExitCode, SnapshotCount, TargetReport};
use serde_json::json;

use super::CliError;
use super::args::InitArgs;
use super::context::{Context, write_message};
use super::key_cmd;
use hort_engine::backend::FileKind;
use hort_engine::backend::throttle::Throttle;
use hort_engine::filter::Selection;
use hort_engine::id::Id;
use hort_engine::keyfile::KdfParams;
use hort_engine::location::{self, S3Defaults};
use hort_engine::pack::{self, BlobKind};
use hort_engine::repository::Repository;

/// Probes one target: reachable (listing works) and writable (a probe file can be written,
/// read back and deleted); the bytes the repository's files take (a directory's walked, an S3
/// prefix's listed); for a directory also the bytes free on its file system.
fn probe_target(spec: &str, s3: &S3Defaults, throttle: &Throttle) -> TargetReport {
    let unreachable = |error: String| TargetReport {
        error: Some(error),
        ..TargetReport::default()
    };
    let backend = match location::open_location(spec, s3) {
        Ok(backend) => throttle.wrap(backend),
        Err(e) => return unreachable(e.to_string()),
    };
    if let Err(e) = backend.list(FileKind::Config) {
        return unreachable(e.to_string());
    }
    let mut name = [0u8; 16];
    let probe = hort_engine::crypto::random_bytes(&mut name)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let name = hex::encode(name);
            let data = b"hort probe";
            backend.write(FileKind::Probe, &name, data).map_err(|e| e.to_string())?;
            let back = backend.read(FileKind::Probe, &name).map_err(|e| e.to_string());
            backend.delete(FileKind::Probe, &name).map_err(|e| e.to_string())?;
            if back? != data {
                Err("the probe file read back differs".to_owned())
            } else {
                Ok(())
            }
        });
    let mut report = TargetReport {
        reachable: true,
        writable: probe.is_ok(),
        error: probe.err(),
        ..TargetReport::default()
    };
    if let Ok(hort_protocol::Location::S3(s3)) = spec.parse::<hort_protocol::Location>() {
        report.bytes_used = backend.bytes_used().ok().flatten();
        let enabled = backend.object_lock_enabled();
        report.object_lock_enabled = enabled.as_ref().ok().copied().flatten();
        if let Some(lock) = s3.object_lock
            && report.writable
            && report.object_lock_enabled != Some(true)
        {
            let why = match enabled {
                Ok(Some(_)) => "the bucket does not have Object Lock enabled (it can only be enabled on a versioned bucket, usually when it is created)".to_owned(),
                Ok(None) => "the server does not tell whether the bucket has Object Lock".to_owned(),
                Err(e) => format!("cannot read the bucket's Object Lock configuration: {e}"),
            };
            report.writable = false;
            report.error = Some(format!(
                "bucket {}: the target asks for Object Lock ({lock}) but {why}: use a bucket created with Object Lock, or remove objectLock from the target",
                s3.bucket
            ));
        }
    } else {
        let dir = std::path::Path::new(spec.strip_prefix("file:").unwrap_or(spec));
        report.bytes_used = Selection::default().size_below(dir, &std::sync::atomic::AtomicBool::new(false));
        if let Ok(fs) = rustix::fs::statvfs(dir) {
            report.bytes_free = Some(fs.f_bavail.saturating_mul(fs.f_frsize));
        }
    }
    report
}

/// How long `check --resync` copies; check pods may run 300 s.
const CHECK_RESYNC_SECONDS: u64 = 200;

/// What `check` was asked to do besides probing the targets.
pub(super) struct CheckAsked<'a> {
    /// Create the repository when no target holds one.
    pub init: bool,
    /// The repository id the targets must hold.
    pub expected: Option<&'a str>,
    /// Copy to each target what it lacks.
    pub resync: bool,
    /// Rotate the key first.
    pub rotate_key: bool,
    /// Count the snapshots and name the newest.
    pub snapshots: bool,
}

pub(super) fn check(ctx: &Context, asked: &CheckAsked<'_>, kdf: &InitArgs) -> Result<(), CliError> {
    let CheckAsked {
        init,
        expected,
        resync,
        rotate_key,
        snapshots,
    } = *asked;
    let s3 = ctx.s3();
    let mut targets: Vec<TargetReport> = ctx
        .global
        .repo
        .iter()
        .map(|spec| probe_target(spec, &s3, &ctx.throttle))
        .collect();
    // Before the repository is opened: until the rotation added its key file, the repository
    // password opens nothing.
    let key_rotation = rotate_key.then(|| key_cmd::rotate_for_check(ctx, kdf));
    let opened = open_or_init(ctx, init, kdf).and_then(|(repo, created)| {
        let found = repo.config().id.to_hex();
        match expected {
            Some(id) if id != found => Err(CliError::Usage(format!(
                "the targets hold repository {found}, not {id}, the one this storage group recorded (status.repositoryId): a target was replaced or points at another repository; fix the targets, or delete the StorageGroup and create it anew to adopt {found}"
            ))),
            _ => Ok((repo, created)),
        }
    });
    let opened = match opened {
        Ok(ok) if resync => {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(CHECK_RESYNC_SECONDS);
            let pack_kind = |data: &[u8]| pack::kind_of_pack(ok.0.keys(), data);
            let lags = ctx.group()?.resync(true, Some(until), &pack_kind);
            lags.map(|lags| {
                for (target, lag) in targets.iter_mut().zip(lags) {
                    target.missing_files = lag.missing_files;
                }
                ok
            })
            .map_err(CliError::from)
        }
        other => other,
    };
    let counted = match &opened {
        Ok((repo, _)) if snapshots => Some(count_snapshots(repo)),
        _ => None,
    };
    // The targets' findings are reported even when the repository could not be opened, with
    // why: the operator shows each target's error instead of only the last log line.
    let report = match &opened {
        Ok((repo, created)) => CheckReport {
            repository_id: Some(repo.config().id.to_hex()),
            created: *created,
            targets,
            error: None,
            key_rotation,
            // A snapshot that cannot be read does not fail the check of the targets; the
            // report then says nothing of the snapshots.
            snapshots: counted.and_then(|c| c.inspect_err(|e| tracing::warn!("counting the snapshots: {e}")).ok()),
        },
        Err(e) => CheckReport {
            repository_id: None,
            created: false,
            targets,
            error: Some(e.to_string()),
            key_rotation,
            snapshots: None,
        },
    };
    let message = encode(&report);
    write_message(&message);
    let _ = writeln!(std::io::stdout().lock(), "{message}");
    opened.map(drop)
}

/// How many snapshots `repo` holds and which started last.
fn count_snapshots(repo: &Repository) -> Result<SnapshotCount, CliError> {
    let snapshots = repo.snapshots()?;
    let newest = snapshots.iter().max_by_key(|(_, s)| s.time);
    Ok(SnapshotCount {
        count: snapshots.len() as u64,
        newest_id: newest.map(|(id, _)| id.to_hex()),
        newest_time: newest.map(|(_, s)| s.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    })
}

/// Opens the repository, or with `init` creates it when no target holds one (and every target
/// answers, see [`Repository::init`]); says whether it was created.
fn open_or_init(ctx: &Context, init: bool, kdf: &InitArgs) -> Result<(Repository, bool), CliError> {
    let backend = ctx.backend()?;
    let password = ctx.password()?;
    let exists = !backend.list(FileKind::Config)?.is_empty();
    let created = init && !exists;
    let repo = if created {
        let params = KdfParams {
            memory_kib: kdf.kdf_memory_kib,
            iterations: kdf.kdf_iterations,
            parallelism: 1,
        };
        Repository::init(backend, &password, params)?
    } else {
        Repository::open(backend, &password)?
    };
    Ok((ctx.spooling(repo), created))
}

pub(super) fn resync(ctx: &Context, dry_run: bool) -> Result<(), CliError> {
    let group = ctx.group()?;
    // The key tells tree packs from data packs, which an archive storage class must not take.
    // The repository is opened once a pack is copied: after resync checked that the targets
    // hold one repository. Without the key a pack is copied as a tree pack (never archived).
    let repo = std::cell::OnceCell::new();
    let pack_kind = |data: &[u8]| match repo.get_or_init(|| ctx.open()) {
        Ok(repo) => pack::kind_of_pack(repo.keys(), data),
        Err(_) => FileKind::TreePack,
    };
    let lags = group.resync(!dry_run, None, &pack_kind)?;
    if let Some(Err(e)) = repo.get() {
        tracing::warn!(error = %e, "the repository could not be opened: packs were copied without an archive storage class");
    }
    if ctx.json() {
        ctx.print_json(&json!({"type": "resync", "dry_run": dry_run, "targets": lags}));
    } else {
        for lag in &lags {
            let missing = lag.missing_files.map_or("unknown".to_owned(), |n| n.to_string());
            println!(
                "{}: {} files ({} bytes) copied, {missing} missing{}",
                lag.target,
                lag.copied_files,
                lag.copied_bytes,
                lag.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            );
        }
    }
    let behind = lags
        .iter()
        .filter(|l| l.error.is_some() || l.missing_files != Some(0))
        .count();
    if dry_run || behind == 0 {
        return Ok(());
    }
    Err(CliError::Partial {
        message: format!("{behind} targets are still behind (see above)"),
        exit: ExitCode::Incomplete,
    })
}

pub(super) fn init(ctx: &Context, args: &InitArgs) -> Result<(), CliError> {
    let kdf = KdfParams {
        memory_kib: args.kdf_memory_kib,
        iterations: args.kdf_iterations,
        parallelism: 1,
    };
    let backend = ctx.backend()?;
    let location = backend.describe();
    let repo = Repository::init(backend, &ctx.password()?, kdf)?;
    if ctx.json() {
        ctx.print_json(&json!({"type": "init", "repository": location, "id": repo.config().id}));
    } else {
        println!("created repository {} at {location}", repo.config().id.short());
    }
    Ok(())
}

pub(super) fn stats(ctx: &Context) -> Result<(), CliError> {
    let repo = ctx.open_indexed()?;
    let snapshots = repo.snapshots()?;
    let (mut data_blobs, mut tree_blobs, mut raw, mut stored) = (0u64, 0u64, 0u64, 0u64);
    for l in repo.index().locations() {
        match l.entry.kind {
            BlobKind::Data => data_blobs += 1,
            BlobKind::Tree => tree_blobs += 1,
        }
        raw += u64::from(l.entry.raw_length);
        stored += u64::from(l.entry.length);
    }
    let logical: u64 = snapshots.iter().map(|(_, s)| s.stats.bytes).sum();
    let packs = repo.index().packs().count();
    let ids: Vec<Id> = snapshots.iter().map(|(id, _)| *id).collect();
    if ctx.json() {
        ctx.print_json(
            &json!({"type": "stats", "snapshots": ids.len(), "packs": packs, "data_blobs": data_blobs,
                               "tree_blobs": tree_blobs, "raw_bytes": raw, "stored_bytes": stored,
                               "logical_bytes": logical}),
        );
    } else {
        println!("snapshots:      {}", ids.len());
        println!("packs:          {packs}");
        println!("blobs:          {data_blobs} data, {tree_blobs} tree");
        println!(
            "logical size:   {:.1} MiB (sum over snapshots)",
            logical as f64 / 1048576.0
        );
        println!("unique data:    {:.1} MiB", raw as f64 / 1048576.0);
        println!("stored:         {:.1} MiB", stored as f64 / 1048576.0);
    }
    Ok(())
}
