//! CSI VolumeSnapshots of BackupJob volume sources against a real kube-apiserver with the
//! upstream snapshot CRDs (kind-tests/cluster.sh installs them, also in a control-plane-only
//! cluster). No snapshot controller runs here: the test writes each VolumeSnapshot's status as
//! the controller would (ready, or an error), and for a VolumeGroupSnapshot creates the member
//! VolumeSnapshots the controller would create. kind-tests/e2e.sh runs the real controller and
//! CSI driver. Run through `scripts/test.sh`, which starts the API server.

use hort_crds::BackupJob;
use hort_crds::common::Phase;
use hort_operator::clock::Clock;
use hort_operator::group_snapshot;
use hort_operator::volume_snapshot::{self, VolumeSnapshot};
use hort_protocol::BackupReport;
use hort_protocol::report::encode;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

mod metrics_wait;
mod pod_gates;
mod support;
use metrics_wait::metrics_showing;
use pod_gates::gates;
use support::{TestEnv, create, finish_pod, ready_s3_group, usable_claim, wait_for, wait_for_event};

/// One scenario's namespace, with a Ready S3 StorageGroup, and the APIs it uses.
struct Scenario {
    env: TestEnv,
    jobs: Api<BackupJob>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    snapshots: Api<VolumeSnapshot>,
    groups: Api<group_snapshot::VolumeGroupSnapshot>,
}

impl Scenario {
    /// Starts the operator on a fresh namespace named after `name`, with a Ready group `s3`.
    async fn start(name: &str) -> Self {
        let env = TestEnv::start(name, Clock::System).await;
        ready_s3_group(&env.client, &env.ns).await;
        Scenario {
            jobs: env.api(),
            pods: env.api(),
            claims: env.api(),
            snapshots: volume_snapshot::api(&env.client, &env.ns),
            groups: group_snapshot::api(&env.client, &env.ns),
            env,
        }
    }
}

/// Writes the status of VolumeSnapshot `name` as a snapshot controller would.
async fn controller_says(snapshots: &Api<VolumeSnapshot>, name: &str, status: serde_json::Value) {
    snapshots
        .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await
        .unwrap();
}

/// Whether object `name` is gone or being deleted.
async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .unwrap()
        .is_none_or(|o| o.meta().deletion_timestamp.is_some())
}

/// Waits until the VolumeSnapshot and the temporary claim named `name` are gone.
async fn wait_until_released(snapshots: &Api<VolumeSnapshot>, claims: &Api<PersistentVolumeClaim>, name: &str) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while !(gone(snapshots, name).await && gone(claims, name).await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "VolumeSnapshot or claim {name:?} was not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn condition<'a>(
    job: &'a BackupJob,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    job.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_csi_snapshot_is_taken_backed_up_from_a_temporary_claim_and_deleted() {
    let Scenario {
        env,
        jobs,
        pods,
        claims,
        snapshots,
        ..
    } = Scenario::start("hort-snapshot").await;
    usable_claim(&env.client, &env.ns, "data").await;

    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "csi"},
               "spec": {"storageGroupRef": {"name": "s3"}, "backoffLimit": 0,
                        "source": {"volume": {"claimName": "data", "snapshot": "CSI",
                                              "volumeSnapshotClassName": "hort-csi"}}}}),
    )
    .await;
    // The attempt's VolumeSnapshot of the claim, with the class asked for, owned by the job.
    wait_for(&snapshots, "csi-1", "the attempt's VolumeSnapshot", |_| true).await;
    let snapshot = snapshots.get("csi-1").await.unwrap();
    assert_eq!(
        snapshot.spec.source.persistent_volume_claim_name.as_deref(),
        Some("data")
    );
    assert_eq!(snapshot.spec.volume_snapshot_class_name.as_deref(), Some("hort-csi"));
    let owner = &snapshot.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("BackupJob", "csi"));
    wait_for(&jobs, "csi", "the job to record the snapshot", |j| {
        j.status
            .as_ref()
            .and_then(|s| s.volume_snapshot.as_ref())
            .is_some_and(|r| r.name == "csi-1" && r.claim_name == "csi-1" && r.creation_time.is_none())
    })
    .await;
    // Until it is ready to use, nothing reads anything.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        pods.get_opt("csi-1").await.unwrap().is_none(),
        "no agent pod before the snapshot is ready"
    );
    assert!(
        claims.get_opt("csi-1").await.unwrap().is_none(),
        "no claim before the snapshot is ready"
    );

    controller_says(
        &snapshots,
        "csi-1",
        json!({"boundVolumeSnapshotContentName": "snapcontent-1", "creationTime": "2026-11-30T05:00:00Z",
               "readyToUse": true, "restoreSize": "1Gi"}),
    )
    .await;
    // The agent pod reads a claim provisioned from the snapshot, read-only, under the source
    // claim's host name.
    wait_for(&pods, "csi-1", "the agent pod", |_| true).await;
    let pod = pods.get("csi-1").await.unwrap();
    let spec = pod.spec.unwrap();
    let source = spec.volumes.unwrap().into_iter().find(|v| v.name == "source").unwrap();
    let mounted = source.persistent_volume_claim.unwrap();
    assert_eq!((mounted.claim_name.as_str(), mounted.read_only), ("csi-1", Some(true)));
    let args = spec.containers[0].args.clone().unwrap();
    assert!(
        args.windows(2).any(|w| w[0] == "--host" && w[1].ends_with("/data")),
        "{args:?}"
    );
    let temporary = claims.get("csi-1").await.unwrap();
    let from = temporary.spec.as_ref().unwrap().data_source.clone().unwrap();
    assert_eq!((from.kind.as_str(), from.name.as_str()), ("VolumeSnapshot", "csi-1"));
    assert_eq!(from.api_group.as_deref(), Some("snapshot.storage.k8s.io"));
    let storage = &temporary
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"];
    assert_eq!(storage.0, "1Gi");
    wait_for(&jobs, "csi", "the snapshot's cut time and condition", |j| {
        j.status
            .as_ref()
            .and_then(|s| s.volume_snapshot.as_ref())
            .and_then(|r| r.creation_time.as_ref())
            .is_some_and(|t| t.0.to_string() == "2026-11-30T05:00:00Z")
            && condition(j, "VolumeSnapshot").is_some_and(|c| c.status == "True" && c.reason == "SnapshotTaken")
    })
    .await;
    wait_for_event(&env.client, &env.ns, "csi", "SnapshotTaken").await;

    // The backup succeeds: the snapshot, the temporary claim and the pod that read it (which
    // would keep the claim) go; the record stays.
    let report = encode(&BackupReport {
        snapshot_id: "5eed".into(),
        bytes_read: 10,
        bytes_new: 10,
        bytes_stored: 5,
        files: 1,
        duration_seconds: 1.0,
        targets_behind: Vec::new(),
        catalog_error: None,
    });
    finish_pod(&pods, "csi-1", 0, &report).await;
    wait_for(&jobs, "csi", "phase Succeeded", |j| {
        j.status.as_ref().is_some_and(|s| s.phase == Phase::Succeeded)
    })
    .await;
    wait_until_released(&snapshots, &claims, "csi-1").await;
    assert!(
        gone(&pods, "csi-1").await,
        "the agent pod that read the claim is deleted"
    );
    let job = jobs.get("csi").await.unwrap();
    assert_eq!(
        job.status.unwrap().volume_snapshot.map(|r| r.name),
        Some("csi-1".to_string())
    );
    let expected = format!(
        r#"hort_backup_total{{namespace="{}",result="succeeded",schedule=""}} 1"#,
        env.ns
    );
    metrics_showing(&env.metrics, &[expected]).await;
    env.stop().await;
}

/// BackupJob `name`: claim `data` read from a `CSI` snapshot, with a pre hook that fails
/// without running (its pod does not exist), tolerated.
fn csi_job_with_a_pre_hook(name: &str) -> serde_json::Value {
    json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name},
           "spec": {"storageGroupRef": {"name": "s3"}, "backoffLimit": 0,
                    "source": {"volume": {"claimName": "data", "snapshot": "CSI",
                                          "volumeSnapshotClassName": "hort-csi"}},
                    "hooks": {"pre": [{"name": "freeze", "pod": "absent", "command": ["freeze"],
                                       "onError": "Continue"}]}}})
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn with_pre_hooks_the_csi_reader_exists_held_back_until_the_snapshot_is_ready() {
    let Scenario {
        env,
        jobs,
        pods,
        claims,
        snapshots,
        ..
    } = Scenario::start("hort-snapshot-held").await;
    usable_claim(&env.client, &env.ns, "data").await;
    create(&jobs, csi_job_with_a_pre_hook("held")).await;
    // The snapshot is taken after the pre hooks; the pod that will read it exists already,
    // held back, and its claim does not yet.
    wait_for(&snapshots, "held-1", "the attempt's VolumeSnapshot", |_| true).await;
    let pod = pods.get("held-1").await.unwrap();
    assert_eq!(gates(&pod), ["hort.dev/pre-hooks"]);
    assert!(claims.get_opt("held-1").await.unwrap().is_none());
    controller_says(
        &snapshots,
        "held-1",
        json!({"creationTime": "2026-11-30T05:00:00Z", "readyToUse": true, "restoreSize": "1Gi"}),
    )
    .await;
    wait_for(&pods, "held-1", "the agent pod, let go", |p| gates(p).is_empty()).await;
    assert!(
        claims.get_opt("held-1").await.unwrap().is_some(),
        "its claim came first"
    );
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn with_pre_hooks_a_failed_csi_snapshot_deletes_the_held_reader_unrun() {
    let Scenario {
        env,
        jobs,
        pods,
        snapshots,
        ..
    } = Scenario::start("hort-snapshot-lost").await;
    usable_claim(&env.client, &env.ns, "data").await;
    create(&jobs, csi_job_with_a_pre_hook("lost")).await;
    wait_for(&snapshots, "lost-1", "the attempt's VolumeSnapshot", |_| true).await;
    assert_eq!(gates(&pods.get("lost-1").await.unwrap()), ["hort.dev/pre-hooks"]);
    controller_says(
        &snapshots,
        "lost-1",
        json!({"readyToUse": false, "error": {"message": "the driver lost the volume"}}),
    )
    .await;
    wait_for(&jobs, "lost", "phase Failed, reason SnapshotFailed", |j| {
        j.status.as_ref().is_some_and(|s| s.phase == Phase::Failed)
            && condition(j, "Failed").is_some_and(|c| c.reason == "SnapshotFailed")
    })
    .await;
    wait_until_gone(&pods, "lost-1").await;
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn with_pre_hooks_a_csi_reader_the_namespace_refuses_ends_the_attempt_before_the_snapshot() {
    let Scenario {
        env, jobs, snapshots, ..
    } = Scenario::start("hort-snapshot-refused").await;
    usable_claim(&env.client, &env.ns, "data").await;
    create(
        &env.api::<ResourceQuota>(),
        json!({"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}),
    )
    .await;
    create(&jobs, csi_job_with_a_pre_hook("refused")).await;
    wait_for(&jobs, "refused", "the job to fail", |j| {
        j.status.as_ref().is_some_and(|s| s.phase == Phase::Failed)
    })
    .await;
    let message = jobs
        .get("refused")
        .await
        .unwrap()
        .status
        .unwrap()
        .message
        .unwrap_or_default();
    assert!(
        message.starts_with("attempt 1 of 1 failed: creating agent pod \"refused-1\" failed")
            && message.contains("quota"),
        "{message}"
    );
    assert!(
        snapshots.get_opt("refused-1").await.unwrap().is_none(),
        "neither the pre hook nor the snapshot ran"
    );
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn auto_reads_live_when_the_cluster_cannot_snapshot_and_csi_fails() {
    let Scenario {
        env,
        jobs,
        pods,
        claims,
        snapshots,
        ..
    } = Scenario::start("hort-snapshot-fail").await;
    usable_claim(&env.client, &env.ns, "data").await;
    let job = |name: &str, mode: &str| {
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name},
               "spec": {"storageGroupRef": {"name": "s3"}, "backoffLimit": 0,
                        "source": {"volume": {"claimName": "data", "snapshot": mode}}}})
    };
    let no_class = json!({"readyToUse": false,
                          "error": {"message": "cannot find default snapshot class for driver local-path"}});

    // Auto: the controller cannot take the snapshot, so the live claim is read, and the job
    // says why.
    create(&jobs, job("auto", "Auto")).await;
    wait_for(&snapshots, "auto-1", "the attempt's VolumeSnapshot", |_| true).await;
    controller_says(&snapshots, "auto-1", no_class.clone()).await;
    wait_for(&pods, "auto-1", "the agent pod", |_| true).await;
    let spec = pods.get("auto-1").await.unwrap().spec.unwrap();
    let source = spec.volumes.unwrap().into_iter().find(|v| v.name == "source").unwrap();
    assert_eq!(source.persistent_volume_claim.unwrap().claim_name, "data");
    wait_for(
        &jobs,
        "auto",
        "the VolumeSnapshot condition saying the claim is read live",
        |j| {
            condition(j, "VolumeSnapshot").is_some_and(|c| {
                c.status == "False"
                    && c.reason == "SnapshotUnavailable"
                    && c.message.contains("is read live")
                    && c.message.contains("cannot find default snapshot class")
            }) && j.status.as_ref().is_some_and(|s| s.volume_snapshot.is_none())
        },
    )
    .await;
    wait_for_event(&env.client, &env.ns, "auto", "SnapshotUnavailable").await;
    wait_until_released(&snapshots, &claims, "auto-1").await;

    // CSI: the same error fails the job before any data is read.
    create(&jobs, job("strict", "CSI")).await;
    wait_for(&snapshots, "strict-1", "the attempt's VolumeSnapshot", |_| true).await;
    controller_says(&snapshots, "strict-1", no_class).await;
    wait_for(&jobs, "strict", "phase Failed, reason SnapshotFailed", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Failed
                && s.message
                    .as_deref()
                    .is_some_and(|m| m.contains("no data was read") && m.contains("cannot find default snapshot class"))
        }) && condition(j, "Failed").is_some_and(|c| c.reason == "SnapshotFailed")
    })
    .await;
    assert!(pods.get_opt("strict-1").await.unwrap().is_none(), "no agent pod ran");
    wait_until_released(&snapshots, &claims, "strict-1").await;
    let expected = format!(
        r#"hort_backup_total{{namespace="{}",result="failed",schedule=""}} 1"#,
        env.ns
    );
    metrics_showing(&env.metrics, &[expected]).await;
    env.stop().await;
}

/// Creates claim `name` with `labels`, marked usable when `usable`.
async fn labelled_claim(claims: &Api<PersistentVolumeClaim>, name: &str, labels: serde_json::Value, usable: bool) {
    let mut labels = labels;
    if usable {
        labels["hort.dev/usable"] = json!("true");
    }
    create(
        claims,
        json!({"metadata": {"name": name, "labels": labels},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "hort-csi",
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
}

/// The agent pod's `source*` volumes: (mount path, claim), sorted by path.
fn source_mounts(pod: &Pod) -> Vec<(String, String)> {
    let spec = pod.spec.as_ref().unwrap();
    let claims: std::collections::BTreeMap<_, _> = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let claim = v.persistent_volume_claim.as_ref()?;
            assert_eq!(claim.read_only, Some(true), "{v:?}");
            Some((v.name.clone(), claim.claim_name.clone()))
        })
        .collect();
    let mut mounts: Vec<_> = spec.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name.starts_with("source"))
        .map(|m| (m.mount_path.clone(), claims[&m.name].clone()))
        .collect();
    mounts.sort();
    mounts
}

fn host_arg(pod: &Pod) -> String {
    let args = pod.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
    let at = args.iter().position(|a| a == "--host").expect("--host");
    args[at + 1].clone()
}

fn success() -> String {
    encode(&BackupReport {
        snapshot_id: "5eed".into(),
        bytes_read: 10,
        bytes_new: 10,
        bytes_stored: 5,
        files: 2,
        duration_seconds: 1.0,
        targets_behind: Vec::new(),
        catalog_error: None,
    })
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_group_snapshot_of_the_selected_claims_is_read_from_one_temporary_claim_each() {
    let Scenario {
        env,
        jobs,
        pods,
        claims,
        snapshots,
        groups,
    } = Scenario::start("hort-group-snapshot").await;
    labelled_claim(&claims, "db", json!({"app": "shop"}), true).await;
    labelled_claim(&claims, "wal", json!({"app": "shop", "tier": "log"}), true).await;
    // Another application's claim, not marked: not selected, so not in the way.
    labelled_claim(&claims, "other", json!({"app": "blog"}), false).await;

    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "grp"},
               "spec": {"storageGroupRef": {"name": "s3"}, "backoffLimit": 0,
                        "source": {"volume": {"claimSelector": {"app": "shop"}, "snapshot": "CSI",
                                              "volumeGroupSnapshotClassName": "hort-csi"}}}}),
    )
    .await;
    // One VolumeGroupSnapshot of the selector, with the class asked for, owned by the job.
    wait_for(&groups, "grp-1", "the attempt's VolumeGroupSnapshot", |_| true).await;
    let group = groups.get("grp-1").await.unwrap();
    let selector = group.spec.source.selector.clone().unwrap();
    assert_eq!(
        selector.match_labels.unwrap(),
        [("app".to_string(), "shop".to_string())].into()
    );
    assert_eq!(group.spec.volume_group_snapshot_class_name.as_deref(), Some("hort-csi"));
    let owner = &group.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("BackupJob", "grp"));
    wait_for(&jobs, "grp", "the job to record the claims", |j| {
        j.status
            .as_ref()
            .and_then(|s| s.volume_snapshot.as_ref())
            .is_some_and(|r| {
                r.name == "grp-1"
                    && r.claims.iter().map(|c| c.claim_name.as_str()).collect::<Vec<_>>() == ["db", "wal"]
                    && r.claims.iter().all(|c| c.snapshot.is_empty())
            })
    })
    .await;

    // The snapshot controller cuts the group: it creates a member VolumeSnapshot per claim,
    // owned by the group, then says the group is ready.
    let uid = group.uid().unwrap();
    for (member, claim) in [("snapshot-aa", "db"), ("snapshot-bb", "wal")] {
        create(
            &snapshots,
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                   "metadata": {"name": member, "ownerReferences": [{
                       "apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshot",
                       "name": "grp-1", "uid": uid}]},
                   "spec": {"source": {"persistentVolumeClaimName": claim}}}),
        )
        .await;
        controller_says(&snapshots, member, json!({"readyToUse": true})).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        pods.get_opt("grp-1").await.unwrap().is_none(),
        "no agent pod before the group is ready"
    );
    groups
        .patch_status(
            "grp-1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"boundVolumeGroupSnapshotContentName": "groupcontent-1",
                                            "creationTime": "2026-11-30T05:00:00Z", "readyToUse": true}}),
            ),
        )
        .await
        .unwrap();

    // The agent pod mounts one temporary claim per member at /source/CLAIM, under the
    // selector's host name.
    wait_for(&pods, "grp-1", "the agent pod", |_| true).await;
    let pod = pods.get("grp-1").await.unwrap();
    assert_eq!(
        source_mounts(&pod),
        [
            ("/source/db".to_string(), "grp-1-0".to_string()),
            ("/source/wal".to_string(), "grp-1-1".to_string())
        ]
    );
    assert_eq!(host_arg(&pod), format!("{}/app=shop", env.ns));
    for (temporary, member) in [("grp-1-0", "snapshot-aa"), ("grp-1-1", "snapshot-bb")] {
        let from = claims.get(temporary).await.unwrap().spec.unwrap().data_source.unwrap();
        assert_eq!((from.kind.as_str(), from.name.as_str()), ("VolumeSnapshot", member));
    }
    wait_for(&jobs, "grp", "the group in status and the condition", |j| {
        j.status
            .as_ref()
            .and_then(|s| s.volume_snapshot.as_ref())
            .is_some_and(|r| {
                r.group.as_deref() == Some("grp-1")
                    && r.claims.iter().map(|c| c.snapshot.as_str()).collect::<Vec<_>>()
                        == ["snapshot-aa", "snapshot-bb"]
                    && r.creation_time
                        .as_ref()
                        .is_some_and(|t| t.0.to_string() == "2026-11-30T05:00:00Z")
            })
            && condition(j, "VolumeSnapshot").is_some_and(|c| {
                c.status == "True"
                    && c.message
                        .starts_with(r#"VolumeGroupSnapshot "grp-1" of claims db, wal, cut at"#)
            })
    })
    .await;

    // Once the pod ended, the pod, the temporary claims and the group (its members with it,
    // by their owner) go.
    finish_pod(&pods, "grp-1", 0, &success()).await;
    wait_for(&jobs, "grp", "phase Succeeded", |j| {
        j.status.as_ref().is_some_and(|s| s.phase == Phase::Succeeded)
    })
    .await;
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let left = [
            !gone(&pods, "grp-1").await,
            !gone(&claims, "grp-1-0").await,
            !gone(&claims, "grp-1-1").await,
            !gone(&groups, "grp-1").await,
            !gone(&snapshots, "snapshot-aa").await,
            !gone(&snapshots, "snapshot-bb").await,
        ];
        if !left.contains(&true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not released (pod, claims, group, members): {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn when_the_driver_cannot_group_each_claim_gets_its_own_snapshot_and_all_are_released() {
    let Scenario {
        env,
        jobs,
        pods,
        claims,
        snapshots,
        groups,
    } = Scenario::start("hort-group-fallback").await;
    labelled_claim(&claims, "db", json!({"app": "shop"}), true).await;
    labelled_claim(&claims, "wal", json!({"app": "shop"}), true).await;
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "each"},
               "spec": {"storageGroupRef": {"name": "s3"}, "backoffLimit": 0,
                        "source": {"volume": {"claimSelector": {"app": "shop"}, "snapshot": "CSI",
                                              "volumeSnapshotClassName": "hort-csi"}}}}),
    )
    .await;
    wait_for(&groups, "each-1", "the attempt's VolumeGroupSnapshot", |_| true).await;
    // No group class for the driver: the controller's error says so.
    groups
        .patch_status(
            "each-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyToUse": false, "error": {"message":
                "Failed to set default group snapshot class with error cannot find default group snapshot class"}}})),
        )
        .await
        .unwrap();
    // Both VolumeSnapshots are taken before either is ready (between the same hooks), with
    // the single snapshots' class; the failed group goes.
    for (name, claim) in [("each-1-0", "db"), ("each-1-1", "wal")] {
        wait_for(&snapshots, name, "a VolumeSnapshot per claim", |_| true).await;
        let snapshot = snapshots.get(name).await.unwrap();
        assert_eq!(
            snapshot.spec.source.persistent_volume_claim_name.as_deref(),
            Some(claim)
        );
        assert_eq!(snapshot.spec.volume_snapshot_class_name.as_deref(), Some("hort-csi"));
    }
    wait_until_gone(&groups, "each-1").await;
    controller_says(
        &snapshots,
        "each-1-0",
        json!({"creationTime": "2026-11-30T05:00:00Z", "readyToUse": true}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        pods.get_opt("each-1").await.unwrap().is_none(),
        "no agent pod before every snapshot is ready"
    );
    controller_says(
        &snapshots,
        "each-1-1",
        json!({"creationTime": "2026-11-30T05:00:01Z", "readyToUse": true}),
    )
    .await;
    wait_for(&pods, "each-1", "the agent pod", |_| true).await;
    let pod = pods.get("each-1").await.unwrap();
    assert_eq!(
        source_mounts(&pod),
        [
            ("/source/db".to_string(), "each-1-0".to_string()),
            ("/source/wal".to_string(), "each-1-1".to_string())
        ]
    );
    assert_eq!(host_arg(&pod), format!("{}/app=shop", env.ns));
    wait_for(&jobs, "each", "the snapshots in status and the condition", |j| {
        j.status
            .as_ref()
            .and_then(|s| s.volume_snapshot.as_ref())
            .is_some_and(|r| {
                r.group.is_none()
                    && r.claims.iter().map(|c| c.snapshot.as_str()).collect::<Vec<_>>() == ["each-1-0", "each-1-1"]
                    && r.creation_time
                        .as_ref()
                        .is_some_and(|t| t.0.to_string() == "2026-11-30T05:00:01Z")
            })
            && condition(j, "VolumeSnapshot").is_some_and(|c| {
                c.status == "True"
                    && c.message
                        .starts_with("2 VolumeSnapshots between the same hooks of claims db, wal")
                    && c.message.contains("cannot find default group snapshot class")
            })
    })
    .await;

    // The backup fails: everything of the attempt goes all the same.
    finish_pod(&pods, "each-1", 1, "agent failed").await;
    wait_for(&jobs, "each", "phase Failed", |j| {
        j.status.as_ref().is_some_and(|s| s.phase == Phase::Failed)
    })
    .await;
    for name in ["each-1-0", "each-1-1"] {
        wait_until_released(&snapshots, &claims, name).await;
    }
    wait_until_gone(&pods, "each-1").await;
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_selector_waits_for_a_claim_refuses_an_unmarked_one_and_reads_live_claims() {
    let Scenario {
        env,
        jobs,
        pods,
        claims,
        ..
    } = Scenario::start("hort-selector").await;
    let job = |name: &str, app: &str| {
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name},
               "spec": {"storageGroupRef": {"name": "s3"}, "backoffLimit": 0,
                        "source": {"volume": {"claimSelector": {"app": app, "tier": "data"},
                                              "snapshot": "None", "paths": ["db"]}}}})
    };
    // No claim has the labels yet: the job waits and names the selector.
    create(&jobs, job("later", "later")).await;
    wait_for(&jobs, "later", "Pending, naming the selector", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Pending
                && s.message.as_deref().is_some_and(|m| {
                    m.contains("waiting: no PersistentVolumeClaim in the namespace has the labels app=later,tier=data")
                        && m.contains("spec.source.volume.claimSelector")
                })
        })
    })
    .await;
    // A matching claim its owner did not mark: the job fails naming it.
    labelled_claim(&claims, "later-data", json!({"app": "later", "tier": "data"}), false).await;
    wait_for(&jobs, "later", "Failed with InvalidReference naming the claim", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Failed
                && s.message.as_deref().is_some_and(|m| {
                    m.contains(r#"PersistentVolumeClaim "later-data" (spec.source.volume.claimSelector) is not marked for use by Hort"#)
                })
        }) && condition(j, "Failed").is_some_and(|c| c.reason == "InvalidReference")
    })
    .await;
    assert!(pods.get_opt("later-1").await.unwrap().is_none(), "no agent pod");

    // Marked claims are mounted live, each at /source/CLAIM; the condition says they are read live.
    labelled_claim(&claims, "db", json!({"app": "shop", "tier": "data"}), true).await;
    labelled_claim(&claims, "files", json!({"app": "shop", "tier": "data"}), true).await;
    create(&jobs, job("live", "shop")).await;
    wait_for(&pods, "live-1", "the agent pod", |_| true).await;
    let pod = pods.get("live-1").await.unwrap();
    assert_eq!(
        source_mounts(&pod),
        [
            ("/source/db".to_string(), "db".to_string()),
            ("/source/files".to_string(), "files".to_string())
        ]
    );
    assert_eq!(host_arg(&pod), format!("{}/app=shop,tier=data", env.ns));
    let args = pod.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
    assert!(args.iter().any(|a| a == "db"), "paths relative to /source: {args:?}");
    wait_for(&jobs, "live", "the live read's condition", |j| {
        condition(j, "VolumeSnapshot").is_some_and(|c| {
            c.reason == "SnapshotDisabled"
                && c.message
                    .starts_with("the claims with labels app=shop,tier=data are read live")
        })
    })
    .await;
    env.stop().await;
}

/// Waits until object `name` is gone or being deleted.
async fn wait_until_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while !gone(api, name).await {
        assert!(tokio::time::Instant::now() < deadline, "{name:?} was not deleted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn auto_reads_the_selected_claims_live_when_the_cluster_cannot_snapshot_them() {
    let Scenario {
        env,
        jobs,
        pods,
        claims,
        snapshots,
        groups,
    } = Scenario::start("hort-group-auto").await;
    labelled_claim(&claims, "db", json!({"app": "shop"}), true).await;
    labelled_claim(&claims, "wal", json!({"app": "shop"}), true).await;
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "auto"},
               "spec": {"storageGroupRef": {"name": "s3"}, "backoffLimit": 0,
                        "source": {"volume": {"claimSelector": {"app": "shop"}, "snapshot": "Auto"}}}}),
    )
    .await;
    wait_for(&groups, "auto-1", "the attempt's VolumeGroupSnapshot", |_| true).await;
    groups
        .patch_status(
            "auto-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"error": {"message": "cannot find default group snapshot class"}}})),
        )
        .await
        .unwrap();
    // Nor can the claims be snapshotted one by one: the live claims are read.
    let no_class = json!({"readyToUse": false,
                          "error": {"message": "cannot find default snapshot class for driver local-path"}});
    for name in ["auto-1-0", "auto-1-1"] {
        wait_for(&snapshots, name, "a VolumeSnapshot per claim", |_| true).await;
        controller_says(&snapshots, name, no_class.clone()).await;
    }
    wait_for(&pods, "auto-1", "the agent pod", |_| true).await;
    let pod = pods.get("auto-1").await.unwrap();
    assert_eq!(
        source_mounts(&pod),
        [
            ("/source/db".to_string(), "db".to_string()),
            ("/source/wal".to_string(), "wal".to_string())
        ]
    );
    wait_for(&jobs, "auto", "the condition saying the claims are read live", |j| {
        condition(j, "VolumeSnapshot").is_some_and(|c| {
            c.status == "False"
                && c.reason == "SnapshotUnavailable"
                && c.message.starts_with("the claims with labels app=shop are read live")
                && c.message.contains("cannot find default snapshot class")
        }) && j.status.as_ref().is_some_and(|s| s.volume_snapshot.is_none())
    })
    .await;
    // What the attempt could not use is gone already, while the live read runs.
    for name in ["auto-1-0", "auto-1-1"] {
        wait_until_released(&snapshots, &claims, name).await;
    }
    wait_until_gone(&groups, "auto-1").await;
    assert!(!gone(&pods, "auto-1").await, "the live read's pod stays");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn nothing_is_left_when_the_backup_fails_or_the_job_is_deleted() {
    let Scenario {
        env,
        jobs,
        pods,
        claims,
        snapshots,
        ..
    } = Scenario::start("hort-snapshot-leak").await;
    usable_claim(&env.client, &env.ns, "data").await;
    let ready = json!({"boundVolumeSnapshotContentName": "c", "creationTime": "2026-11-30T05:00:00Z",
                       "readyToUse": true});
    for name in ["fails", "deleted"] {
        create(
            &jobs,
            json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name},
                   "spec": {"storageGroupRef": {"name": "s3"}, "backoffLimit": 0,
                            "source": {"volume": {"claimName": "data", "snapshot": "CSI"}}}}),
        )
        .await;
        let attempt = format!("{name}-1");
        wait_for(&snapshots, &attempt, "the attempt's VolumeSnapshot", |_| true).await;
        controller_says(&snapshots, &attempt, ready.clone()).await;
        wait_for(&pods, &attempt, "the agent pod", |_| true).await;
        assert!(claims.get_opt(&attempt).await.unwrap().is_some());
    }

    // The agent fails: the job fails and its snapshot, claim and pod go.
    finish_pod(&pods, "fails-1", 2, "error: no space left on device").await;
    wait_for(&jobs, "fails", "phase Failed", |j| {
        j.status.as_ref().is_some_and(|s| s.phase == Phase::Failed)
    })
    .await;
    wait_until_released(&snapshots, &claims, "fails-1").await;
    assert!(gone(&pods, "fails-1").await, "the failed agent pod is deleted");

    // The job is deleted while its agent runs: the finalizer stops the pod, the garbage
    // collector removes what the job owned.
    jobs.delete("deleted", &Default::default()).await.unwrap();
    wait_until_released(&snapshots, &claims, "deleted-1").await;
    assert!(gone(&pods, "deleted-1").await, "the agent pod is deleted with its job");
    env.stop().await;
}
