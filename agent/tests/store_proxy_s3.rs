//! S3 Object Lock and archive storage classes of a group's targets reach a tenant through the
//! proxy `hort-store` (in this process, on loopback) as they reach an agent that opens the
//! targets itself: forget, also as a dry run, keeps a snapshot still under retention; a
//! restore asks for the restore of every archived pack it needs, fails naming them, and with
//! `--archive-wait` waits and restores.

mod support;

use std::fs;

use support::object_lock::{BUCKET, expire, lock_of};
use support::store::{s3_settings, team_a_through_proxy};
use support::versity::Versity;
use support::{Repo, archive_server, noise, summary};

#[test]
fn archived_packs_are_restored_through_the_proxy_on_request() {
    let (endpoint, seen, _root) = archive_server::start();
    // The operator's check pod creates team-a's repository directly at the target.
    Repo::on_server(
        "s3://hort/repo/tenants/team-a?credentials=HORT_TARGET_0&storage-class=DEEP_ARCHIVE".into(),
        &endpoint,
    )
    .init();
    let work = tempfile::tempdir().unwrap();
    let (_proxy, repo) = team_a_through_proxy(
        vec!["s3://hort/repo?storage-class=DEEP_ARCHIVE".into()],
        s3_settings(&endpoint),
        work.path(),
    );
    let src = work.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("a"), noise(1, 300_000)).unwrap();
    fs::write(src.join("dir/b"), noise(2, 200_000)).unwrap();
    repo.backup(&src, &[]);
    let archived = seen.archived_keys();
    assert!(!archived.is_empty());
    assert!(
        archived.iter().all(|k| k.starts_with("repo/tenants/team-a/data/")),
        "{archived:?}"
    );

    // Without a wait, the restore requests every pack's restore once and fails, naming the
    // packs, never the proxy's bucket; with a wait, it waits for them and restores.
    let target = work.path().join("restored");
    let stderr = archive_server::restore_without_then_with_wait(&repo, &seen, &target, archived.len());
    let pack_names: Vec<&str> = archived.iter().map(|k| k.rsplit('/').next().unwrap()).collect();
    assert!(pack_names.iter().any(|n| stderr.contains(n)), "{stderr}");
    assert!(
        !stderr.contains("s3://hort"),
        "the proxy's bucket stays hidden: {stderr}"
    );
    assert_eq!(fs::read(target.join("a")).unwrap(), noise(1, 300_000));
    assert_eq!(fs::read(target.join("dir/b")).unwrap(), noise(2, 200_000));
}

#[test]
fn forget_through_the_proxy_keeps_a_snapshot_under_object_lock_also_in_a_dry_run() {
    let server = Versity::start();
    server.create_bucket(BUCKET, true);
    Repo::on_server(
        "s3://locked/repo/tenants/team-a?credentials=HORT_TARGET_0&object-lock=governance:1".into(),
        &server.endpoint,
    )
    .init();
    let work = tempfile::tempdir().unwrap();
    let (_proxy, repo) = team_a_through_proxy(
        vec!["s3://locked/repo?object-lock=governance:1".into()],
        s3_settings(&server.endpoint),
        work.path(),
    );
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), noise(1, 100_000)).unwrap();
    repo.backup(&src, &[]);
    let snapshots = "repo/tenants/team-a/snapshots/";
    let older = server.keys(BUCKET, snapshots).remove(0);
    assert_eq!(lock_of(&server, &older).0.as_deref(), Some("GOVERNANCE"));
    fs::write(src.join("f"), noise(2, 100_000)).unwrap();
    repo.backup(&src, &[]);

    let forget = |extra: &[&str]| {
        let mut args = vec!["forget", "--keep-last", "1"];
        args.extend_from_slice(extra);
        summary(&repo.ok(&args))
    };
    for dry_run in [&["--dry-run"][..], &[]] {
        let kept = forget(dry_run);
        assert_eq!(kept["forgotten"], serde_json::json!([]), "{dry_run:?}: {kept}");
        assert!(kept.to_string().contains("object lock"), "{dry_run:?}: {kept}");
    }
    assert_eq!(server.keys(BUCKET, snapshots).len(), 2);

    // Once its retention has ended, the dry run says it would go, and forget deletes it.
    expire(&server, std::slice::from_ref(&older));
    let dry = forget(&["--dry-run"]);
    assert_eq!(dry["forgotten"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(server.keys(BUCKET, snapshots).len(), 2, "a dry run deletes nothing");
    let done = forget(&[]);
    assert_eq!(done["forgotten"].as_array().unwrap().len(), 1, "{done}");
    assert!(!server.keys(BUCKET, snapshots).contains(&older));
}
