//! CSI VolumeSnapshots of BackupJob volume sources against a real kube-apiserver with the
//! upstream snapshot CRDs (kind-tests/cluster.sh installs them, also in a control-plane-only
//! cluster). No snapshot controller runs here: the test writes each VolumeSnapshot's status as
//! the controller would (ready, or an error). kind-tests/e2e.sh runs the real controller and
//! CSI driver. Run through `scripts/test.sh`, which starts the API server.

use hort_crds::BackupJob;
use hort_crds::common::Phase;
use hort_operator::clock::Clock;
use hort_operator::volume_snapshot::{self, VolumeSnapshot};
use hort_protocol::BackupReport;
use hort_protocol::report::encode;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

mod support;
use support::{TestEnv, create, finish_pod, ready_s3_group, usable_claim, wait_for, wait_for_event};

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
    let env = TestEnv::start("hort-snapshot", Clock::System).await;
    let (jobs, pods, claims) = (
        env.api::<BackupJob>(),
        env.api::<Pod>(),
        env.api::<PersistentVolumeClaim>(),
    );
    let snapshots = volume_snapshot::api(&env.client, &env.ns);
    ready_s3_group(&env.client, &env.ns).await;
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
    assert!(env.metrics.render().contains(&expected), "missing {expected}");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn auto_reads_live_when_the_cluster_cannot_snapshot_and_csi_fails() {
    let env = TestEnv::start("hort-snapshot-fail", Clock::System).await;
    let (jobs, pods, claims) = (
        env.api::<BackupJob>(),
        env.api::<Pod>(),
        env.api::<PersistentVolumeClaim>(),
    );
    let snapshots = volume_snapshot::api(&env.client, &env.ns);
    ready_s3_group(&env.client, &env.ns).await;
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
    assert!(env.metrics.render().contains(&expected), "missing {expected}");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn nothing_is_left_when_the_backup_fails_or_the_job_is_deleted() {
    let env = TestEnv::start("hort-snapshot-leak", Clock::System).await;
    let (jobs, pods, claims) = (
        env.api::<BackupJob>(),
        env.api::<Pod>(),
        env.api::<PersistentVolumeClaim>(),
    );
    let snapshots = volume_snapshot::api(&env.client, &env.ns);
    ready_s3_group(&env.client, &env.ns).await;
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
