//! Retention and two-phase garbage collection.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Duration;
use hort_engine::archiver::{self, BackupOptions};
use hort_engine::backend::local::LocalBackend;
use hort_engine::backup_lock::{BackupLock, LockFile, LockTiming};
use hort_engine::progress::Counters;
use hort_engine::prune::{self, PruneOptions};
use hort_engine::repository::{IndexedRepository, Repository};
use hort_engine::retention::Policy;
use hort_engine::snapshot::Snapshot;
use support::{Kind, PASSWORD, Repo, describe_tree, noise, summary};

/// Backs up `a.bin` and `b.bin`, then only `a.bin`; returns the pack holding `b.bin`'s data.
fn b_only_in_an_old_snapshot(repo: &Repo, src: &Path) -> PathBuf {
    fs::create_dir_all(src).unwrap();
    fs::write(src.join("a.bin"), noise(1, 2 * 1024 * 1024)).unwrap();
    repo.backup(src, &[]);
    let before = repo.packs();
    fs::write(src.join("b.bin"), noise(2, 2 * 1024 * 1024)).unwrap();
    repo.backup(src, &[]);
    let b_pack = repo
        .packs()
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(src.join("b.bin")).unwrap();
    repo.backup(src, &[]);
    b_pack
}

#[test]
fn prune_forgets_by_policy_and_deletes_garbage_only_after_the_grace_period() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let b_pack = b_only_in_an_old_snapshot(&repo, &src);

    let refused = repo.run(&["prune"]);
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("would forget every snapshot"));

    let first = summary(&repo.ok(&["prune", "--keep-last", "1", "--grace", "0"]));
    assert_eq!(first["forgotten"].as_array().unwrap().len(), 2, "{first}");
    assert!(
        first["gc"]["condemned"]
            .to_string()
            .contains(&b_pack.file_name().unwrap().to_string_lossy().to_string())
    );
    assert!(b_pack.exists(), "condemned packs are not deleted in the same run");

    let waiting = summary(&repo.ok(&["prune", "--gc-only"]));
    assert!(waiting["gc"]["deleted"].as_array().unwrap().is_empty(), "{waiting}");
    assert!(waiting["gc"]["pending"].as_u64().unwrap() >= 1);
    assert!(b_pack.exists(), "still within the grace period");

    let swept = summary(&repo.ok(&["prune", "--gc-only", "--grace", "0"]));
    assert!(
        swept["gc"]["deleted"]
            .to_string()
            .contains(&b_pack.file_name().unwrap().to_string_lossy().to_string())
    );
    assert!(!b_pack.exists());

    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(
        verify["notes"].as_array().unwrap().len(),
        0,
        "no garbage left: {verify}"
    );
}

#[test]
fn a_backup_that_loaded_the_index_before_the_mark_keeps_its_data() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let b_pack = b_only_in_an_old_snapshot(&repo, &src);
    let open = || open_repository(&repo);
    forget_all_but_the_newest(&repo);

    // A backup starts (takes its lock, loads the index) before prune condemns b.bin's pack ...
    let opened = open();
    let lock = BackupLock::acquire(&opened).unwrap();
    let running_backup = opened.load_index().unwrap();
    let mark = prune::collect_garbage(
        open(),
        PruneOptions {
            grace: Duration::zero(),
            dry_run: false,
        },
    )
    .unwrap();
    let b_pack_id: hort_engine::id::Id = b_pack.file_name().unwrap().to_str().unwrap().parse().unwrap();
    assert!(mark.condemned.contains(&b_pack_id));

    // ... and deduplicates b.bin against it, finishing after the mark.
    let snapshot = back_up_b_again(&running_backup, &lock, &src);
    drop(lock);
    assert!(
        snapshot.stats.new_bytes < 10_000,
        "deduplicated against the condemned pack: {:?}",
        snapshot.stats
    );

    let before_sweep = work.path().join("before-sweep");
    repo.ok(&["restore", "latest", "--target", before_sweep.to_str().unwrap()]);
    assert_eq!(
        describe_tree(&before_sweep),
        describe_tree(&src),
        "restorable before the sweep too"
    );

    let sweep = prune::collect_garbage(
        open(),
        PruneOptions {
            grace: Duration::zero(),
            dry_run: false,
        },
    )
    .unwrap();
    assert!(sweep.reindexed.contains(&b_pack_id), "{sweep:?}");
    assert!(!sweep.deleted.contains(&b_pack_id));
    assert!(b_pack.exists());

    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
}

/// Bytes of every file under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[test]
fn prune_repacks_mostly_unused_packs_and_every_kept_snapshot_still_restores() {
    const MIB: u64 = 1024 * 1024;
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    // Ten files of 1.25 MiB share the first backup's data pack (packs close at 16 MiB).
    for i in 0..10 {
        fs::write(src.join(format!("sub/f{i}")), noise(100 + i, (MIB + MIB / 4) as usize)).unwrap();
    }
    let mut kept = Vec::new();
    let mut backups = Vec::new();
    for step in 0..4u64 {
        match step {
            1 => (0..4).for_each(|i| fs::remove_file(src.join(format!("sub/f{i}"))).unwrap()),
            2 => (4..8).for_each(|i| fs::remove_file(src.join(format!("sub/f{i}"))).unwrap()),
            _ => {}
        }
        if step > 0 {
            fs::write(src.join(format!("g{step}")), noise(200 + step, MIB as usize)).unwrap();
        }
        let id = repo.backup(&src, &[])["snapshot"].as_str().unwrap().to_owned();
        backups.push((id, describe_tree(&src)));
    }
    kept.extend(backups.drain(2..));
    let first_pack = repo
        .packs()
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let before = du(&repo.files);

    let mark = summary(&repo.ok(&["prune", "--keep-last", "2", "--grace", "0"]));
    let first_name = first_pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(mark["gc"]["repacked"].to_string().contains(&first_name), "{mark}");
    assert!(mark["gc"]["condemned"].to_string().contains(&first_name), "{mark}");
    let new_packs = mark["gc"]["repack_new_packs"].as_array().unwrap();
    assert_eq!(new_packs.len(), 1, "f8 and f9 fit in one new pack: {mark}");
    let copied = mark["gc"]["repacked_bytes"].as_u64().unwrap();
    assert!(
        copied > 2 * (MIB + MIB / 4) && copied < 3 * MIB,
        "only f8 and f9 are copied: {mark}"
    );
    assert!(
        first_pack.exists(),
        "a repacked pack waits for the sweep like any condemned pack"
    );
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "between mark and sweep: {verify}");

    let again = summary(&repo.ok(&["prune", "--gc-only", "--grace", "24h"]));
    assert!(
        again["gc"]["repacked"].as_array().unwrap().is_empty(),
        "repacking is done once: {again}"
    );

    let sweep = summary(&repo.ok(&["prune", "--gc-only", "--grace", "0"]));
    assert!(sweep["gc"]["deleted"].to_string().contains(&first_name), "{sweep}");
    assert!(!first_pack.exists());
    let after = du(&repo.files);
    assert!(
        after + 9 * MIB < before,
        "the repository shrinks by about the eight unused files: {before} -> {after}"
    );

    for (id, expected) in &kept {
        let target = work.path().join(format!("restore-{id}"));
        repo.ok(&["restore", id, "--target", target.to_str().unwrap()]);
        assert_eq!(&describe_tree(&target), expected, "snapshot {id}");
    }
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(
        verify["notes"].as_array().unwrap().len(),
        0,
        "no garbage left: {verify}"
    );
    assert_eq!(verify["snapshots"], 2, "{verify}");
}

/// Writes `b.bin` again and backs `src` up with a backup that loaded its index earlier.
fn back_up_b_again(running: &IndexedRepository, lock: &BackupLock, src: &Path) -> Snapshot {
    fs::write(src.join("b.bin"), noise(2, 2 * 1024 * 1024)).unwrap();
    let options = BackupOptions {
        force: true,
        ..Default::default()
    };
    archiver::backup_tree(running, lock, src, &options, Arc::new(Counters::default()))
        .unwrap()
        .1
}

fn open_repository(repo: &Repo) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&repo.files)), PASSWORD.as_bytes()).unwrap()
}

/// Forgets every snapshot but the newest (b.bin's pack becomes garbage).
fn forget_all_but_the_newest(repo: &Repo) {
    let policy = Policy {
        last: 1,
        ..Default::default()
    };
    prune::forget(&open_repository(repo), &policy, false).unwrap();
}

fn no_grace() -> PruneOptions {
    PruneOptions {
        grace: Duration::zero(),
        dry_run: false,
    }
}

fn lock_files(repo: &Repo) -> usize {
    fs::read_dir(repo.files.join("locks")).map_or(0, |d| d.count())
}

#[test]
fn a_backup_running_through_a_mark_and_a_sweep_keeps_its_data() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let b_pack = b_only_in_an_old_snapshot(&repo, &src);
    let b_pack_id: hort_engine::id::Id = b_pack.file_name().unwrap().to_str().unwrap().parse().unwrap();
    let open = || open_repository(&repo);
    forget_all_but_the_newest(&repo);

    // A slow backup takes its lock and loads the index; while it runs, a mark and a sweep
    // pass (grace 0 stands for a backup that outlives any grace period).
    let opened = open();
    let lock = BackupLock::acquire(&opened).unwrap();
    let running_backup = opened.load_index().unwrap();
    assert_eq!(lock_files(&repo), 1);
    let mark = prune::collect_garbage(open(), no_grace()).unwrap();
    assert!(mark.condemned.contains(&b_pack_id), "{mark:?}");
    let sweep = prune::collect_garbage(open(), no_grace()).unwrap();
    assert!(sweep.deleted.is_empty(), "{sweep:?}");
    assert_eq!(sweep.waiting_for_backups, 1, "{sweep:?}");
    assert!(b_pack.exists(), "the running backup may use it");

    // The backup deduplicates b.bin against the condemned pack and finishes.
    let snapshot = back_up_b_again(&running_backup, &lock, &src);
    assert!(snapshot.stats.new_bytes < 10_000, "deduplicated: {:?}", snapshot.stats);
    drop(lock);
    assert_eq!(lock_files(&repo), 0, "a finished backup removes its lock");

    let after = prune::collect_garbage(open(), no_grace()).unwrap();
    assert!(after.reindexed.contains(&b_pack_id), "{after:?}");
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
}

#[test]
fn a_backup_whose_lock_went_stale_writes_no_snapshot_and_a_stale_lock_holds_nothing_back() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let b_pack = b_only_in_an_old_snapshot(&repo, &src);
    let open = || open_repository(&repo);
    let snapshots = || fs::read_dir(repo.files.join("snapshots")).unwrap().count();

    // A lock that is never refreshed within `stale - margin` (1 s here).
    let opened = open();
    let timing = LockTiming {
        refresh: Duration::hours(1),
        stale: Duration::seconds(2),
        margin: Duration::seconds(1),
    };
    let lock = BackupLock::acquire_with(&opened, timing).unwrap();
    let running_backup = opened.load_index().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = snapshots();
    let failed = archiver::backup_tree(
        &running_backup,
        &lock,
        &src,
        &BackupOptions::default(),
        Arc::new(Counters::default()),
    )
    .unwrap_err();
    assert!(failed.to_string().contains("without a refresh"), "{failed}");
    assert_eq!(snapshots(), before, "no snapshot written");
    drop(lock);

    // A lock left by a killed backup, last refreshed an hour ago, holds back no sweep and
    // is removed.
    forget_all_but_the_newest(&repo);
    prune::collect_garbage(open(), no_grace()).unwrap();
    let now = chrono::Utc::now();
    open()
        .write_sealed(
            hort_engine::backend::FileKind::Lock,
            hort_engine::backup_lock::AAD,
            &LockFile {
                version: 1,
                hostname: "killed".into(),
                started: now - Duration::hours(2),
                refreshed: now - Duration::hours(1),
            },
        )
        .unwrap();
    let sweep = prune::collect_garbage(open(), no_grace()).unwrap();
    assert_eq!(sweep.waiting_for_backups, 0, "{sweep:?}");
    assert_eq!(sweep.stale_locks, 1, "{sweep:?}");
    assert!(!b_pack.exists(), "swept");
    assert_eq!(lock_files(&repo), 0);
}
