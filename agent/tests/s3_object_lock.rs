//! S3 Object Lock against a server that enforces it (Versity Gateway, posix backend): the
//! agent locks config, keys, packs and snapshots (index files stay unlocked), forget and
//! prune leave what is still retained and delete it in a run after the retention ended,
//! and `check` says whether a bucket has Object Lock; Compliance locks hold against the
//! bucket owner until they end. Versioned buckets: `s3_versioned.rs`.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::ObjectLockRetentionMode;
use hort_protocol::CheckReport;
use hort_protocol::report::decode;
use support::object_lock::{
    BUCKET, expire, forget_and_sweep, lock_of, prune, retained_keys, set_retention, two_backups,
};
use support::versity::Versity;
use support::{Repo, noise, summary};

const LOCKED: &str = "s3://locked/repo?credentials=HORT_TARGET_0&object-lock=governance:1";

#[test]
fn content_objects_are_locked_and_prune_deletes_them_only_after_the_retention() {
    let server = Versity::start();
    server.create_bucket(BUCKET, true);
    let repo = Repo::on_server(LOCKED.into(), &server.endpoint);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small"), noise(1, 100_000)).unwrap();
    // Over 16 MiB uncompressed: a multipart upload.
    fs::write(src.join("large"), noise(2, 17 * 1024 * 1024)).unwrap();
    repo.backup(&src, &["--compression", "0"]);
    let older = server.keys(BUCKET, "repo/snapshots/").remove(0);
    fs::remove_file(src.join("large")).unwrap();
    repo.backup(&src, &["--compression", "0"]);

    let day = chrono::Utc::now().timestamp() + 86_400;
    let keys = server.keys(BUCKET, "repo/");
    let locked_kind = |k: &str| {
        k == "repo/config"
            || ["repo/keys/", "repo/data/", "repo/snapshots/"]
                .iter()
                .any(|p| k.starts_with(p))
    };
    assert!(keys.iter().any(|k| k.starts_with("repo/index/")), "{keys:?}");
    for key in &keys {
        let (mode, until) = lock_of(&server, key);
        if locked_kind(key) {
            assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{key}");
            assert!((day - 600..=day + 60).contains(&until.unwrap()), "{key}: {until:?}");
        } else {
            assert_eq!((mode, until), (None, None), "{key} must not be locked");
        }
    }
    // The server enforces it: a pack cannot be deleted behind the agent's back.
    let pack = keys.iter().find(|k| k.starts_with("repo/data/")).unwrap();
    let refused = server.block_on(server.client.delete_object().bucket(BUCKET).key(pack).send());
    assert!(refused.is_err(), "the server deleted a locked pack");

    // Retention rules do not forget a snapshot under Object Lock ...
    let forget = summary(&repo.ok(&["forget", "--keep-last", "1"]));
    assert_eq!(forget["forgotten"], serde_json::json!([]), "{forget}");
    assert!(forget.to_string().contains("object lock"), "{forget}");
    let swept = forget_and_sweep(&server, &repo, &older);
    let left = server.keys(BUCKET, "repo/data/");
    assert!(swept.iter().all(|k| !left.contains(k)), "{left:?}");
    repo.ok(&["verify", "--read-data"]);
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("small")).unwrap(), noise(1, 100_000));
}

/// Runs `check --init` on `spec`; returns whether it succeeded and its report.
fn check(server: &Versity, spec: &str) -> (bool, CheckReport) {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("termination-log");
    let repo = Repo::on_server(spec.into(), &server.endpoint);
    let mut cmd = repo.cmd(&["check", "--init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    cmd.env("HORT_TERMINATION_LOG", &log);
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        decode(&fs::read_to_string(&log).unwrap()).unwrap(),
    )
}

#[test]
fn check_reports_whether_the_bucket_has_object_lock() {
    let server = Versity::start();
    server.create_bucket(BUCKET, true);
    server.create_bucket("plain", false);
    let (ok, report) = check(&server, LOCKED);
    assert!(ok);
    let target = &report.targets[0];
    assert_eq!(
        (target.object_lock_enabled, target.writable),
        (Some(true), true),
        "{target:?}"
    );

    let (_, report) = check(&server, "s3://plain/repo?credentials=HORT_TARGET_0");
    assert_eq!(report.targets[0].object_lock_enabled, Some(false));
    assert!(report.targets[0].writable, "no lock asked for");

    let (_, report) = check(
        &server,
        "s3://plain/repo?credentials=HORT_TARGET_0&object-lock=compliance:7",
    );
    let target = &report.targets[0];
    assert!(!target.writable, "{target:?}");
    let error = target.error.as_deref().unwrap();
    assert!(
        error.contains("bucket plain") && error.contains("compliance:7") && error.contains("not have Object Lock"),
        "{error}"
    );
}

/// Compliance mode, which not even the bucket's owner can shorten or bypass: the objects
/// carry it, the server refuses to shorten their retention or delete them with the
/// governance bypass, and retention rules and prune keep what it protects without failing.
#[test]
fn compliance_locks_cannot_be_bypassed_and_prune_keeps_what_they_protect() {
    let server = Versity::start();
    server.create_bucket(BUCKET, true);
    let work = tempfile::tempdir().unwrap();
    let spec = "s3://locked/repo?credentials=HORT_TARGET_0&object-lock=compliance:1";
    let (repo, older) = two_backups(&server, spec, work.path());
    let pack = server.keys(BUCKET, "repo/data/").remove(0);
    assert_eq!(lock_of(&server, &pack).0.as_deref(), Some("COMPLIANCE"));
    assert_eq!(lock_of(&server, &older).0.as_deref(), Some("COMPLIANCE"));

    let shorten = set_retention(&server, &pack, ObjectLockRetentionMode::Compliance, 2);
    assert!(shorten.is_err(), "the server shortened a compliance retention");
    let delete = delete_bypassing(&server, &pack);
    assert!(delete.is_err(), "the server deleted an object under compliance");

    let forget = summary(&repo.ok(&["forget", "--keep-last", "1"]));
    assert_eq!(forget["forgotten"], serde_json::json!([]), "{forget}");
    let pruned = prune(&repo);
    assert_eq!(pruned["gc"]["deleted"], serde_json::json!([]), "{pruned}");
    assert_eq!(server.keys(BUCKET, "repo/snapshots/").len(), 2);
    repo.ok(&["verify", "--read-data"]);
}

/// A DELETE of `key` with the governance bypass; whether the server deleted it.
fn delete_bypassing(server: &Versity, key: &str) -> Result<(), String> {
    server
        .block_on(
            server
                .client
                .delete_object()
                .bucket(BUCKET)
                .key(key)
                .bypass_governance_retention(true)
                .send(),
        )
        .map(drop)
        .map_err(|e| format!("{e:?}"))
}

/// Compliance retention ends like any other: prune keeps a pack under it, which not even the
/// governance bypass deletes, and deletes it in a run after it ended. The agent writes days
/// of retention and compliance cannot be shortened, so the test moves the unused packs from
/// the agent's governance retention to a compliance retention of a few seconds.
#[test]
fn prune_deletes_a_pack_under_compliance_in_a_run_after_its_retention_ended() {
    const SECONDS: u64 = 20;
    let server = Versity::start();
    server.create_bucket(BUCKET, true);
    let work = tempfile::tempdir().unwrap();
    let (repo, older) = two_backups(&server, LOCKED, work.path());
    expire(&server, &[older]);
    let first = prune(&repo);
    assert_eq!(first["forgotten"].as_array().unwrap().len(), 1, "{first}");
    let packs = server.keys(BUCKET, "repo/data/");
    let unused = retained_keys(&prune(&repo), &packs);

    let started = Instant::now();
    for key in &unused {
        set_retention(&server, key, ObjectLockRetentionMode::Compliance, SECONDS as i64).unwrap();
        assert_eq!(lock_of(&server, key).0.as_deref(), Some("COMPLIANCE"), "{key}");
        assert!(
            delete_bypassing(&server, key).is_err(),
            "the server deleted {key} under compliance"
        );
    }
    // Mark and sweep within the retention: kept, nothing fails.
    prune(&repo);
    let kept = prune(&repo);
    assert!(
        started.elapsed() < Duration::from_secs(SECONDS),
        "the runs outlasted the retention; the test proves nothing"
    );
    assert_eq!(kept["gc"]["deleted"], serde_json::json!([]), "{kept}");
    assert_eq!(retained_keys(&kept, &packs), unused);
    assert_eq!(server.keys(BUCKET, "repo/data/"), packs);

    // After it: the next mark and sweep delete them.
    std::thread::sleep(Duration::from_secs(SECONDS + 1).saturating_sub(started.elapsed()));
    prune(&repo);
    let last = prune(&repo);
    assert_eq!(last["gc"]["deleted"].as_array().unwrap().len(), unused.len(), "{last}");
    let left = server.keys(BUCKET, "repo/data/");
    assert!(unused.iter().all(|k| !left.contains(k)), "{left:?}");
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("small")).unwrap(), noise(1, 100_000));
}
