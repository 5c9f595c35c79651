//! `hort-agent check` reports the space a directory target uses and has free.

mod support;

use hort_protocol::report::decode;
use hort_protocol::{CheckReport, TargetReport};
use support::{Kind, Repo};

#[test]
fn check_reports_used_and_free_bytes_of_a_directory_target() {
    let repo = Repo::new(Kind::Fs);
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("termination-log");
    let check = || {
        let out = repo
            .cmd(&["check", "--init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
            .env("HORT_TERMINATION_LOG", &log)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: CheckReport = decode(&std::fs::read_to_string(&log).unwrap()).unwrap();
        report.targets[0].clone()
    };
    let empty: TargetReport = check();
    assert!(empty.writable, "{empty:?}");
    assert!(empty.bytes_free.unwrap() > 0, "{empty:?}");
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("data"), support::noise(7, 300_000)).unwrap();
    repo.backup(&src, &[]);
    let used = check().bytes_used.unwrap();
    assert!(used > 300_000 + empty.bytes_used.unwrap(), "{used}");
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
