//! Helpers shared by the operator's API-server tests: a client from KUBECONFIG, object
//! creation from JSON, waiting for a condition, the agent settings the tests run with, a
//! simulated kubelet that ends an agent pod, a Ready storage group, a usable claim, and a
//! namespace with the controllers running in it.

use std::sync::Arc;
use std::time::Duration;

use hort_crds::{BackupJob, RestoreRequest, StorageGroup, Verification};
use hort_operator::agent::pod::AgentSettings;
use hort_operator::clock::Clock;
use hort_operator::context::Context;
use hort_operator::controllers::{self, Scope};
use hort_operator::metrics::Metrics;
use hort_protocol::report::encode;
use hort_protocol::{CheckReport, TargetReport};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// How long a test waits for the operator.
pub const WAIT: Duration = Duration::from_secs(30);

/// A client for the API server of KUBECONFIG.
pub async fn client() -> Client {
    Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no usable KUBECONFIG ({e}); run scripts/test.sh"))
}

/// Creates the object `value` describes.
pub async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// Waits until `ready` holds for object `name`, or fails naming `what` and the last state.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, ready: impl Fn(&K) -> bool)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let cond = move |obj: Option<&K>| obj.is_some_and(&ready);
    if tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond))
        .await
        .is_err()
    {
        let last = api.get_opt(name).await.unwrap();
        panic!("timed out waiting for {what}; last state: {last:#?}");
    }
}

/// The agent settings of the tests' operator.
pub fn agent_settings() -> AgentSettings {
    AgentSettings {
        image: "hort-agent:test".into(),
        pull_policy: "Never".into(),
        retry_backoff: Duration::from_millis(300),
        default_resources: None,
        default_deadline_seconds: Some(21600),
        max_pods_per_node: None,
    }
}

/// Simulates the kubelet: the pod's agent container ended with `exit_code` and `message`.
pub async fn finish_pod(pods: &Api<Pod>, name: &str, exit_code: i32, message: &str) {
    let phase = if exit_code == 0 { "Succeeded" } else { "Failed" };
    let now = Timestamp::now().to_string();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": phase, "startTime": now, "containerStatuses": [{
                "name": "agent", "ready": false, "restartCount": 0, "image": "hort-agent:test", "imageID": "",
                "state": {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": now}}
            }]}}),
        ),
    )
    .await
    .unwrap();
}

/// The notes of the Events with `reason` about object `name` in `ns`, waiting until there is
/// one.
pub async fn wait_for_event(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let about: Vec<_> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        let notes: Vec<String> = about
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.note.clone().unwrap_or_default())
            .collect();
        if !notes.is_empty() {
            return notes;
        }
        let reasons: Vec<_> = about.iter().filter_map(|e| e.reason.as_deref()).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {reason} event for {name}; events: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates PersistentVolumeClaim `name` in `namespace`, marked usable by Hort (label
/// `hort.dev/usable: "true"`) as its owner would.
pub async fn usable_claim(client: &Client, namespace: &str, name: &str) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    create(
        &claims,
        json!({"metadata": {"name": name, "labels": {"hort.dev/usable": "true"}},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
}

/// Creates StorageGroup `s3` (one S3 target, its Secrets `key` and `s3`) in `namespace` and
/// answers its check pod as a healthy target would: the group becomes Ready.
pub async fn ready_s3_group(client: &Client, namespace: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let groups: Api<StorageGroup> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    create(
        &secrets,
        json!({"metadata": {"name": "key", "labels": {"hort.dev/usable": "true"}}, "stringData": {"password": "pw"}}),
    )
    .await;
    create(
        &secrets,
        json!({"metadata": {"name": "s3", "labels": {"hort.dev/usable": "true"}},
               "stringData": {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}}),
    )
    .await;
    create(
        &groups,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup", "metadata": {"name": "s3"},
               "spec": {"targets": [{"name": "s3", "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "backups",
                                                          "credentialsSecretRef": {"name": "s3"}}}],
                        "encryption": {"keySecretRef": {"name": "key"}}}}),
    )
    .await;
    let check = unfinished_check_pod(&pods).await;
    let report = healthy_check("r");
    finish_pod(&pods, &check.name_any(), 0, &encode(&report)).await;
    wait_for(&groups, "s3", "the group to be Ready", |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
}

/// The check pods of the namespace, once there are at least `count`.
pub async fn wait_for_check_pods(pods: &Api<Pod>, count: usize) -> Vec<Pod> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = pods
            .list(&ListParams::default().labels("hort.dev/agent-role=check"))
            .await
            .unwrap()
            .items;
        if found.len() >= count {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {count} check pods, found {}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The check pod that has not finished yet, once there is one.
pub async fn unfinished_check_pod(pods: &Api<Pod>) -> Pod {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let unfinished = wait_for_check_pods(pods, 1).await.into_iter().find(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        });
        if let Some(pod) = unfinished {
            return pod;
        }
        assert!(tokio::time::Instant::now() < deadline, "no unfinished check pod");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The report of a check that found repository `id` on one healthy target.
pub fn healthy_check(id: &str) -> CheckReport {
    CheckReport {
        repository_id: Some(id.into()),
        created: false,
        targets: vec![TargetReport {
            reachable: true,
            writable: true,
            ..TargetReport::default()
        }],
        error: None,
        key_rotation: None,
        snapshots: None,
    }
}

/// A fresh namespace with the CRDs installed and the controllers running in it.
pub struct TestEnv {
    /// A client of the API server.
    pub client: Client,
    /// The namespace.
    pub ns: String,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// The controllers' task.
    pub controllers: tokio::task::JoinHandle<()>,
}

impl TestEnv {
    /// Creates namespace `PREFIX-PID` and runs the controllers in it with `clock`.
    pub async fn start(prefix: &str, clock: Clock) -> Self {
        let client = client().await;
        hort_operator::crd_install::install(&client).await.unwrap();
        let ns = format!("{prefix}-{}", std::process::id());
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"metadata": {"name": ns}}),
        )
        .await;
        let metrics = Metrics::new();
        let ctx = Context::new(
            client.clone(),
            metrics.clone(),
            clock,
            agent_settings(),
            ns.clone(),
            None,
        );
        let controllers = tokio::spawn(controllers::run(Arc::new(ctx), Scope::Namespace(ns.clone()), 4));
        Self {
            client,
            ns,
            metrics,
            controllers,
        }
    }

    /// An API of kind `K` in the namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Stops the controllers, removes the finalizers they would remove, and deletes the
    /// namespace.
    pub async fn stop(self) {
        self.controllers.abort();
        // With the operator gone, nothing would remove its finalizers: the namespace could
        // never finish deleting.
        let unfinalize = Patch::Merge(json!({"metadata": {"finalizers": null}}));
        let jobs: Api<BackupJob> = Api::namespaced(self.client.clone(), &self.ns);
        for job in jobs.list(&ListParams::default()).await.unwrap() {
            jobs.patch(&job.name_any(), &PatchParams::default(), &unfinalize)
                .await
                .unwrap();
        }
        let restores: Api<RestoreRequest> = Api::namespaced(self.client.clone(), &self.ns);
        for restore in restores.list(&ListParams::default()).await.unwrap() {
            restores
                .patch(&restore.name_any(), &PatchParams::default(), &unfinalize)
                .await
                .unwrap();
        }
        let verifications: Api<Verification> = Api::namespaced(self.client.clone(), &self.ns);
        for verification in verifications.list(&ListParams::default()).await.unwrap() {
            verifications
                .patch(&verification.name_any(), &PatchParams::default(), &unfinalize)
                .await
                .unwrap();
        }
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.ns, &DeleteParams::default())
            .await
            .unwrap();
    }
}
