//! A target's storage class goes on pack files only: the index, snapshots, keys and config
//! stay in the server's default class, where every command can read them. The S3 test server
//! refuses classes it does not know, which shows which uploads carry the class.

mod support;

use std::fs;

use support::{Kind, Repo, noise};

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
    // ... a pack is refused because it carries the class (a small one: a single upload) ...
    let out = repo.run(&["backup", src.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the server must have refused the pack");
    assert!(
        stderr.contains("InvalidStorageClass") && stderr.contains("/data/"),
        "{stderr}"
    );
    // ... and so is a pack large enough for a multipart upload (over 16 MiB).
    fs::remove_file(src.join("small")).unwrap();
    fs::write(src.join("large"), noise(2, 17 * 1024 * 1024)).unwrap();
    let out = repo.run(&["backup", src.to_str().unwrap(), "--compression", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("InvalidStorageClass"),
        "{stderr}"
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
