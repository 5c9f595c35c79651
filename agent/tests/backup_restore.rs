//! End-to-end tests of `hort-agent` against a filesystem repository and a real S3 server.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Stdio;

use hort_protocol::report::decode;
use hort_protocol::{BackupReport, CheckReport};
use support::{Kind, Repo, describe_tree, dump_text, noise, summary};

/// A tree with nested directories, an empty file, a large file, modes and symlinks.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::create_dir_all(root.join("var/empty-dir")).unwrap();
    fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(root.join("etc/conf.d/app.toml"), dump_text(2000, 1)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("var/large.bin"), noise(1, 20 * 1024 * 1024 + 123)).unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(root.join("etc/hosts"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(root.join("etc/conf.d"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("etc/hosts", root.join("hosts-link")).unwrap();
    symlink("/does/not/exist", root.join("dangling")).unwrap();
    xattr::set(root.join("etc/hosts"), "user.hort.test", b"\x00binary\xffvalue").unwrap();
}

fn round_trip(kind: Kind) {
    let repo = Repo::new(kind);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let stats = repo.backup(&src, &["--tag", "first"]);
    assert_eq!(stats["stats"]["files"], 5);
    assert_eq!(stats["stats"]["errors"], 0);

    let target = work.path().join("restored");
    let restored = summary(&repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_eq!(restored["failures"].as_array().unwrap().len(), 0);
    assert_eq!(describe_tree(&target), describe_tree(&src));

    // Chosen paths only.
    let partial = work.path().join("partial");
    repo.ok(&[
        "restore",
        "latest",
        "--target",
        partial.to_str().unwrap(),
        "--path",
        "etc/conf.d",
    ]);
    assert_eq!(
        fs::read(partial.join("etc/conf.d/app.toml")).unwrap(),
        fs::read(src.join("etc/conf.d/app.toml")).unwrap()
    );
    assert!(!partial.join("var").exists() && !partial.join("etc/hosts").exists());

    let listing = repo.ok(&["ls", "latest"]);
    assert!(
        listing.contains("\"path\":\"var/large.bin\"") && listing.contains("\"path\":\"hosts-link\""),
        "{listing}"
    );
    let snapshots: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(repo.ok(&["snapshots"]).trim()).unwrap()["snapshots"].clone();
    assert_eq!(snapshots.as_array().unwrap().len(), 1);
    assert_eq!(snapshots[0]["tags"][0], "first");
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["blobs_read"].as_u64().unwrap() >= 8);
}

#[test]
fn tree_round_trip_on_filesystem() {
    round_trip(Kind::Fs);
}

#[test]
fn tree_round_trip_on_s3() {
    round_trip(Kind::S3);
}

#[test]
fn second_backup_of_the_same_data_stores_almost_nothing() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let first = repo.backup(&src, &[]);
    let total = first["stats"]["bytes"].as_u64().unwrap();
    assert!(first["stats"]["stored_bytes"].as_u64().unwrap() > 20 * 1024 * 1024);

    // Unchanged tree: files are skipped by metadata, nothing new is stored.
    let second = repo.backup(&src, &[]);
    assert_eq!(second["stats"]["files_unchanged"], 5, "{second}");
    assert_eq!(second["stats"]["new_bytes"], 0, "{second}");
    assert_eq!(second["stats"]["packs"], 0);

    // Reading everything again still deduplicates by content.
    let forced = repo.backup(&src, &["--force"]);
    assert_eq!(forced["stats"]["files_unchanged"], 0);
    assert_eq!(forced["stats"]["new_bytes"], 0, "{forced}");

    // The same data under another path: only directory listings are new.
    let copy = work.path().join("copy");
    make_tree(&copy);
    let third = repo.backup(&copy, &[]);
    let new = third["stats"]["new_bytes"].as_u64().unwrap();
    assert!(new < total / 1000, "{new} new bytes of {total}");

    // One changed file: roughly its size is new.
    fs::write(src.join("etc/hosts"), b"10.0.0.1 changed\n").unwrap();
    let fourth = repo.backup(&src, &[]);
    assert_eq!(fourth["stats"]["files_unchanged"], 4, "{fourth}");
    let stats: serde_json::Value = serde_json::from_str(repo.ok(&["stats"]).trim()).unwrap();
    assert!(stats["stored_bytes"].as_u64().unwrap() < total + total / 10, "{stats}");
}

fn streams(kind: Kind) {
    let repo = Repo::new(kind);
    repo.init();
    let dump = dump_text(300_000, 0);
    let mut child = repo
        .cmd(&["backup", "--stdin", "--stream-name", "db1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&dump).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = summary(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(first["stats"]["bytes"], dump.len());
    assert!(
        first["stats"]["stored_bytes"].as_u64().unwrap() < dump.len() as u64 / 3,
        "compressed: {first}"
    );

    let restored = repo.run(&["restore", "latest", "--stream", "db1"]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(restored.stdout == dump, "stream restored byte for byte");

    // A repeated dump with three changed rows, from a command: most of it deduplicates.
    let work = tempfile::tempdir().unwrap();
    let changed = dump_text(300_000, 5);
    let file = work.path().join("dump2.sql");
    fs::write(&file, &changed).unwrap();
    let spec = format!("db1=cat {}", file.display());
    let second = summary(&repo.ok(&["backup", "--stream-command", &spec]));
    let new = second["stats"]["new_bytes"].as_u64().unwrap();
    assert!(new < changed.len() as u64 / 3, "{new} new bytes of {}", changed.len());
    let restored = repo.run(&["restore", "latest", "--stream", "db1"]);
    assert!(restored.stdout == changed);

    // The stream's blob list is kept in content-list blobs (it has far more than 16 blobs),
    // most of them shared by both snapshots: forgetting the first snapshot and collecting
    // garbage (a pack none of whose blobs is marked is deleted) keeps every list and blob the
    // second one needs.
    repo.ok(&["prune", "--keep-last", "1", "--grace", "0"]);
    repo.ok(&["prune", "--gc-only", "--grace", "0"]);
    let restored = repo.run(&["restore", "latest", "--stream", "db1"]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(restored.stdout == changed, "restored byte for byte after prune");
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    let missing = repo.run(&["restore", "latest", "--stream", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no stream `nope` (it has: db1)"));

    // A dump command that fails must not produce a snapshot.
    let failed = repo.run(&["backup", "--stream-command", "db2=echo partial; exit 3"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("stream `db2`"));
    let snapshots: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(repo.ok(&["snapshots"]).trim()).unwrap()["snapshots"].clone();
    assert_eq!(snapshots.as_array().unwrap().len(), 1);
}

#[test]
fn stream_backup_and_restore_on_filesystem() {
    streams(Kind::Fs);
}

#[test]
fn stream_backup_and_restore_on_s3() {
    streams(Kind::S3);
}

#[test]
fn wrong_password_is_reported_clearly() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let out = repo
        .cmd(&["snapshots"])
        .env("HORT_PASSWORD", "not the password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
    let elsewhere = tempfile::tempdir().unwrap();
    let out = repo
        .cmd(&["snapshots"])
        .env("HORT_REPOSITORY", elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no repository here"));
}

#[test]
fn packs_are_spooled_in_the_spool_dir_and_an_unusable_one_is_named() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let spool = work.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let stats = repo.backup(&src, &["--spool-dir", spool.to_str().unwrap()]);
    assert_eq!(stats["stats"]["errors"], 0);
    assert_eq!(
        fs::read_dir(&spool).unwrap().count(),
        0,
        "spool files are removed once stored"
    );
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));

    // New data needs a pack; unchanged data needs none.
    fs::write(src.join("new.bin"), noise(2, 100_000)).unwrap();
    let missing = work.path().join("no-such-dir");
    let out = repo
        .cmd(&["backup", src.to_str().unwrap()])
        .env("HORT_SPOOL_DIR", &missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(missing.to_str().unwrap()) && stderr.contains("--spool-dir"),
        "{stderr}"
    );
    let snapshots: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(repo.ok(&["snapshots"]).trim()).unwrap()["snapshots"].clone();
    assert_eq!(
        snapshots.as_array().unwrap().len(),
        1,
        "the failed backup left no snapshot"
    );
}

/// Backs up `a.bin`, then adds `b.bin` and backs up again; returns the pack holding only
/// `b.bin`'s data and the source directory.
fn two_generations(repo: &Repo, work: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.bin"), noise(10, 3 * 1024 * 1024)).unwrap();
    repo.backup(&src, &[]);
    let before = repo.packs();
    fs::write(src.join("b.bin"), noise(11, 3 * 1024 * 1024)).unwrap();
    repo.backup(&src, &[]);
    let new: Vec<_> = repo.packs().into_iter().filter(|p| !before.contains(p)).collect();
    let data_pack = new.into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    (data_pack, src)
}

fn flipped_bit(kind: Kind) {
    let repo = Repo::new(kind);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let (pack, src) = two_generations(&repo, work.path());
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[1_000_000] ^= 0x04;
    fs::write(&pack, bytes).unwrap();

    let target = work.path().join("restored");
    let out = repo.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let report = summary(&String::from_utf8_lossy(&out.stdout));
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0]["path"], "b.bin");
    assert!(failures[0]["error"].as_str().unwrap().contains(&pack_name), "{report}");
    assert!(!target.join("b.bin").exists(), "no damaged file is left behind");
    assert_eq!(
        fs::read(target.join("a.bin")).unwrap(),
        fs::read(src.join("a.bin")).unwrap()
    );
    assert!(fs::read_dir(&target).unwrap().count() == 1, "no temporary files left");

    let out = repo.run(&["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(4));
    let verify: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = verify_failures(&verify);
    assert!(
        problems.contains(&format!("pack {pack_name}: damaged: content does not match its name")),
        "{problems}"
    );
    assert!(
        problems.contains(&format!("file /b.bin: damaged (pack {pack_name})")),
        "{problems}"
    );
    assert!(!problems.contains("a.bin"), "{problems}");
}

/// The failures of a `verify` line, one `subject: detail` per line.
fn verify_failures(verify: &serde_json::Value) -> String {
    let failures = verify["failures"].as_array().unwrap().iter();
    failures
        .map(|f| {
            format!(
                "{}: {}\n",
                f["subject"].as_str().unwrap(),
                f["detail"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn flipped_bit_in_a_pack_is_detected_and_named_on_filesystem() {
    flipped_bit(Kind::Fs);
}

#[test]
fn flipped_bit_in_a_pack_is_detected_and_named_on_s3() {
    flipped_bit(Kind::S3);
}

fn missing_and_truncated_pack(kind: Kind) {
    let repo = Repo::new(kind);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let (pack, _) = two_generations(&repo, work.path());
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();
    let original = fs::read(&pack).unwrap();

    fs::write(&pack, &original[..original.len() / 2]).unwrap();
    let target = work.path().join("t1");
    let out = repo.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let report = summary(&String::from_utf8_lossy(&out.stdout));
    let error = report["failures"][0]["error"].as_str().unwrap().to_owned();
    assert!(error.contains(&pack_name) && error.contains("unreadable"), "{error}");
    assert!(!target.join("b.bin").exists());

    fs::remove_file(&pack).unwrap();
    let target = work.path().join("t2");
    let out = repo.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let report = summary(&String::from_utf8_lossy(&out.stdout));
    let error = report["failures"][0]["error"].as_str().unwrap().to_owned();
    assert!(error.contains(&format!("pack {pack_name} is missing")), "{error}");
    assert!(target.join("a.bin").exists() && !target.join("b.bin").exists());

    let out = repo.run(&["verify"]);
    assert_eq!(out.status.code(), Some(4));
    let problems = verify_failures(&serde_json::from_slice(&out.stdout).unwrap());
    assert!(problems.contains(&format!("pack {pack_name}: missing")), "{problems}");
    assert!(
        problems.contains(&format!("file /b.bin: damaged (pack {pack_name})")),
        "{problems}"
    );
}

#[test]
fn missing_or_truncated_pack_is_reported_on_filesystem() {
    missing_and_truncated_pack(Kind::Fs);
}

#[test]
fn missing_or_truncated_pack_is_reported_on_s3() {
    missing_and_truncated_pack(Kind::S3);
}

#[test]
fn mirror_group_survives_losing_one_target() {
    let (repo, s3_files) = Repo::mirror();
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    repo.backup(&src, &[]);
    let packs = repo.packs();
    assert!(!packs.is_empty());
    for pack in &packs {
        let mirrored = s3_files
            .join("data")
            .join(pack.strip_prefix(repo.files.join("data")).unwrap());
        assert_eq!(
            fs::read(pack).unwrap(),
            fs::read(&mirrored).unwrap(),
            "every pack on both targets"
        );
    }

    // A damaged copy on one target: reads use the intact copy on the other.
    for pack in &packs {
        let mut bytes = fs::read(pack).unwrap();
        bytes[100] ^= 0x01;
        fs::write(pack, bytes).unwrap();
    }
    let target = work.path().join("from-damaged");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));

    fs::remove_dir_all(repo.files.join("data")).unwrap();
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));

    fs::remove_dir_all(repo.files.join("index")).unwrap();
    fs::remove_dir_all(s3_files.join("data")).unwrap();
    let out = repo.run(&[
        "restore",
        "latest",
        "--target",
        work.path().join("t2").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "with both copies gone the loss is reported");
}

#[test]
fn killed_backup_leaves_a_valid_repository_and_the_next_backup_completes() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        fs::write(src.join(format!("part{i}.bin")), noise(100 + i, 12 * 1024 * 1024)).unwrap();
    }
    let mut child = repo
        .cmd(&["backup", src.to_str().unwrap(), "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while repo.packs().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no pack written");
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup ended before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let snapshots: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(repo.ok(&["snapshots"]).trim()).unwrap()["snapshots"].clone();
    assert_eq!(snapshots.as_array().unwrap().len(), 0, "killed mid-upload: no snapshot");
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");

    repo.backup(&src, &[]);
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));
}

#[test]
fn check_probes_every_target_and_creates_the_repository_once() {
    let (repo, _) = Repo::mirror();
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("termination-log");
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "--init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"];
        args.extend_from_slice(extra);
        let out = repo.cmd(&args).env("HORT_TERMINATION_LOG", &log).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        decode::<CheckReport>(&fs::read_to_string(&log).unwrap()).unwrap()
    };
    let first = check(&[]);
    assert!(first.created, "{first:?}");
    assert_eq!(first.targets.len(), 2);
    for target in &first.targets {
        assert!(target.reachable && target.writable, "{first:?}");
    }
    let second = check(&[]);
    assert!(!second.created);
    assert_eq!(second.repository_id, first.repository_id);
    assert!(
        !repo
            .files
            .join("probe")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    );

    // The operator's report after a backup.
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"hello").unwrap();
    let out = repo
        .cmd(&["backup", src.to_str().unwrap()])
        .env("HORT_TERMINATION_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: BackupReport = decode(&fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!((report.files, report.bytes_read), (1, 5));
    assert_eq!(
        Some(report.snapshot_id.as_str()),
        summary(&String::from_utf8_lossy(&out.stdout))["snapshot"].as_str()
    );
}

#[test]
fn chosen_paths_excludes_tags_and_overwrite_policies() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for (path, body) in [
        ("etc/a.conf", "a"),
        ("etc/b.log", "b"),
        ("var/x", "x"),
        ("cache/y", "y"),
    ] {
        fs::create_dir_all(src.join(path).parent().unwrap()).unwrap();
        fs::write(src.join(path), body).unwrap();
    }
    let s = src.to_str().unwrap();
    repo.ok(&["backup", s, "--exclude", "*.log", "--exclude", "cache", "--tag", "t1"]);
    repo.ok(&["backup", s, "--path", "var", "--tag", "t2"]);

    let all = work.path().join("all");
    repo.ok(&["restore", "latest", "--tag", "t1", "--target", all.to_str().unwrap()]);
    assert!(all.join("etc/a.conf").exists() && all.join("var/x").exists());
    assert!(!all.join("etc/b.log").exists() && !all.join("cache").exists());
    let only_var = work.path().join("only-var");
    repo.ok(&["restore", "latest", "--target", only_var.to_str().unwrap()]);
    assert!(only_var.join("var/x").exists() && !only_var.join("etc").exists());

    let local = all.join("etc/a.conf");
    fs::write(&local, "local change").unwrap();
    fs::set_permissions(all.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
    let restore = |policy: &str| {
        repo.run(&[
            "restore",
            "latest",
            "--tag",
            "t1",
            "--target",
            all.to_str().unwrap(),
            "--overwrite",
            policy,
        ])
    };
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        summary(&String::from_utf8_lossy(&out.stdout))
    };
    // Every entry exists: `never` writes nothing, which fails and says why.
    let kept_all = restore("never");
    assert_eq!(kept_all.status.code(), Some(2), "nothing restored is a failure");
    let stderr = String::from_utf8_lossy(&kept_all.stderr);
    assert!(
        stderr.contains("nothing restored") && stderr.contains("--overwrite never keeps them"),
        "{stderr}"
    );
    // With one file missing, `never` restores that one and keeps the rest as they are,
    // directories included.
    fs::remove_file(all.join("var/x")).unwrap();
    let partial = ok(restore("never"));
    assert_eq!(partial["files"], 1, "{partial}");
    assert!(partial["skipped"].as_u64().unwrap() >= 1, "{partial}");
    assert_eq!(fs::read_to_string(all.join("var/x")).unwrap(), "x");
    assert_eq!(fs::read_to_string(&local).unwrap(), "local change");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&all.join("etc")), 0o700, "a kept directory keeps its mode");
    assert_eq!(
        restore("if-newer").status.code(),
        Some(2),
        "every local entry is as new or newer: nothing restored"
    );
    assert_eq!(
        fs::read_to_string(&local).unwrap(),
        "local change",
        "the local file is newer"
    );
    fs::File::options()
        .write(true)
        .open(&local)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    ok(restore("if-newer"));
    assert_eq!(
        fs::read_to_string(&local).unwrap(),
        "a",
        "an older local file is replaced"
    );
    fs::write(&local, "again").unwrap();
    ok(restore("always"));
    assert_eq!(fs::read_to_string(&local).unwrap(), "a");
    assert_ne!(mode(&all.join("etc")), 0o700, "`always` restores the directory's mode");
    // Paths that are not in the snapshot: nothing restored, and said so.
    let missing = repo.run(&[
        "restore",
        "latest",
        "--tag",
        "t1",
        "--target",
        only_var.to_str().unwrap(),
        "--path",
        "no/such/dir",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("has no entry at --path no/such/dir"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    assert!(
        !repo
            .run(&["restore", "latest", "--tag", "nope", "--target", "/tmp/x"])
            .status
            .success()
    );
}

#[test]
fn excludes_follow_gitignore_rules_in_the_files_restored() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = [
        "cache/blob",          // `cache/`: a directory at the root
        "app/cache/blob",      // `cache/`: a directory at any depth
        "app/cache.txt",       // kept: a file, not the directory `cache`
        "app/debug.log",       // `*.log` at any depth
        "app/keep.log",        // `!keep.log` includes it again
        "tmp/scratch",         // `/tmp`: anchored at the root
        "app/tmp/scratch",     // kept: `/tmp` is anchored
        "app/deep/down/x.tmp", // `**/*.tmp`
        "app/deep/down/x.txt", // kept
    ];
    for path in files {
        fs::create_dir_all(src.join(path).parent().unwrap()).unwrap();
        fs::write(src.join(path), path).unwrap();
    }
    let mut args = vec!["backup", src.to_str().unwrap()];
    for pattern in ["cache/", "*.log", "!keep.log", "/tmp", "**/*.tmp"] {
        args.extend(["--exclude", pattern]);
    }
    repo.ok(&args);
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let present: Vec<&str> = files.iter().copied().filter(|p| target.join(p).exists()).collect();
    assert_eq!(
        present,
        [
            "app/cache.txt",
            "app/keep.log",
            "app/tmp/scratch",
            "app/deep/down/x.txt"
        ]
    );
    assert!(!target.join("cache").exists() && !target.join("app/cache").exists());

    // The same rules at restore time.
    let partial = work.path().join("partial");
    repo.ok(&[
        "restore",
        "latest",
        "--target",
        partial.to_str().unwrap(),
        "--exclude",
        "deep/",
    ]);
    assert!(partial.join("app/keep.log").exists() && !partial.join("app/deep").exists());
    let bad = repo.run(&["backup", src.to_str().unwrap(), "--exclude", "[z-a]"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("exclude pattern `[z-a]`"));
}
