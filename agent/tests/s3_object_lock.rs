//! S3 Object Lock against a server that enforces it (Versity Gateway, posix backend): the
//! agent locks config, keys, packs and snapshots (index files stay unlocked), forget and
//! prune leave what is still retained and delete it in a run after the retention ended,
//! and `check` says whether a bucket has Object Lock; in a versioned bucket prune leaves no
//! version behind, and Compliance locks hold against the bucket owner.

mod support;

use std::fs;
use std::time::Duration;

use aws_sdk_s3::primitives::DateTime as AwsDateTime;
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
use hort_protocol::CheckReport;
use hort_protocol::report::decode;
use support::versity::Versity;
use support::{Repo, noise, summary};

const LOCKED: &str = "s3://locked/repo?credentials=HORT_TARGET_0&object-lock=governance:1";

/// The object's lock mode and retention date (seconds), as the server reports them.
fn lock_of(server: &Versity, key: &str) -> (Option<String>, Option<i64>) {
    let head = server
        .block_on(server.client.head_object().bucket("locked").key(key).send())
        .unwrap();
    (
        head.object_lock_mode().map(|m| m.as_str().to_owned()),
        head.object_lock_retain_until_date().map(|d| d.secs()),
    )
}

/// Shortens the retention of `keys` to two seconds from now (governance, with the bypass
/// permission the root keys have), as if a day had passed, and waits for it to end.
fn expire(server: &Versity, keys: &[String]) {
    let until = AwsDateTime::from_secs(chrono::Utc::now().timestamp() + 2);
    for key in keys {
        let retention = ObjectLockRetention::builder()
            .mode(ObjectLockRetentionMode::Governance)
            .retain_until_date(until)
            .build();
        server
            .block_on(
                server
                    .client
                    .put_object_retention()
                    .bucket("locked")
                    .key(key)
                    .bypass_governance_retention(true)
                    .retention(retention)
                    .send(),
            )
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
}

fn prune(repo: &Repo) -> serde_json::Value {
    summary(&repo.ok(&["prune", "--keep-last", "1", "--grace", "0"]))
}

/// Lets snapshot `older` expire and prunes: it is forgotten and its unused packs condemned;
/// the sweep keeps them while they are retained, and deletes them in a later run once their
/// retention has ended. Returns the keys of the packs deleted.
fn forget_and_sweep(server: &Versity, repo: &Repo, older: &str) -> Vec<String> {
    assert_eq!(server.keys("locked", "repo/snapshots/").len(), 2);
    // Once the snapshot's retention has ended it is forgotten, and its packs condemned.
    expire(server, &[older.to_owned()]);
    let first = prune(repo);
    assert_eq!(first["forgotten"].as_array().unwrap().len(), 1, "{first}");
    assert!(!first["gc"]["condemned"].as_array().unwrap().is_empty(), "{first}");
    // (A pack the first snapshot shared with the second may have been repacked into a new one.)
    let packs_before = server.keys("locked", "repo/data/");

    // The sweep keeps the unused packs: still retained, and nothing fails.
    let second = prune(repo);
    let retained = second["gc"]["retained"].as_array().unwrap().clone();
    assert!(!retained.is_empty(), "{second}");
    assert_eq!(second["gc"]["deleted"], serde_json::json!([]), "{second}");
    assert_eq!(server.keys("locked", "repo/data/"), packs_before);

    // Once their retention has ended, a later run condemns them again and the next deletes.
    let unused: Vec<String> = packs_before
        .iter()
        .filter(|k| retained.iter().any(|id| k.ends_with(id.as_str().unwrap())))
        .cloned()
        .collect();
    assert_eq!(unused.len(), retained.len());
    expire(server, &unused);
    prune(repo);
    let last = prune(repo);
    assert_eq!(last["gc"]["deleted"].as_array().unwrap().len(), unused.len(), "{last}");
    unused
}

#[test]
fn content_objects_are_locked_and_prune_deletes_them_only_after_the_retention() {
    let server = Versity::start();
    server.create_bucket("locked", true);
    let repo = Repo::on_server(LOCKED.into(), &server.endpoint);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small"), noise(1, 100_000)).unwrap();
    // Over 16 MiB uncompressed: a multipart upload.
    fs::write(src.join("large"), noise(2, 17 * 1024 * 1024)).unwrap();
    repo.backup(&src, &["--compression", "0"]);
    let older = server.keys("locked", "repo/snapshots/").remove(0);
    fs::remove_file(src.join("large")).unwrap();
    repo.backup(&src, &["--compression", "0"]);

    let day = chrono::Utc::now().timestamp() + 86_400;
    let keys = server.keys("locked", "repo/");
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
    let refused = server.block_on(server.client.delete_object().bucket("locked").key(pack).send());
    assert!(refused.is_err(), "the server deleted a locked pack");

    // Retention rules do not forget a snapshot under Object Lock ...
    let forget = summary(&repo.ok(&["forget", "--keep-last", "1"]));
    assert_eq!(forget["forgotten"], serde_json::json!([]), "{forget}");
    assert!(forget.to_string().contains("object lock"), "{forget}");
    let swept = forget_and_sweep(&server, &repo, &older);
    let left = server.keys("locked", "repo/data/");
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
    server.create_bucket("locked", true);
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

/// Two backups, the second without the large file, to a fresh `locked` bucket with `spec`;
/// returns the repository and the key of the first snapshot.
fn two_backups(server: &Versity, spec: &str, work: &std::path::Path) -> (Repo, String) {
    let repo = Repo::on_server(spec.into(), &server.endpoint);
    repo.init();
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small"), noise(1, 100_000)).unwrap();
    fs::write(src.join("large"), noise(2, 3 * 1024 * 1024)).unwrap();
    repo.backup(&src, &["--compression", "0"]);
    let older = server.keys("locked", "repo/snapshots/").remove(0);
    fs::remove_file(src.join("large")).unwrap();
    repo.backup(&src, &["--compression", "0"]);
    (repo, older)
}

/// In a versioned bucket (every Object Lock bucket on AWS is one) a DELETE without a version
/// would only hide a pack behind a delete marker and keep paying for it: prune deletes the
/// version itself, so nothing of a swept pack is left.
#[test]
fn in_a_versioned_bucket_prune_leaves_no_version_of_a_swept_pack() {
    let server = Versity::start_versioned();
    server.create_bucket("locked", true);
    server
        .block_on(
            server
                .client
                .put_bucket_versioning()
                .bucket("locked")
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let (repo, older) = two_backups(&server, LOCKED, work.path());
    let pack = server.keys("locked", "repo/data/").remove(0);
    let version = server.versions("locked", &pack);
    assert!(
        version.len() == 1 && !version[0].ends_with("@null") && !version[0].ends_with('@'),
        "the bucket keeps versions: {version:?}"
    );

    let swept = forget_and_sweep(&server, &repo, &older);
    let versions = server.versions("locked", "repo/data/");
    for key in &swept {
        assert!(
            versions.iter().all(|v| !v.starts_with(&format!("{key}@"))),
            "{key} left a version or a delete marker: {versions:?}"
        );
    }
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("small")).unwrap(), noise(1, 100_000));
}

/// Compliance mode, which not even the bucket's owner can shorten or bypass: the objects
/// carry it, the server refuses to shorten their retention or delete them with the
/// governance bypass, and retention rules and prune keep what it protects without failing.
#[test]
fn compliance_locks_cannot_be_bypassed_and_prune_keeps_what_they_protect() {
    let server = Versity::start();
    server.create_bucket("locked", true);
    let work = tempfile::tempdir().unwrap();
    let spec = "s3://locked/repo?credentials=HORT_TARGET_0&object-lock=compliance:1";
    let (repo, older) = two_backups(&server, spec, work.path());
    let pack = server.keys("locked", "repo/data/").remove(0);
    assert_eq!(lock_of(&server, &pack).0.as_deref(), Some("COMPLIANCE"));
    assert_eq!(lock_of(&server, &older).0.as_deref(), Some("COMPLIANCE"));

    let shorten = server.block_on(
        server
            .client
            .put_object_retention()
            .bucket("locked")
            .key(&pack)
            .bypass_governance_retention(true)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Compliance)
                    .retain_until_date(AwsDateTime::from_secs(chrono::Utc::now().timestamp() + 2))
                    .build(),
            )
            .send(),
    );
    assert!(shorten.is_err(), "the server shortened a compliance retention");
    let delete = server.block_on(
        server
            .client
            .delete_object()
            .bucket("locked")
            .key(&pack)
            .bypass_governance_retention(true)
            .send(),
    );
    assert!(delete.is_err(), "the server deleted an object under compliance");

    let forget = summary(&repo.ok(&["forget", "--keep-last", "1"]));
    assert_eq!(forget["forgotten"], serde_json::json!([]), "{forget}");
    let pruned = prune(&repo);
    assert_eq!(pruned["gc"]["deleted"], serde_json::json!([]), "{pruned}");
    assert_eq!(server.keys("locked", "repo/snapshots/").len(), 2);
    repo.ok(&["verify", "--read-data"]);
}
