//! Steps the Object Lock tests share, on a Versity Gateway bucket named `locked`: reading and
//! setting an object's retention behind the agent's back (a day cannot pass in a test), two
//! backups that leave packs for prune to delete, and the forget-then-sweep sequence.

use std::fs;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::primitives::DateTime as AwsDateTime;
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};

use super::versity::Versity;
use super::{Repo, noise, summary};

/// The bucket of these tests.
pub const BUCKET: &str = "locked";

/// The object's lock mode and retention date (seconds), as the server reports them.
pub fn lock_of(server: &Versity, key: &str) -> (Option<String>, Option<i64>) {
    let head = server
        .block_on(server.client.head_object().bucket(BUCKET).key(key).send())
        .unwrap();
    (
        head.object_lock_mode().map(|m| m.as_str().to_owned()),
        head.object_lock_retain_until_date().map(|d| d.secs()),
    )
}

/// Puts `mode` retention until `seconds` from now on the current version of `key`, with the
/// governance bypass the root keys may use; the server's answer.
pub fn set_retention(server: &Versity, key: &str, mode: ObjectLockRetentionMode, seconds: i64) -> Result<(), String> {
    let until = AwsDateTime::from_secs(chrono::Utc::now().timestamp() + seconds);
    let retention = ObjectLockRetention::builder()
        .mode(mode)
        .retain_until_date(until)
        .build();
    server
        .block_on(
            server
                .client
                .put_object_retention()
                .bucket(BUCKET)
                .key(key)
                .bypass_governance_retention(true)
                .retention(retention)
                .send(),
        )
        .map(drop)
        .map_err(|e| format!("{:?}", aws_sdk_s3::error::DisplayErrorContext(e)))
}

/// Shortens the governance retention of `keys` to two seconds from now, as if a day had
/// passed, and waits for it to end.
pub fn expire(server: &Versity, keys: &[String]) {
    for key in keys {
        set_retention(server, key, ObjectLockRetentionMode::Governance, 2).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
}

/// `prune --keep-last 1 --grace 0`, its summary.
pub fn prune(repo: &Repo) -> serde_json::Value {
    summary(&repo.ok(&["prune", "--keep-last", "1", "--grace", "0"]))
}

/// Two backups, the second without the large file, to the `locked` bucket with `spec`;
/// returns the repository and the key of the first snapshot.
pub fn two_backups(server: &Versity, spec: &str, work: &Path) -> (Repo, String) {
    let repo = Repo::on_server(spec.into(), &server.endpoint);
    repo.init();
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small"), noise(1, 100_000)).unwrap();
    fs::write(src.join("large"), noise(2, 3 * 1024 * 1024)).unwrap();
    repo.backup(&src, &["--compression", "0"]);
    let older = server.keys(BUCKET, "repo/snapshots/").remove(0);
    fs::remove_file(src.join("large")).unwrap();
    repo.backup(&src, &["--compression", "0"]);
    (repo, older)
}

/// Lets snapshot `older` expire and prunes: it is forgotten and its unused packs condemned;
/// the sweep keeps them while they are retained, and deletes them in a later run once their
/// retention has ended. Returns the keys of the packs deleted.
pub fn forget_and_sweep(server: &Versity, repo: &Repo, older: &str) -> Vec<String> {
    assert_eq!(server.keys(BUCKET, "repo/snapshots/").len(), 2);
    // Once the snapshot's retention has ended it is forgotten, and its packs condemned.
    expire(server, &[older.to_owned()]);
    let first = prune(repo);
    assert_eq!(first["forgotten"].as_array().unwrap().len(), 1, "{first}");
    assert!(!first["gc"]["condemned"].as_array().unwrap().is_empty(), "{first}");
    // (A pack the first snapshot shared with the second may have been repacked into a new one.)
    let packs_before = server.keys(BUCKET, "repo/data/");

    // The sweep keeps the unused packs: still retained, and nothing fails.
    let second = prune(repo);
    let unused = retained_keys(&second, &packs_before);
    assert_eq!(second["gc"]["deleted"], serde_json::json!([]), "{second}");
    assert_eq!(server.keys(BUCKET, "repo/data/"), packs_before);

    // Once their retention has ended, a later run condemns them again and the next deletes.
    expire(server, &unused);
    prune(repo);
    let last = prune(repo);
    assert_eq!(last["gc"]["deleted"].as_array().unwrap().len(), unused.len(), "{last}");
    unused
}

/// The keys among `packs` of the packs a prune summary says it kept under retention (at
/// least one).
pub fn retained_keys(summary: &serde_json::Value, packs: &[String]) -> Vec<String> {
    let retained = summary["gc"]["retained"].as_array().unwrap();
    assert!(!retained.is_empty(), "{summary}");
    let keys: Vec<String> = packs
        .iter()
        .filter(|k| retained.iter().any(|id| k.ends_with(id.as_str().unwrap())))
        .cloned()
        .collect();
    assert_eq!(keys.len(), retained.len(), "{summary}");
    keys
}
