//! Prune in a versioned bucket (every Object Lock bucket on AWS is one), against Versity
//! Gateway: a DELETE without a version id only puts a delete marker on top, and the data
//! stays and is billed. Prune deletes every version of what it removes, with or without a
//! lock on the target, and a version under a retention the target was not told about (the
//! bucket's default) stays listed, so a later run deletes it once the retention ended.

mod support;

use std::fs;

use aws_sdk_s3::types::{
    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
};
use support::object_lock::{BUCKET, forget_and_sweep, prune, two_backups};
use support::versity::Versity;
use support::{Repo, noise, summary};

const LOCKED: &str = "s3://locked/repo?credentials=HORT_TARGET_0&object-lock=governance:1";
const PLAIN: &str = "s3://locked/repo?credentials=HORT_TARGET_0";

/// Every version and delete marker of `keys` still stored.
fn left_of(server: &Versity, keys: &[String]) -> Vec<String> {
    let versions = server.versions(BUCKET, "repo/");
    versions
        .into_iter()
        .filter(|v| keys.iter().any(|k| v.starts_with(&format!("{k}@"))))
        .collect()
}

/// Restores the latest snapshot and compares the file both backups hold.
fn restores(repo: &Repo, work: &std::path::Path) {
    let target = work.join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("small")).unwrap(), noise(1, 100_000));
}

/// With Object Lock on the target, a swept pack leaves no version and no delete marker.
#[test]
fn in_a_versioned_bucket_prune_leaves_no_version_of_a_swept_pack() {
    let server = Versity::start_versioned();
    server.create_bucket(BUCKET, true);
    server.enable_versioning(BUCKET);
    let work = tempfile::tempdir().unwrap();
    let (repo, older) = two_backups(&server, LOCKED, work.path());
    let pack = server.keys(BUCKET, "repo/data/").remove(0);
    let version = server.versions(BUCKET, &pack);
    assert!(
        version.len() == 1 && !version[0].ends_with("@null") && !version[0].ends_with('@'),
        "the bucket keeps versions: {version:?}"
    );

    let swept = forget_and_sweep(&server, &repo, &older);
    assert_eq!(left_of(&server, &swept), Vec::<String>::new());
    restores(&repo, work.path());
}

/// Without Object Lock: forgotten snapshots, swept packs and the index files prune replaced
/// leave no version and no delete marker.
#[test]
fn without_a_lock_prune_leaves_no_version_or_delete_marker() {
    let server = Versity::start_versioned();
    server.create_bucket(BUCKET, false);
    server.enable_versioning(BUCKET);
    let work = tempfile::tempdir().unwrap();
    let (repo, older) = two_backups(&server, PLAIN, work.path());
    let before = server.keys(BUCKET, "repo/");

    let first = prune(&repo);
    assert_eq!(first["forgotten"].as_array().unwrap().len(), 1, "{first}");
    let last = prune(&repo);
    assert!(!last["gc"]["deleted"].as_array().unwrap().is_empty(), "{last}");
    let now = server.keys(BUCKET, "repo/");
    let gone: Vec<String> = before.into_iter().filter(|k| !now.contains(k)).collect();
    assert!(gone.contains(&older), "{gone:?}");
    assert!(gone.iter().any(|k| k.starts_with("repo/data/")), "{gone:?}");
    assert_eq!(left_of(&server, &gone), Vec::<String>::new());
    // What is left is one version of each object, no marker.
    assert_eq!(server.versions(BUCKET, "repo/").len(), now.len());
    restores(&repo, work.path());
}

/// A bucket whose default retention locks every new object, for a target that asks for no
/// lock: forget keeps a retained snapshot, prune keeps a retained pack listed (no delete
/// marker hides it, which would leave it stored and billed with no run ever deleting it) and
/// deletes every version of both once their retention ended; backup locks, which must be
/// gone, stay hidden behind their delete marker.
#[test]
fn a_bucket_default_retention_keeps_objects_listed_until_it_ends() {
    let server = Versity::start_versioned();
    server.create_bucket(BUCKET, true);
    server.enable_versioning(BUCKET);
    let rule = ObjectLockRule::builder()
        .default_retention(
            DefaultRetention::builder()
                .mode(ObjectLockRetentionMode::Governance)
                .days(1)
                .build(),
        )
        .build();
    let config = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(rule)
        .build();
    server
        .block_on(
            server
                .client
                .put_object_lock_configuration()
                .bucket(BUCKET)
                .object_lock_configuration(config)
                .send(),
        )
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let (repo, older) = two_backups(&server, PLAIN, work.path());
    // (Versity enforces a bucket's default retention without showing it on the object.)
    let version = server.versions(BUCKET, &older).remove(0);
    let version = version.rsplit('@').next().unwrap();
    let delete = server
        .client
        .delete_object()
        .bucket(BUCKET)
        .key(&older)
        .version_id(version);
    assert!(server.block_on(delete.send()).is_err(), "the default retention holds");
    // The backups' locks are locked too, and hidden: a listed lock would hold back sweeps.
    assert_eq!(server.keys(BUCKET, "repo/locks/"), Vec::<String>::new());
    assert!(
        !server.versions(BUCKET, "repo/locks/").is_empty(),
        "a retained lock version"
    );

    let forget = summary(&repo.ok(&["forget", "--keep-last", "1"]));
    assert_eq!(forget["forgotten"], serde_json::json!([]), "{forget}");
    assert!(forget.to_string().contains("object lock"), "{forget}");
    assert_eq!(
        server.keys(BUCKET, "repo/snapshots/").len(),
        2,
        "the snapshot stays listed"
    );

    let swept = forget_and_sweep(&server, &repo, &older);
    let mut gone = swept.clone();
    gone.push(older);
    assert_eq!(left_of(&server, &gone), Vec::<String>::new());
    restores(&repo, work.path());
}
