//! A target with an archive storage class (`DEEP_ARCHIVE`), against an in-process S3 server
//! that refuses to read archived objects until their restore was requested and completed
//! (`support::archive_server`): only data packs are archived (tree packs, index and
//! snapshots stay readable), verify and prune go on and say what is archived, and a restore
//! requests the restore of every pack it needs, then fails naming them or, with
//! `--archive-wait`, waits and restores.

mod support;

use std::fs;
use std::sync::atomic::Ordering;

use support::{Repo, archive_server, noise, summary};

#[test]
fn archived_packs_are_restored_on_request_and_verify_and_prune_go_on() {
    let (endpoint, seen, _root) = archive_server::start();
    let repo = Repo::on_server(
        "s3://hort/repo?credentials=HORT_TARGET_0&storage-class=DEEP_ARCHIVE".into(),
        &endpoint,
    );
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("a"), noise(1, 300_000)).unwrap();
    fs::write(src.join("dir/b"), noise(2, 200_000)).unwrap();
    repo.backup(&src, &[]);
    fs::write(src.join("a"), noise(3, 300_000)).unwrap();
    repo.backup(&src, &[]);

    // Data packs only: the tree packs, like the index and snapshots, stay readable.
    let archived = seen.archived_keys();
    assert!(!archived.is_empty());
    assert!(archived.iter().all(|k| k.starts_with("repo/data/")), "{archived:?}");
    let listing = repo.ok(&["ls", "latest"]);
    assert!(listing.contains("dir/b"), "{listing}");

    // verify reads what it can and lists the archived packs apart: not damage.
    let out = repo.ok(&["verify", "--read-data"]);
    let report: serde_json::Value = out.lines().find_map(|l| serde_json::from_str(l).ok()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["archived"].as_array().unwrap().len(), archived.len(), "{report}");
    assert!(
        report["archived"][0].as_str().unwrap().contains("DEEP_ARCHIVE"),
        "{report}"
    );

    // prune walks the trees and deletes an unused archived pack (file `a` of the first backup).
    repo.ok(&["prune", "--keep-last", "1", "--grace", "0"]);
    let swept = summary(&repo.ok(&["prune", "--keep-last", "1", "--grace", "0"]));
    assert_eq!(swept["gc"]["deleted"].as_array().unwrap().len(), 1, "{swept}");
    let archived = seen.archived_keys();

    // A restore without a wait requests every pack's restore and fails, naming them; with a
    // wait, it waits for them and restores.
    let target = work.path().join("restored");
    let stderr = archive_server::restore_without_then_with_wait(&repo, &seen, &target, archived.len());
    assert!(stderr.contains(&archived[0]), "{stderr}");
    assert_eq!(fs::read(target.join("a")).unwrap(), noise(3, 300_000));
    assert_eq!(fs::read(target.join("dir/b")).unwrap(), noise(2, 200_000));
}

#[test]
fn a_mirror_with_a_readable_target_restores_without_touching_the_archive() {
    let (endpoint, seen, _root) = archive_server::start();
    let disk = tempfile::tempdir().unwrap();
    let mut repo = Repo::on_server(
        format!(
            "{},s3://hort/repo?credentials=HORT_TARGET_0&storage-class=GLACIER",
            disk.path().join("repo").display()
        ),
        &endpoint,
    );
    repo.strategy = Some("mirror");
    repo.init();
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("f"), noise(4, 100_000)).unwrap();
    repo.backup(work.path(), &[]);
    assert!(!seen.archived_keys().is_empty());
    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("f")).unwrap(), noise(4, 100_000));
    assert_eq!(seen.restore_requests.load(Ordering::SeqCst), 0);
}

/// Keys of pack files stored under `prefix` (`repo/data/` …) by the archive server at `root`.
fn stored_packs(root: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut dirs = vec![root.join("hort").join(prefix)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                keys.push(format!(
                    "{prefix}{}",
                    path.strip_prefix(root.join("hort").join(prefix)).unwrap().display()
                ));
            }
        }
    }
    keys.sort();
    keys
}

/// A target with an archive class added to a group later and filled by `resync` (what a
/// StorageGroup's check does): each pack goes into the class a backup would have given it
/// (exactly the packs a backup straight into an archive target archived; tree packs stay
/// readable), so the new target alone can list a snapshot, and the data packs wait for a
/// restore like any archived pack.
#[test]
fn a_resync_into_an_archive_target_archives_data_packs_only() {
    let (endpoint, seen, root) = archive_server::start();
    let archive = "s3://hort/repo?credentials=HORT_TARGET_0&storage-class=DEEP_ARCHIVE";
    let direct = "s3://hort/direct?credentials=HORT_TARGET_0&storage-class=DEEP_ARCHIVE";
    let disk_dir = tempfile::tempdir().unwrap();
    let disk = disk_dir.path().join("repo").display().to_string();
    // A backup to a disk and, beside it, straight into an archive target.
    let mut repo = Repo::on_server(format!("{disk},{direct}"), &endpoint);
    repo.strategy = Some("mirror");
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("a"), noise(4, 300_000)).unwrap();
    fs::write(src.join("dir/b"), noise(5, 200_000)).unwrap();
    repo.backup(&src, &[]);

    let mut group = Repo::on_server(format!("{disk},{archive}"), &endpoint);
    group.strategy = Some("mirror");
    let out = group.ok(&["resync"]);
    assert!(out.contains("copied"), "{out}");
    let archived_under = |prefix: &str| -> Vec<String> {
        let keys = seen.archived_keys().into_iter();
        keys.filter_map(|k| k.strip_prefix(prefix).map(str::to_owned)).collect()
    };
    let archived = archived_under("repo/");
    assert!(!archived.is_empty(), "the data packs are archived");
    assert!(archived.iter().all(|k| k.starts_with("data/")), "{archived:?}");
    assert_eq!(
        archived,
        archived_under("direct/"),
        "resync and backup archive the same packs"
    );
    let packs = stored_packs(root.path(), "repo/data/");
    assert_eq!(
        packs,
        stored_packs(root.path(), "direct/data/")
            .iter()
            .map(|k| k.replacen("direct/", "repo/", 1))
            .collect::<Vec<_>>()
    );
    assert!(
        packs.len() > archived.len(),
        "tree packs stay in the default class: {packs:?}"
    );

    // The archive target alone: the trees are readable, the data waits for a restore.
    repo = Repo::on_server(archive.into(), &endpoint);
    let listing = repo.ok(&["ls", "latest"]);
    assert!(listing.contains("dir/b"), "{listing}");
    // The wait as the operator passes it (spec.archiveWaitMinutes).
    let target = work.path().join("restored");
    let out = repo
        .cmd(&["restore", "latest", "--target", target.to_str().unwrap()])
        .env(hort_protocol::env::ARCHIVE_WAIT, "1m")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(target.join("dir/b")).unwrap(), noise(5, 200_000));
}
