//! Helpers shared by the operator's API-server tests: a client from KUBECONFIG, object
//! creation from JSON, waiting for a condition, the agent settings the tests run with, and
//! a simulated kubelet that ends an agent pod.

use std::time::Duration;

use hort_operator::agent::pod::AgentSettings;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Resource};
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
