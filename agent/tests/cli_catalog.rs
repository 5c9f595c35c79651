//! `catalog put` and `catalog show`, and the catalog a backup stores when the operator gave
//! one: what `kubectl hort dr` reads back, kept apart from user backups' retention.

mod support;

use std::fs;

use hort_protocol::catalog::{self, Catalog, CatalogBackup, CatalogList};
use hort_protocol::report::decode;
use hort_protocol::{BackupReport, SnapshotList, catalog::CatalogObject};
use support::{Kind, Repo};

fn catalog(namespace: &str, job: &str) -> Catalog {
    Catalog {
        version: catalog::VERSION,
        namespace: namespace.into(),
        storage_group: "s3".into(),
        written_by: job.into(),
        time: "2026-11-30T10:00:00Z".into(),
        storage_groups: vec![CatalogObject {
            name: "s3".into(),
            labels: Default::default(),
            spec: serde_json::json!({"encryption": {"keySecretRef": {"name": "pw", "key": "password"}}}),
        }],
        schedules: vec![],
        backup_jobs: vec![CatalogBackup {
            name: job.into(),
            schedule: None,
            spec: serde_json::json!({"storageGroupRef": {"name": "s3"}}),
            phase: "Running".into(),
            snapshot_id: None,
            created: None,
            completion_time: None,
            message: None,
        }],
    }
}

fn show(repo: &Repo) -> CatalogList {
    decode(&repo.ok(&["catalog", "show", "--json"])).unwrap()
}

#[test]
fn a_backup_stores_the_catalog_with_its_snapshot_and_show_reads_the_newest() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("a"), b"data").unwrap();
    let json = serde_json::to_string(&catalog("shop", "files-1")).unwrap();
    let out = repo
        .cmd(&[
            "backup",
            work.path().to_str().unwrap(),
            "--tag",
            "hort.dev/namespace=shop",
            "--tag",
            "hort.dev/backup-job=files-1",
        ])
        .env("HORT_CATALOG", &json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let list = show(&repo);
    assert_eq!(list.catalogs.len(), 1, "{list:?}");
    let stored = &list.catalogs[0];
    assert_eq!(stored.catalog.namespace, "shop");
    let user: SnapshotList =
        decode(&repo.ok(&["snapshots", "--json", "--tag", "hort.dev/backup-job=files-1"])).unwrap();
    assert_eq!(user.snapshots.len(), 1, "the catalog carries none of the job's tags");
    let job = &stored.catalog.backup_jobs[0];
    assert_eq!(job.phase, "Succeeded");
    assert_eq!(job.snapshot_id.as_deref(), Some(user.snapshots[0].id.as_str()));
    let all: SnapshotList = decode(&repo.ok(&["snapshots", "--json", "--tag", catalog::TAG])).unwrap();
    assert_eq!(all.snapshots[0].hostname, "hort-catalog/shop");
    assert_eq!(all.snapshots[0].id, stored.snapshot_id);

    // `latest` is the newest backup, never the catalog stored after it.
    let latest = repo.ok(&["cat", "latest", "a"]);
    assert_eq!(latest, "data", "cat latest reads the user's backup");

    // Retention of the user's series, by its tags, neither counts nor forgets catalogs.
    repo.ok(&["forget", "--tag", "hort.dev/namespace=shop", "--keep-last", "1"]);
    assert_eq!(show(&repo).catalogs.len(), 1);
}

/// A catalog that cannot be stored fails no backup, and the backup's report says why, so the
/// operator shows it in the BackupJob's status.
#[test]
fn a_catalog_that_cannot_be_stored_is_named_in_the_backup_report() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"data").unwrap();
    let log = work.path().join("termination-log");
    let out = repo
        .cmd(&["backup", src.to_str().unwrap()])
        .env("HORT_CATALOG", "{\"not\": \"a catalog\"}")
        .env("HORT_TERMINATION_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: BackupReport = decode(&fs::read_to_string(&log).unwrap()).unwrap();
    let error = report.catalog_error.unwrap_or_default();
    assert!(error.contains("not a Hort catalog"), "{error}");
    assert_eq!(repo.ok(&["cat", "latest", "a"]), "data", "the backup is saved");
}

#[test]
fn put_keeps_the_newest_catalogs_per_namespace_and_refuses_what_is_not_one() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    for i in 0..catalog::KEPT_PER_NAMESPACE + 2 {
        let mut c = catalog("shop", &format!("job-{i}"));
        c.time = format!("run {i}");
        let out = repo
            .cmd(&["catalog", "put"])
            .env("HORT_CATALOG", serde_json::to_string(&c).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), serde_json::to_string(&catalog("web", "w-1")).unwrap()).unwrap();
    repo.ok(&["catalog", "put", "--file", file.path().to_str().unwrap()]);

    let list = show(&repo);
    let namespaces: Vec<&str> = list.catalogs.iter().map(|c| c.catalog.namespace.as_str()).collect();
    assert_eq!(namespaces, ["shop", "web"]);
    let last = format!("run {}", catalog::KEPT_PER_NAMESPACE + 1);
    assert_eq!(list.catalogs[0].catalog.time, last, "show reads the newest");
    let shop: SnapshotList =
        decode(&repo.ok(&["snapshots", "--json", "--tag", &catalog::namespace_tag("shop")])).unwrap();
    assert_eq!(shop.snapshots.len(), catalog::KEPT_PER_NAMESPACE);
    let only: CatalogList = decode(&repo.ok(&["catalog", "show", "--json", "--namespace", "web"])).unwrap();
    assert_eq!(only.catalogs.len(), 1);

    let bad = repo
        .cmd(&["catalog", "put"])
        .env("HORT_CATALOG", "{\"x\":1}")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a Hort catalog"));
    let none = repo.run(&["catalog", "put"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("HORT_CATALOG"));
}
