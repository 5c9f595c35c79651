//! The checked-in repository of format version 1 (`tests/fixtures/repo-v1`, see the README
//! there) opens with its password and restores byte for byte: this version reads what the
//! versions before it wrote.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hort_engine::backend::local::LocalBackend;
use hort_engine::progress::Counters;
use hort_engine::repository::{IndexedRepository, Repository};
use hort_engine::restorer::{self, RestoreOptions};
use hort_engine::verify::{self, PacksToRead};

/// The fixture's password (a test password; see tests/fixtures/README.md).
const PASSWORD: &[u8] = b"hort fixture password v1";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies `from` into `to`, so that nothing the test does can change the checked-in files.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The fixture repository, opened from a copy with its index loaded.
fn open(work: &Path) -> IndexedRepository {
    let copy = work.join("repo-v1");
    copy_tree(&fixtures().join("repo-v1"), &copy);
    Repository::open(Arc::new(LocalBackend::new(copy)), PASSWORD)
        .expect("the format-1 fixture opens with its password")
        .load_index()
        .unwrap()
}

#[test]
fn the_format_1_repository_restores_its_tree_byte_exact() {
    let work = tempfile::tempdir().unwrap();
    let repo = open(work.path());
    let snapshots = repo.snapshots().unwrap();
    assert_eq!(snapshots.len(), 2, "a tree snapshot and a stream snapshot");
    let (id, snapshot) = repo
        .find_tagged_snapshot("latest", &["fixture-tree".to_owned()])
        .unwrap();
    let target = work.path().join("restored");
    let report = restorer::restore_tree(
        &repo,
        &snapshot,
        &id,
        &target,
        &RestoreOptions::default(),
        Arc::default(),
    )
    .unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!((report.files, report.links), (4, 1), "{report:?}");

    let source = fixtures().join("source");
    for file in ["README.txt", "etc/app/config.txt", "etc/app/empty", "etc/random.bin"] {
        let restored = fs::read(target.join(file)).unwrap();
        assert!(
            restored == fs::read(source.join(file)).unwrap(),
            "{file} differs from the source"
        );
    }
    assert_eq!(
        fs::read_link(target.join("etc/link")).unwrap(),
        Path::new("app/config.txt")
    );
}

#[test]
fn the_format_1_repository_restores_its_streams_byte_exact_and_verifies() {
    let work = tempfile::tempdir().unwrap();
    let repo = open(work.path());
    let (id, snapshot) = repo
        .find_tagged_snapshot("latest", &["fixture-stream".to_owned()])
        .unwrap();
    let source = fixtures().join("source");
    for (stream, file) in [("config.txt", "etc/app/config.txt"), ("random.bin", "etc/random.bin")] {
        let mut out = Vec::new();
        restorer::restore_stream(&repo, &snapshot, &id, stream, &mut out, &Counters::default()).unwrap();
        assert!(
            out == fs::read(source.join(file)).unwrap(),
            "stream {stream} differs from {file}"
        );
    }
    let report = verify::verify(&repo, PacksToRead::All).unwrap();
    assert!(report.is_ok(), "{report:?}");
}
