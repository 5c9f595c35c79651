//! Every file in `examples/` parses into Hort's Rust types, and together the examples cover
//! every kind, every backup source, every restore target, every storage target type and every
//! kind of verification (database, volume, repository).
//! (`apiserver.rs` additionally submits them to a real kube-apiserver.)

mod support;

use hort_crds::{
    BackupJob, ClusterStorageGroup, RestoreRequest, Schedule, StorageGroup, Verification, VolumeRestoreSource,
};
use std::collections::BTreeSet;

#[test]
fn every_example_parses_into_the_typed_api() {
    let mut covered = BTreeSet::new();
    for example in support::examples() {
        for doc in &example.documents {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let at = format!("{} ({kind} {})", example.path.display(), doc["metadata"]["name"]);
            let value = doc.clone();
            match kind {
                "StorageGroup" => {
                    let sg: StorageGroup = serde_json::from_value(value).unwrap_or_else(|e| panic!("{at}: {e}"));
                    covered.insert(format!("strategy:{:?}", sg.spec.strategy));
                    for t in &sg.spec.targets {
                        if t.s3.is_some() {
                            covered.insert("storage:s3".into());
                        }
                        if t.pvc.is_some() {
                            covered.insert("storage:pvc".into());
                        }
                    }
                }
                "BackupJob" => {
                    let job: BackupJob = serde_json::from_value(value).unwrap_or_else(|e| panic!("{at}: {e}"));
                    let source = job
                        .spec
                        .source
                        .kind()
                        .unwrap_or_else(|| panic!("{at}: no single source"));
                    covered.insert(format!("source:{source:?}"));
                }
                "Schedule" => {
                    let s: Schedule = serde_json::from_value(value).unwrap_or_else(|e| panic!("{at}: {e}"));
                    covered.insert("kind:Schedule".into());
                    assert!(
                        s.spec.retention.is_some(),
                        "{at}: the Schedule example should show retention"
                    );
                }
                "RestoreRequest" => {
                    let r: RestoreRequest = serde_json::from_value(value).unwrap_or_else(|e| panic!("{at}: {e}"));
                    let t = &r.spec.target;
                    for (set, name) in [
                        (t.postgres.is_some(), "Postgres"),
                        (t.mariadb.is_some(), "Mariadb"),
                        (t.volume.is_some(), "Volume"),
                    ] {
                        if set {
                            covered.insert(format!("target:{name}"));
                        }
                    }
                }
                "Verification" => {
                    let v: Verification = serde_json::from_value(value).unwrap_or_else(|e| panic!("{at}: {e}"));
                    covered.insert(format!(
                        "verify:{}",
                        match (&v.spec.database, &v.spec.repository) {
                            (Some(_), _) => "Database",
                            (None, Some(_)) => "Repository",
                            (None, None) => "Volume",
                        }
                    ));
                }
                "VolumeRestoreSource" => {
                    let _: VolumeRestoreSource = serde_json::from_value(value).unwrap_or_else(|e| panic!("{at}: {e}"));
                    covered.insert("kind:VolumeRestoreSource".into());
                }
                "ClusterStorageGroup" => {
                    let _: ClusterStorageGroup = serde_json::from_value(value).unwrap_or_else(|e| panic!("{at}: {e}"));
                    covered.insert("kind:ClusterStorageGroup".into());
                }
                "Secret" | "PersistentVolumeClaim" | "Deployment" => {}
                other => panic!("{at}: unexpected kind {other:?} in examples/"),
            }
        }
    }
    let wanted = [
        "kind:ClusterStorageGroup",
        "kind:Schedule",
        "kind:VolumeRestoreSource",
        "source:Postgres",
        "source:Mariadb",
        "source:Volume",
        "storage:pvc",
        "storage:s3",
        "strategy:Failover",
        "strategy:Mirror",
        "strategy:Spread",
        "target:Mariadb",
        "target:Postgres",
        "target:Volume",
        "verify:Database",
        "verify:Repository",
        "verify:Volume",
    ];
    let missing: Vec<_> = wanted.iter().filter(|w| !covered.contains(**w)).collect();
    assert!(missing.is_empty(), "examples/ has no example for {missing:?}");
}

#[test]
fn every_example_explains_itself() {
    for example in support::examples() {
        let text = std::fs::read_to_string(&example.path).unwrap();
        assert!(
            text.starts_with("# "),
            "{} must start with a comment that tells a first-time user what it does and how to apply it",
            example.path.display()
        );
        assert!(
            text.contains("kubectl apply"),
            "{} must show how to apply it",
            example.path.display()
        );
    }
}
