//! The volume populator against a real kube-apiserver and kube-controller-manager (whose PV
//! controller binds claims; there is no kubelet, so the tests end the restore pods as the
//! kubelet would). A claim naming a VolumeRestoreSource gets a prime claim and a restore pod;
//! after the restore the prime claim's volume is bound to the claim and the prime claim and pod
//! go. A missing source, a group that is not Ready or a shared group that does not select the
//! namespace is an Event on the claim and no pod; a failed pod is retried; with
//! WaitForFirstConsumer nothing is made until the node is chosen, and then the restore runs
//! there. Run through `scripts/test.sh`, which starts the API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hort_crds::{ClusterStorageGroup, StorageGroup, VolumeRestoreSource};
use hort_operator::clock::Clock;
use hort_operator::context::Context;
use hort_operator::controllers::Scope;
use hort_operator::populator;
use hort_protocol::RestoreReport;
use hort_protocol::report::encode;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

mod support;
use support::{
    TestEnv, WAIT, agent_settings, create, finish_pod, ready_s3_group, usable_claim, wait_for, wait_for_event,
};

const SNAPSHOT: &str = "ab12cd34ef56";

/// The controllers of `TestEnv` plus the populator, in a fresh namespace.
struct PopulatorEnv {
    env: TestEnv,
    populator: tokio::task::JoinHandle<()>,
    /// The test's StorageClass (no provisioner), removed by `stop`.
    class: String,
}

impl PopulatorEnv {
    /// A namespace with the populator running in it, and a StorageClass `<prefix>-<pid>` of
    /// volume binding mode `binding`.
    async fn start(prefix: &str, binding: &str) -> Self {
        let env = TestEnv::start(prefix, Clock::System).await;
        let ctx = Context::new(
            env.client.clone(),
            env.metrics.clone(),
            Clock::System,
            agent_settings(),
            env.ns.clone(),
            None,
        );
        let populator = tokio::spawn(populator::run(Arc::new(ctx), Scope::Namespace(env.ns.clone()), 4));
        let class = format!("{prefix}-{}", std::process::id());
        storage_class_binding(&env.client, &class, binding).await;
        Self { env, populator, class }
    }

    /// A Ready S3 group `s3`, a VolumeRestoreSource `web` of it and a claim `data` of the
    /// test's class that names it: the claim's uid.
    async fn ready_source_and_claim(&self) -> String {
        ready_s3_group(&self.env.client, &self.env.ns).await;
        source(&self.env, "web", "s3").await;
        let claim = populated_claim(&self.env, "data", &self.class, "web").await;
        claim.uid().unwrap()
    }

    async fn stop(self) {
        self.populator.abort();
        let _ = Api::<StorageClass>::all(self.env.client.clone())
            .delete(&self.class, &DeleteParams::default())
            .await;
        self.env.stop().await;
    }
}

/// Creates StorageClass `name` with no provisioner and volume binding mode `mode`.
async fn storage_class_binding(client: &Client, name: &str, mode: &str) {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let _ = classes.delete(name, &DeleteParams::default()).await;
    create(
        &classes,
        json!({"metadata": {"name": name}, "provisioner": "kubernetes.io/no-provisioner",
               "volumeBindingMode": mode, "reclaimPolicy": "Delete"}),
    )
    .await;
}

/// Creates claim `name` of 1Gi in `class` that names VolumeRestoreSource `source`.
async fn populated_claim(env: &TestEnv, name: &str, class: &str, source: &str) -> PersistentVolumeClaim {
    create(
        &env.api::<PersistentVolumeClaim>(),
        json!({"metadata": {"name": name},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                        "resources": {"requests": {"storage": "1Gi"}},
                        "dataSourceRef": {"apiGroup": "hort.dev", "kind": "VolumeRestoreSource", "name": source}}}),
    )
    .await
}

/// Creates VolumeRestoreSource `name` of snapshot [`SNAPSHOT`] in group `group`.
async fn source(env: &TestEnv, name: &str, group: &str) {
    create(
        &env.api::<VolumeRestoreSource>(),
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "VolumeRestoreSource", "metadata": {"name": name},
               "spec": {"storageGroupRef": {"name": group}, "source": {"snapshotId": SNAPSHOT}, "paths": ["www"]}}),
    )
    .await;
}

/// Creates static volume `name` (reclaim policy Delete) in `class`, reserved for the prime
/// claim of the claim with `uid`.
async fn static_volume(env: &TestEnv, name: &str, class: &str, uid: &str) {
    let volumes: Api<PersistentVolume> = Api::all(env.client.clone());
    let _ = volumes.delete(name, &DeleteParams::default()).await;
    create(
        &volumes,
        json!({"metadata": {"name": name},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                        "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": "/tmp/hort-populator-test"},
                        "claimRef": {"namespace": env.ns, "name": format!("hort-populate-{uid}")}}}),
    )
    .await;
}

/// The restore pods of the claim with `uid`, once there are `count`.
async fn restore_pods(env: &TestEnv, uid: &str, count: usize) -> Vec<Pod> {
    let pods = env.api::<Pod>();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = pods
            .list(&ListParams::default().labels(&format!("hort.dev/populate-claim={uid}")))
            .await
            .unwrap()
            .items;
        if found.len() == count {
            return found;
        }
        let names: Vec<_> = found.iter().map(|p| p.name_any()).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {count} restore pods, found {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn report() -> String {
    encode(&RestoreReport {
        snapshot_id: SNAPSHOT.into(),
        bytes_restored: 4096,
        files: 3,
        skipped: 0,
        duration_seconds: 0.5,
        row_counts: BTreeMap::new(),
    })
}

fn claimed_by(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    volumes
        .into_iter()
        .filter_map(|v| v.persistent_volume_claim.map(|c| c.claim_name))
        .collect()
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_claim_is_populated_from_a_snapshot_and_bound_to_the_restored_volume() {
    let popenv = PopulatorEnv::start("hort-populate", "Immediate").await;
    let env = &popenv.env;
    let class = popenv.class.clone();
    let uid = popenv.ready_source_and_claim().await;
    let volume = format!("hort-populate-{}", std::process::id());
    static_volume(env, &volume, &class, &uid).await;

    let claims = env.api::<PersistentVolumeClaim>();
    let prime = format!("hort-populate-{uid}");
    wait_for(
        &claims,
        &prime,
        "the prime claim to be bound to the static volume",
        |c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"),
    )
    .await;
    let spec = claims.get(&prime).await.unwrap().spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some(class.as_str()));
    assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "1Gi");
    assert!(spec.data_source_ref.is_none());

    let pod = restore_pods(env, &uid, 1).await.remove(0);
    assert_eq!(
        claimed_by(&pod),
        std::slice::from_ref(&prime),
        "the pod mounts the prime claim"
    );
    let args = pod.spec.as_ref().unwrap().containers[0].args.clone().unwrap().join(" ");
    assert!(args.contains(SNAPSHOT) && args.contains("www"), "{args}");
    finish_pod(&env.api::<Pod>(), &pod.name_any(), 0, &report()).await;

    let volumes: Api<PersistentVolume> = Api::all(env.client.clone());
    wait_for(&volumes, &volume, "the volume's claimRef to name the claim", |pv| {
        let reference = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        reference.is_some_and(|r| r.uid.as_deref() == Some(uid.as_str()) && r.name.as_deref() == Some("data"))
    })
    .await;
    wait_for(&claims, "data", "the claim to be Bound to the restored volume", |c| {
        c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
            && c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(volume.as_str())
    })
    .await;
    let notes = wait_for_event(&env.client, &env.ns, "data", "Populated").await;
    assert!(
        notes[0].contains(SNAPSHOT) && notes[0].contains("3 files, 4096 bytes"),
        "{notes:?}"
    );
    restore_pods(env, &uid, 0).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while claims.get_opt(&prime).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the prime claim was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pv = volumes.get(&volume).await.unwrap();
    assert_eq!(
        pv.status.and_then(|s| s.phase).as_deref(),
        Some("Bound"),
        "the volume was not released"
    );
    let sources = env.api::<VolumeRestoreSource>();
    wait_for(&sources, "web", "the source's Populated condition", |s| {
        s.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Populated" && c.status == "True")
        })
    })
    .await;

    let _ = volumes.delete(&volume, &DeleteParams::default()).await;
    popenv.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_missing_source_a_group_not_ready_or_not_allowed_is_an_event_on_the_claim_and_no_pod() {
    let popenv = PopulatorEnv::start("hort-populate-wait", "Immediate").await;
    let env = &popenv.env;
    let class = popenv.class.clone();

    let missing = populated_claim(env, "orphan", &class, "nowhere").await;
    let notes = wait_for_event(&env.client, &env.ns, "orphan", "SourceNotFound").await;
    assert!(
        notes[0].contains("\"nowhere\"") && notes[0].contains("create it"),
        "{notes:?}"
    );

    // A group whose check never ends is not Ready (its claim is there and marked usable).
    usable_claim(&env.client, &env.ns, "repo").await;
    create(
        &env.api::<Secret>(),
        json!({"metadata": {"name": "key", "labels": {"hort.dev/usable": "true"}}, "stringData": {"password": "pw"}}),
    )
    .await;
    create(
        &env.api::<StorageGroup>(),
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup", "metadata": {"name": "cold"},
               "spec": {"targets": [{"name": "disk", "pvc": {"claimName": "repo"}}],
                        "encryption": {"keySecretRef": {"name": "key"}}}}),
    )
    .await;
    source(env, "web", "cold").await;
    let waiting = populated_claim(env, "data", &class, "web").await;
    let notes = wait_for_event(&env.client, &env.ns, "data", "StorageGroupNotReady").await;
    assert!(
        notes[0].contains("\"web\"") && notes[0].contains("\"cold\""),
        "{notes:?}"
    );

    // A shared group that does not select this namespace: the claim waits with an Event that
    // says why.
    let team = format!("team-{}", std::process::id());
    let groups: Api<ClusterStorageGroup> = Api::all(env.client.clone());
    create(
        &groups,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "ClusterStorageGroup", "metadata": {"name": team},
               "spec": {"storageGroupRef": {"name": "s3"},
                        "allowedNamespaces": {"matchLabels": {"hort-test-never": "yes"}},
                        "tenantKeySecretRef": {"name": "tenant-root", "key": "secret"}}}),
    )
    .await;
    create(
        &env.api::<VolumeRestoreSource>(),
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "VolumeRestoreSource", "metadata": {"name": "shared"},
               "spec": {"storageGroupRef": {"kind": "ClusterStorageGroup", "name": team},
                        "source": {"snapshotId": SNAPSHOT}}}),
    )
    .await;
    let refused = populated_claim(env, "tenant", &class, "shared").await;
    let notes = wait_for_event(&env.client, &env.ns, "tenant", "NamespaceNotAllowed").await;
    assert!(
        notes[0].contains(&format!("is not allowed to use ClusterStorageGroup {team:?}")),
        "{notes:?}"
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    for claim in [missing, waiting, refused] {
        restore_pods(env, &claim.uid().unwrap(), 0).await;
    }
    groups.delete(&team, &DeleteParams::default()).await.unwrap();
    popenv.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_failed_restore_pod_is_reported_and_retried() {
    let popenv = PopulatorEnv::start("hort-populate-retry", "Immediate").await;
    let env = &popenv.env;
    let uid = popenv.ready_source_and_claim().await;

    let first = restore_pods(env, &uid, 1).await.remove(0);
    assert!(first.name_any().ends_with("-1"), "{}", first.name_any());
    finish_pod(&env.api::<Pod>(), &first.name_any(), 1, "bucket unreachable").await;
    let notes = wait_for_event(&env.client, &env.ns, "data", "PopulateFailed").await;
    assert!(
        notes[0].contains("bucket unreachable") && notes[0].contains("attempt 1"),
        "{notes:?}"
    );

    let deadline = tokio::time::Instant::now() + WAIT;
    let second = loop {
        let pods = restore_pods(env, &uid, 1).await;
        if pods[0].name_any().ends_with("-2") {
            break pods[0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no second attempt");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(claimed_by(&second), [format!("hort-populate-{uid}")]);

    popenv.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn wait_for_first_consumer_waits_for_the_selected_node_and_restores_there() {
    let popenv = PopulatorEnv::start("hort-populate-wffc", "WaitForFirstConsumer").await;
    let env = &popenv.env;
    let uid = popenv.ready_source_and_claim().await;
    let claims = env.api::<PersistentVolumeClaim>();
    let prime = format!("hort-populate-{uid}");

    // Until the scheduler chooses a node, nothing is made.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        claims.get_opt(&prime).await.unwrap().is_none(),
        "a prime claim before the node was chosen"
    );
    restore_pods(env, &uid, 0).await;

    // What the scheduler does when it places a pod that uses the claim.
    let select = json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "node-a"}}});
    claims
        .patch("data", &PatchParams::default(), &Patch::Merge(&select))
        .await
        .unwrap();
    wait_for(&claims, &prime, "the prime claim on the selected node", |c| {
        c.annotations()
            .get("volume.kubernetes.io/selected-node")
            .map(String::as_str)
            == Some("node-a")
    })
    .await;
    let pod = restore_pods(env, &uid, 1).await.remove(0);
    assert_eq!(claimed_by(&pod), [prime]);
    let affinity = serde_json::to_string(&pod.spec.as_ref().unwrap().affinity).unwrap();
    assert!(
        affinity.contains("node-a"),
        "the restore pod is not placed on the node: {affinity}"
    );

    popenv.stop().await;
}
