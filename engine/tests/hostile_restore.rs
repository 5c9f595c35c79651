//! A property of every tree restore: nothing outside the target is ever written, whatever
//! the snapshots hold and whatever the target already holds. Random snapshots over a few
//! shared names (so a name is a file in one, a directory in another and a symlink out of the
//! target in a third) are restored one after another into one target with random overwrite
//! policies; a sandbox directory beside the target, which the symlinks point at by relative
//! and absolute paths, must stay exactly as it was. Names a tree may not hold (`..`, `a/b`,
//! repeated names) are refused when a tree is read (`tree.rs`, and the `tree` fuzz target).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hort_engine::archiver::{self, BackupOptions};
use hort_engine::id::Id;
use hort_engine::restorer::{self, Overwrite, RestoreOptions};
use hort_engine::snapshot::Snapshot;
use support::{init, noise, open};

/// A small deterministic generator (xorshift), so a failing case can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Fills `dir` with a random tree of files, directories and symlinks, `depth` levels deep at
/// most. Symlinks point out of the target: at `outside` by an absolute path, at its sentinel
/// file, or upwards by relative paths.
fn random_tree(rng: &mut Rng, dir: &Path, depth: usize, outside: &Path) {
    fs::create_dir_all(dir).unwrap();
    for name in NAMES {
        let path = dir.join(name);
        match rng.below(if depth == 0 { 3 } else { 4 }) {
            0 => continue,
            1 => fs::write(&path, noise(rng.next(), rng.below(3000))).unwrap(),
            2 => {
                let escapes = [
                    outside.to_path_buf(),
                    outside.join("sentinel"),
                    PathBuf::from("../../../outside"),
                    PathBuf::from("../../outside/sentinel"),
                    PathBuf::from(".."),
                    PathBuf::from("a"),
                ];
                symlink(&escapes[rng.below(escapes.len())], &path).unwrap();
            }
            _ => random_tree(rng, &path, depth - 1, outside),
        }
    }
}

/// Every entry below `dir`: a directory, a symlink's target, or a file's size and content
/// hash (symlinks are not followed).
fn listing(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                let data = fs::read(&path).unwrap();
                format!("{} bytes, {}", data.len(), Id::of_file(&data).short())
            };
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), content);
        }
    }
    out
}

#[test]
fn no_sequence_of_restores_writes_outside_the_target() {
    let backend = init();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let outside = root.join("outside");
    fs::create_dir_all(outside.join("nested")).unwrap();
    fs::write(outside.join("sentinel"), b"must stay").unwrap();
    let before = listing(&outside);

    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (repo, lock) = open(&backend);
    let mut snapshots: Vec<(Id, Snapshot)> = Vec::new();
    for i in 0..12 {
        let src = root.join(format!("src{i}"));
        random_tree(&mut rng, &src, 2, &outside);
        snapshots.push(archiver::backup_tree(&repo, &lock, &src, &BackupOptions::default(), Arc::default()).unwrap());
    }
    drop(lock);
    let (repo, _lock) = open(&backend);

    let (mut files, mut links, mut refused) = (0, 0, 0);
    let policies = [Overwrite::Never, Overwrite::IfNewer, Overwrite::Always];
    for round in 0..8 {
        let target = root.join(format!("target{round}"));
        for _ in 0..6 {
            let (id, snapshot) = &snapshots[rng.below(snapshots.len())];
            let options = RestoreOptions {
                overwrite: policies[rng.below(policies.len())],
                threads: 1 + rng.below(3),
                ..RestoreOptions::default()
            };
            // Entries that clash with what the target holds may fail; the restore says so.
            let report = restorer::restore_tree(&repo, snapshot, id, &target, &options, Arc::default()).unwrap();
            assert!(
                report.failures.iter().all(|f| !f.path.as_os_str().is_empty()),
                "the snapshot's root was restored: {report:?}"
            );
            (files, links, refused) = (
                files + report.files,
                links + report.links,
                refused + report.failures.len(),
            );
            assert_eq!(
                listing(&outside),
                before,
                "round {round}: a restore of {} ({:?}) wrote outside the target",
                id.short(),
                options.overwrite
            );
        }
    }
    // The cases met what they are about: files and links restored, and entries refused
    // because a symlink stood where the snapshot has a directory.
    assert!(
        files > 50 && links > 20 && refused > 5,
        "{files} files, {links} links, {refused} refused"
    );
    let mut top: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("src") && !n.starts_with("target"))
        .collect();
    top.sort();
    assert_eq!(top, ["outside"], "nothing appeared beside the targets");
}
