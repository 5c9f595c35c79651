//! A target's storage class goes on data pack files only: the index, snapshots, keys, config
//! and tree packs stay in the server's default class, where every command can read them. The
//! S3 test server refuses classes it does not know on single uploads, which shows which
//! uploads carry the class.

mod support;

use std::fs;

use std::path::Path;

use support::{Kind, Repo, noise};

/// The files under `dir` as (`repo/data/…` key, length).
fn walk(dir: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            let path = entry.path();
            let key = path.to_str().unwrap().split("/hort/").nth(1).unwrap().to_string();
            files.push((key, entry.metadata().unwrap().len()));
        }
    }
    files
}

#[test]
fn the_storage_class_is_sent_with_packs_and_never_with_metadata() {
    let mut repo = Repo::new(Kind::S3);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small"), noise(1, 100_000)).unwrap();
    let plain = repo.spec.clone();

    // An unknown class: config and key file are written (they carry no class) ...
    repo.spec = format!("{plain}&storage-class=COLD_TEST");
    repo.init();
    // ... a pack is refused because it carries the class (a small one: a single upload).
    let out = repo.run(&["backup", src.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the server must have refused the pack");
    assert!(
        stderr.contains("InvalidStorageClass") && stderr.contains("/data/"),
        "{stderr}"
    );
    // A pack large enough for a multipart upload (over 16 MiB) carries the class too. The
    // S3 test server ignores the class of a multipart upload, so an in-process server that
    // records the classes it is given shows it.
    let (endpoint, seen, root) = support::archive_server::start();
    let archived = Repo::on_server(
        "s3://hort/repo?credentials=HORT_TARGET_0&storage-class=GLACIER".into(),
        &endpoint,
    );
    archived.init();
    fs::remove_file(src.join("small")).unwrap();
    fs::write(src.join("large"), noise(2, 17 * 1024 * 1024)).unwrap();
    archived.backup(&src, &["--compression", "0"]);
    let keys = seen.archived_keys();
    let large: Vec<_> = walk(&root.path().join("hort/repo/data"))
        .into_iter()
        .filter(|(_, len)| *len > 16 * 1024 * 1024)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(large.len(), 1, "one pack over 16 MiB: {large:?}");
    assert!(
        keys.contains(&large[0]),
        "{} was uploaded without the class; archived: {keys:?}",
        large[0]
    );

    // A class the server knows: the backup and a restore work.
    repo.spec = format!("{plain}&storage-class=REDUCED_REDUNDANCY");
    repo.backup(&src, &["--compression", "0"]);
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::read(target.join("large")).unwrap(),
        fs::read(src.join("large")).unwrap()
    );
}
