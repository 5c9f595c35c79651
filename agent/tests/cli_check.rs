//! `hort-agent check` reports the space a directory or S3 target uses, and what a directory
//! target has free.

mod support;

use hort_protocol::report::decode;
use hort_protocol::{CheckReport, TargetReport};
use support::{Kind, Repo};

#[test]
fn check_reports_used_and_free_bytes_of_a_directory_target() {
    let (empty, _) = checks_around_a_backup(&Repo::new(Kind::Fs));
    assert!(empty.bytes_free.unwrap() > 0, "{empty:?}");
}

#[test]
fn check_reports_the_bytes_an_s3_prefix_holds() {
    let repo = Repo::new(Kind::S3);
    let (empty, after) = checks_around_a_backup(&repo);
    assert_eq!(empty.bytes_free, None, "an S3 server does not tell");
    // The bytes of the objects below the prefix, as the server keeps them on disk.
    let on_disk: u64 = walk(&repo.files)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(after.bytes_used, Some(on_disk));
}

/// The first target's report of a check of the new repository, and of one after a backup of
/// 300 kB that do not compress: it uses more by at least those.
fn checks_around_a_backup(repo: &Repo) -> (TargetReport, TargetReport) {
    let work = tempfile::tempdir().unwrap();
    let empty = first_target(repo, work.path());
    assert!(empty.writable, "{empty:?}");
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("data"), support::noise(7, 300_000)).unwrap();
    repo.backup(&src, &[]);
    let after = first_target(repo, work.path());
    let used = after.bytes_used.unwrap();
    assert!(used > 300_000 + empty.bytes_used.unwrap(), "{used}");
    (empty, after)
}

/// Runs `check --init` (its report in a termination log in `work`); the first target's part.
fn first_target(repo: &Repo, work: &std::path::Path) -> TargetReport {
    let log = work.join("termination-log");
    let out = repo
        .cmd(&["check", "--init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .env("HORT_TERMINATION_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: CheckReport = decode(&std::fs::read_to_string(&log).unwrap()).unwrap();
    report.targets[0].clone()
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn check_with_snapshots_counts_them_and_names_the_newest() {
    let repo = Repo::new(Kind::Fs);
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("termination-log");
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "--init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"];
        args.extend(extra);
        let out = repo.cmd(&args).env("HORT_TERMINATION_LOG", &log).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        decode::<CheckReport>(&std::fs::read_to_string(&log).unwrap()).unwrap()
    };
    let empty = check(&["--snapshots"]).snapshots.unwrap();
    assert_eq!((empty.count, empty.newest_id), (0, None));
    assert!(check(&[]).snapshots.is_none(), "counted only when asked");
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), b"first").unwrap();
    repo.backup(&src, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(src.join("a"), b"second").unwrap();
    let newest = repo.backup(&src, &[])["snapshot"].as_str().unwrap().to_owned();
    let counted = check(&["--snapshots"]).snapshots.unwrap();
    assert_eq!(counted.count, 2);
    assert_eq!(counted.newest_id, Some(newest));
    assert!(counted.newest_time.unwrap().ends_with('Z'));
}

/// Runs `check --init` with `HORT_*` overrides; returns whether it succeeded and its report.
fn check_with(repo: &Repo, env: &[(&str, &str)]) -> (bool, CheckReport, String) {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("termination-log");
    let mut cmd = repo.cmd(&["check", "--init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    cmd.env("HORT_TERMINATION_LOG", &log);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    let report = decode(&std::fs::read_to_string(&log).unwrap()).unwrap();
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_failed_check_still_reports_every_target_and_why() {
    // A wrong password: the target is fine, the repository does not open.
    let repo = Repo::new(Kind::Fs);
    assert!(check_with(&repo, &[]).0);
    let (ok, report, stderr) = check_with(&repo, &[("HORT_PASSWORD", "not the password")]);
    assert!(!ok, "a wrong password must fail the check");
    assert!(report.repository_id.is_none(), "{report:?}");
    assert!(report.targets[0].writable, "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("password"), "{error}");
    assert!(stderr.contains(error), "the log says the same: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal colours in a pod's log: {stderr:?}"
    );

    // Wrong S3 keys: the target's own entry says so, briefly.
    let s3 = Repo::new(Kind::S3);
    let (ok, report, _) = check_with(&s3, &[("HORT_TARGET_0_AWS_SECRET_ACCESS_KEY", "wrong")]);
    assert!(!ok);
    let target = &report.targets[0];
    assert!(!target.writable, "{report:?}");
    let error = target.error.as_deref().unwrap();
    assert!(
        error.contains("s3://hort/repo") && error.contains("SignatureDoesNotMatch"),
        "{error}"
    );
    assert!(error.len() < 300, "an error a user can read in a condition: {error}");
}

/// Runs `check` with extra arguments against the targets `spec` (a group with `strategy`).
fn check_targets(spec: &str, strategy: &str, extra: &[&str]) -> (bool, CheckReport, String) {
    let mut repo = Repo::new(Kind::Fs);
    repo.spec = spec.to_owned();
    repo.strategy = Some(match strategy {
        "spread" => "spread",
        "failover" => "failover",
        _ => "mirror",
    });
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("termination-log");
    let mut args = vec!["check", "--kdf-memory-kib", "64", "--kdf-iterations", "1"];
    args.extend_from_slice(extra);
    let out = repo.cmd(&args).env("HORT_TERMINATION_LOG", &log).output().unwrap();
    let report = decode(&std::fs::read_to_string(&log).unwrap()).unwrap();
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_never_splits_a_group_into_two_repositories() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let b = work.path().join("b");
    let (a_spec, b_spec) = (a.display().to_string(), b.display().to_string());
    let (ok, first, stderr) = check_targets(&a_spec, "failover", &["--init"]);
    assert!(ok && first.created, "{stderr}");
    let id = first.repository_id.unwrap();

    for strategy in ["failover", "spread", "mirror"] {
        // An empty target B joins while A cannot be listed (here: a file where its
        // directory should be).
        let hidden = work.path().join("a-away");
        std::fs::rename(&a, &hidden).unwrap();
        std::fs::write(&a, b"not a directory").unwrap();
        let group = format!("{a_spec},{b_spec}");
        let (ok, report, stderr) = check_targets(&group, strategy, &["--init"]);
        assert!(!ok, "{strategy}: must not create a repository on B: {report:?}");
        assert!(
            !report.created && report.repository_id.is_none(),
            "{strategy}: {report:?}"
        );
        let error = report.error.unwrap();
        assert!(error.contains("split the group"), "{strategy}: {error}");
        assert!(stderr.contains("split the group"), "{strategy}: {stderr}");
        let keys_on_b = std::fs::read_dir(b.join("keys")).map_or(0, |d| d.count());
        assert!(
            !b.join("config").exists() && keys_on_b == 0,
            "{strategy}: nothing of a second repository on B"
        );

        // With the group's recorded id, the check does not even try to create one.
        let (ok, report, _) = check_targets(&group, strategy, &["--repository-id", &id]);
        assert!(!ok && report.repository_id.is_none(), "{strategy}: {report:?}");

        // A is back: the group holds A's repository.
        std::fs::remove_file(&a).unwrap();
        std::fs::rename(&hidden, &a).unwrap();
        let (ok, report, stderr) = check_targets(&group, strategy, &["--init"]);
        assert!(ok, "{strategy}: {stderr}");
        assert!(!report.created, "{strategy}: {report:?}");
        assert_eq!(report.repository_id.as_deref(), Some(id.as_str()), "{strategy}");
        let (ok, _, stderr) = check_targets(&group, strategy, &["--repository-id", &id]);
        assert!(ok, "{strategy}: {stderr}");
    }

    // A group whose targets hold another repository than the recorded one fails, naming both.
    let other = "00".repeat(32);
    let (ok, report, _) = check_targets(&a_spec, "mirror", &["--repository-id", &other]);
    assert!(!ok);
    let error = report.error.unwrap();
    assert!(error.contains(&id) && error.contains(&other), "{error}");
    let mut repo = Repo::new(Kind::Fs);
    repo.spec = a_spec.clone();
    let refused = repo.run(&["check", "--init", "--repository-id", &id]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "--init and --repository-id exclude each other"
    );
}
