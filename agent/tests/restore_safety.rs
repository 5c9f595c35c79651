//! A restore never writes outside its target, and setuid/setgid bits come back only when
//! asked for.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::{Kind, Repo};

#[test]
fn a_symlink_in_the_target_is_never_followed() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/file"), b"from the snapshot").unwrap();
    fs::write(src.join("top"), b"top").unwrap();
    repo.backup(&src, &[]);

    // The application replaced `dir` by a symlink to a place outside the target.
    let outside = work.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let target = work.path().join("target");
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("dir")).unwrap();
    let out = repo.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the entries below the symlink are reported as not restored"
    );
    assert!(stderr.contains("not followed"), "{stderr}");
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing was written outside the target"
    );
    assert_eq!(fs::read(target.join("top")).unwrap(), b"top", "the rest is restored");
}

#[test]
fn setuid_and_setgid_bits_are_restored_only_when_asked_for() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("tool"), fs::Permissions::from_mode(0o6755)).unwrap();
    repo.backup(&src, &[]);
    let mode = |dir: &std::path::Path| fs::metadata(dir.join("tool")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&src), 0o6755, "the source has both bits");

    let plain = work.path().join("plain");
    repo.ok(&["restore", "latest", "--target", plain.to_str().unwrap()]);
    assert_eq!(mode(&plain), 0o755);
    let kept = work.path().join("kept");
    repo.ok(&["restore", "latest", "--target", kept.to_str().unwrap(), "--keep-setid"]);
    assert_eq!(mode(&kept), 0o6755);
}
