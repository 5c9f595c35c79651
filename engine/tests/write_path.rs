//! The engine's write path as a library, over the in-memory backend: what a backup writes is a
//! repository that a fresh open with the password reads back byte for byte, a second backup of
//! the same data stores no new pack, and a backup that is not finished leaves no snapshot.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use hort_engine::archiver::{self, BackupOptions, StreamBackup};
use hort_engine::backend::{Backend, FileKind};
use hort_engine::progress::Counters;
use hort_engine::repository::{Repository, RepositoryError};
use hort_engine::restorer::{self, RestoreOptions};
use hort_engine::verify::{self, PacksToRead};
use support::{init, noise, open};

/// A small tree: files of several sizes (one spanning many chunks), an empty file, a nested
/// directory and a symlink.
fn source_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/app")).unwrap();
    fs::write(root.join("big.bin"), noise(1, 3 * 1024 * 1024 + 17)).unwrap();
    fs::write(root.join("etc/app/config.toml"), b"answer = 42\n").unwrap();
    fs::write(root.join("etc/app/empty"), b"").unwrap();
    fs::write(root.join("etc/small.bin"), noise(2, 4000)).unwrap();
    symlink("app/config.toml", root.join("etc/link")).unwrap();
}

fn assert_same_tree(expected: &Path, actual: &Path) {
    for relative in ["big.bin", "etc/app/config.toml", "etc/app/empty", "etc/small.bin"] {
        assert_eq!(
            fs::read(expected.join(relative)).unwrap(),
            fs::read(actual.join(relative)).unwrap(),
            "{relative}"
        );
    }
    assert_eq!(
        fs::read_link(actual.join("etc/link")).unwrap(),
        Path::new("app/config.toml")
    );
}

#[test]
fn a_tree_backup_reads_back_byte_exact_and_a_second_backup_stores_no_new_pack() {
    let backend = init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    source_tree(&src);

    let (repo, lock) = open(&backend);
    let (id, snapshot) = archiver::backup_tree(&repo, &lock, &src, &BackupOptions::default(), Arc::default()).unwrap();
    drop(lock);
    assert!(snapshot.tree.is_some());
    let packs = backend.count(FileKind::Pack);
    assert!(packs > 0, "the data went into packs");
    assert!(backend.count(FileKind::Index) > 0, "the packs are indexed");
    assert_eq!(
        backend.count(FileKind::Lock),
        0,
        "the backup lock is removed when dropped"
    );

    // A fresh open sees the snapshot and restores it.
    let (reopened, _lock) = open(&backend);
    let (found, found_snapshot) = reopened.find_snapshot("latest").unwrap();
    assert_eq!(found, id);
    let target = work.path().join("restored");
    let report = restorer::restore_tree(
        &reopened,
        &found_snapshot,
        &found,
        &target,
        &RestoreOptions::default(),
        Arc::default(),
    )
    .unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_same_tree(&src, &target);

    // Read every file again: all blobs exist already, so nothing new is stored.
    let options = BackupOptions {
        force: true,
        ..BackupOptions::default()
    };
    let counters = Arc::new(Counters::default());
    let (_, second) = archiver::backup_tree(&reopened, &_lock, &src, &options, counters.clone()).unwrap();
    assert_eq!(backend.count(FileKind::Pack), packs, "deduplicated: no new pack");
    assert_eq!(second.tree, snapshot.tree, "the same content gives the same tree");
    assert_eq!(counters.new_bytes.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(reopened.snapshots().unwrap().len(), 2);

    let (checked, _lock) = open(&backend);
    let verified = verify::verify(&checked, PacksToRead::All).unwrap();
    assert!(verified.is_ok(), "{verified:?}");
}

#[test]
fn streams_read_back_byte_exact_and_an_unfinished_stream_backup_leaves_no_snapshot() {
    let backend = init();
    let dump = noise(3, 2 * 1024 * 1024 + 5);
    let globals = b"CREATE ROLE app;\n".to_vec();
    {
        let (repo, lock) = open(&backend);
        let mut backup = StreamBackup::start(&repo, &lock, &BackupOptions::default(), Arc::default());
        backup.add("db/app.dump", &mut dump.as_slice()).unwrap();
        backup.add("globals.sql", &mut globals.as_slice()).unwrap();
        backup.finish().unwrap();
    }
    {
        // A dump that fails half-way: the backup is dropped, never finished.
        let (repo, lock) = open(&backend);
        let mut backup = StreamBackup::start(&repo, &lock, &BackupOptions::default(), Arc::default());
        backup.add("db/app.dump", &mut noise(4, 100_000).as_slice()).unwrap();
        drop(backup);
    }
    let (repo, _lock) = open(&backend);
    let snapshots = repo.snapshots().unwrap();
    assert_eq!(snapshots.len(), 1, "only the finished backup became a snapshot");
    let (id, snapshot) = &snapshots[0];
    for (name, expected) in [("db/app.dump", &dump), ("globals.sql", &globals)] {
        let mut out = Vec::new();
        let written = restorer::restore_stream(&repo, snapshot, id, name, &mut out, &Counters::default()).unwrap();
        assert_eq!(written, expected.len() as u64);
        assert!(out == *expected, "stream {name} differs");
    }
}

#[test]
fn a_wrong_password_opens_nothing_and_a_damaged_pack_is_found() {
    let backend = init();
    assert!(matches!(
        Repository::open(backend.clone(), b"not the password at all"),
        Err(RepositoryError::WrongPassword)
    ));
    let (repo, lock) = open(&backend);
    let mut backup = StreamBackup::start(&repo, &lock, &BackupOptions::default(), Arc::default());
    backup.add("s", &mut noise(5, 50_000).as_slice()).unwrap();
    backup.finish().unwrap();
    drop(lock);

    let pack = backend.list(FileKind::Pack).unwrap().remove(0);
    let mut bytes = backend.read(FileKind::Pack, &pack).unwrap();
    bytes[10] ^= 0x55;
    backend.delete(FileKind::Pack, &pack).unwrap();
    backend.write(FileKind::Pack, &pack, &bytes).unwrap();
    let (checked, _lock) = open(&backend);
    let report = verify::verify(&checked, PacksToRead::All).unwrap();
    assert!(!report.is_ok(), "a flipped byte in a pack is reported");
}
