//! `verify-restore` (a volume snapshot restored into scratch and compared with the snapshot)
//! and `verify` of the repository, on a directory target: their reports on a good backup, and
//! what they name when a pack holding a file's data is damaged.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use hort_protocol::VerificationReport;
use hort_protocol::report::decode;
use support::{Kind, Repo};

/// Runs `args` with a termination log; returns the output and the report, if one was written.
fn run(repo: &Repo, args: &[&str]) -> (Output, Option<VerificationReport>) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = repo.cmd(args).env("HORT_TERMINATION_LOG", log.path()).output().unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    let report = (!text.is_empty()).then(|| decode(&text).unwrap());
    (out, report)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A tree with a multi-chunk file, a small one, a read-only one, a link and a private directory.
fn source(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("big.bin"), support::noise(1, 3_000_000)).unwrap();
    std::fs::write(dir.join("sub/small.txt"), b"hello").unwrap();
    std::fs::write(dir.join("readonly.txt"), b"keep").unwrap();
    std::fs::set_permissions(dir.join("readonly.txt"), std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub/small.txt", dir.join("link")).unwrap();
}

#[test]
fn a_good_volume_backup_verifies_and_the_scratch_is_emptied_unless_kept() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    source(&src);
    repo.backup(&src, &["--tag", "nightly"]);
    let scratch = work.path().join("scratch");

    let (out, report) = run(
        &repo,
        &[
            "verify-restore",
            "latest",
            "--tag",
            "nightly",
            "--scratch",
            scratch.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = report.expect("a report");
    assert!(
        report.ok && report.failures.is_empty() && report.failures_total == 0,
        "{report:?}"
    );
    assert_eq!((report.files, report.bytes), (3, 3_000_000 + 5 + 4), "{report:?}");
    assert!(
        report.snapshot_id.as_ref().is_some_and(|id| id.len() == 64),
        "{report:?}"
    );
    assert!(report.restore_seconds > 0.0 && report.check_seconds > 0.0, "{report:?}");
    assert!(
        report.checked[0].starts_with("3 files, 2.9 MiB: sizes, permissions and content hashes compared"),
        "{:?}",
        report.checked
    );
    assert!(
        report.checked[1].starts_with("1 directories and 1 symbolic links"),
        "{:?}",
        report.checked
    );
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the scratch is emptied"
    );

    // With --keep the restored files stay, for a check that runs afterwards.
    let kept = work.path().join("kept");
    let (out, report) = run(
        &repo,
        &[
            "verify-restore",
            "latest",
            "--keep",
            "--scratch",
            kept.to_str().unwrap(),
        ],
    );
    assert!(out.status.success() && report.unwrap().ok, "{}", stderr(&out));
    assert_eq!(
        std::fs::read(kept.join("big.bin")).unwrap(),
        support::noise(1, 3_000_000),
        "the restored files are left in place"
    );

    // A scratch directory that holds anything is refused and left alone.
    std::fs::write(scratch.join("precious"), b"mine").unwrap();
    let (out, report) = run(
        &repo,
        &["verify-restore", "latest", "--scratch", scratch.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(report.is_none());
    assert!(
        stderr(&out).contains("--scratch") && stderr(&out).contains("not empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(scratch.join("precious")).unwrap(), b"mine");
}

#[test]
fn a_database_snapshot_is_refused_naming_its_command() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let mut backup = repo.cmd(&[
        "backup",
        "--stdin",
        "--stream-name",
        "dump",
        "--tag",
        "hort.dev/source=mariadb",
    ]);
    backup.stdin(std::process::Stdio::null());
    assert!(backup.output().unwrap().status.success());
    let scratch = tempfile::tempdir().unwrap();
    let (out, report) = run(
        &repo,
        &[
            "verify-restore",
            "latest",
            "--scratch",
            scratch.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(report.is_none());
    assert!(
        stderr(&out).contains("verify it with verify-restore-mariadb"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_volume_snapshot_is_refused_by_the_database_verification() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("f"), b"x").unwrap();
    repo.backup(work.path(), &[]);
    let out = repo
        .cmd(&[
            "verify-restore-postgres",
            "latest",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
        ])
        .env("HORT_DB_USER", "postgres")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a volume's backup: verify it with verify-restore"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_damaged_pack_fails_verification_naming_the_file() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("good.txt"), b"fine").unwrap();
    repo.backup(&src, &[]);
    // The second backup's new data pack holds only the new file's chunks.
    let before = repo.packs();
    std::fs::write(src.join("victim.bin"), support::noise(2, 2_000_000)).unwrap();
    repo.backup(&src, &[]);
    let data_pack = repo
        .packs()
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&data_pack).unwrap();
    for b in &mut bytes[1000..1010] {
        *b ^= 0xff;
    }
    std::fs::set_permissions(&data_pack, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&data_pack, bytes).unwrap();
    let pack_id = data_pack.file_name().unwrap().to_string_lossy().into_owned();

    let scratch = work.path().join("scratch");
    let (out, report) = run(
        &repo,
        &["verify-restore", "latest", "--scratch", scratch.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let report = report.expect("a report also when a check failed");
    assert!(!report.ok && report.failures_total == 1, "{report:?}");
    assert_eq!(report.failures[0].subject, "/victim.bin", "{report:?}");
    assert!(report.failures[0].detail.contains("not restored"), "{report:?}");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the scratch is emptied"
    );

    // The repository's own verification reads the pack and names it and the file.
    let (out, report) = run(&repo, &["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let report = report.expect("a report");
    assert!(!report.ok && report.snapshot_id.is_none(), "{report:?}");
    let subjects: Vec<&str> = report.failures.iter().map(|f| f.subject.as_str()).collect();
    assert!(subjects.contains(&format!("pack {pack_id}").as_str()), "{subjects:?}");
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.subject.ends_with("file /victim.bin") && f.detail.contains(&pack_id)),
        "{report:?}"
    );
    assert!(!subjects.iter().any(|s| s.contains("good.txt")), "{subjects:?}");
    let packs = repo.packs().len();
    let stored_bytes: u64 = repo.packs().iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    let damaged_bytes = std::fs::metadata(&data_pack).unwrap().len();
    let read = report.packs.expect("the repository's verify reports what it read");
    assert_eq!(
        (read.snapshots, read.stored, read.read, read.bytes_read),
        (2, packs as u64, packs as u64, stored_bytes - damaged_bytes),
        "every pack read, the bytes of the intact ones counted"
    );
    assert!(
        report
            .checked
            .iter()
            .any(|c| c.starts_with(&format!("packs: {packs} of {packs} read (all, "))),
        "{:?}",
        report.checked
    );

    // Without reading data the structure is sound; a 1% share reads one pack.
    let (out, report) = run(&repo, &["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(report.unwrap().ok);
    let (_, report) = run(&repo, &["verify", "--read-data-subset", "1%"]);
    let report = report.unwrap();
    assert!(
        report
            .checked
            .iter()
            .any(|c| c.starts_with(&format!("packs: 1 of {packs} read (1%, "))),
        "{:?}",
        report.checked
    );
    assert_eq!(report.packs.map(|p| p.read), Some(1));
    let (out, _) = run(&repo, &["verify", "--read-data-subset", "0%"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
