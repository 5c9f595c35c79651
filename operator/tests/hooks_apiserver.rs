//! Backup hooks against a real kube-apiserver: pre hooks run once per attempt and each is
//! followed by its post hooks once, also when a status write conflicts, when the agent pod
//! cannot be created, and when the operator stops while a pre hook runs. Run through
//! `scripts/test.sh`, which starts the API server.
//!
//! The API server runs `pods/exec` by connecting to the kubelet of the pod's node. Each test
//! registers two Node objects whose kubelet endpoint is a TCP listener of the test: one hosts
//! the pod the pre hook runs in, the other the pod of the post hook, and each listener counts
//! the connections it gets, one per hook run. It answers none of them, so every hook run fails;
//! the hooks have `onError: Continue`, so the backup goes on. One test holds the connection
//! instead, so that its hook times out, and fails its post hook with `onError: Fail`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use hort_crds::BackupJob;
use hort_crds::common::Phase;
use hort_operator::clock::Clock;
use hort_operator::context::Context;
use hort_operator::controllers::{self, Scope};
use hort_operator::hook_runs::RUNS_PER_NAMESPACE;
use hort_protocol::BackupReport;
use hort_protocol::report::encode;
use k8s_openapi::api::core::v1::{Node, Pod, ResourceQuota};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod pod_gates;
mod support;
use pod_gates::gates;
use support::{
    WAIT, agent_settings, client, create, finish_pod, ready_s3_group, usable_claim, wait_for, wait_for_event,
};

/// An agent's backup report (as the agent encodes it) of snapshot `id`.
fn backup_report(id: &str) -> String {
    encode(&BackupReport {
        snapshot_id: id.into(),
        bytes_read: 10,
        bytes_new: 10,
        bytes_stored: 5,
        files: 1,
        duration_seconds: 1.0,
        targets_behind: Vec::new(),
        catalog_error: None,
    })
}

/// What the test does when a fake kubelet gets its first connection, before dropping it.
type OnFirst = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A Node whose kubelet endpoint is a listener of this test that counts the connections the
/// API server makes to it (one per `pods/exec`) and drops each, after holding it (unanswered)
/// for `hold`.
struct FakeKubelet {
    node: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKubelet {
    async fn start(client: &Client, node: String, on_first: Option<OnFirst>, hold: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let nodes: Api<Node> = Api::all(client.clone());
        create(&nodes, json!({"metadata": {"name": node}})).await;
        nodes
            .patch_status(
                &node,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})),
            )
            .await
            .unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            let mut on_first = on_first;
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                if let Some(action) = on_first.take() {
                    action().await;
                }
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    drop(stream);
                });
            }
        });
        Self {
            node,
            connections,
            task,
        }
    }

    fn runs(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    async fn stop(self, client: &Client) {
        self.task.abort();
        Api::<Node>::all(client.clone())
            .delete(&self.node, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// A fresh namespace with the controllers running in it, a Ready StorageGroup `s3`, a usable
/// claim `data`, and the application pods `pre-app` and `post-app` on the nodes of the fake
/// kubelets `pre` and `post` (`pre` holds each exec for `pre_hold` before it drops it).
struct TestEnv {
    base: support::TestEnv,
    pre: FakeKubelet,
    post: FakeKubelet,
}

impl TestEnv {
    async fn start(
        prefix: &str,
        on_first_pre_hook: Option<OnFirst>,
        on_first_post_hook: Option<OnFirst>,
        pre_hold: Duration,
    ) -> Self {
        let base = support::TestEnv::start(prefix, Clock::System).await;
        let (client, ns) = (&base.client, &base.ns);
        let pre = FakeKubelet::start(client, format!("{ns}-pre"), on_first_pre_hook, pre_hold).await;
        let post = FakeKubelet::start(client, format!("{ns}-post"), on_first_post_hook, Duration::ZERO).await;
        ready_s3_group(client, ns).await;
        usable_claim(client, ns, "data").await;
        let pods: Api<Pod> = base.api();
        for (app, node, allowed) in [
            ("pre-app", &pre.node, "true"),
            ("post-app", &post.node, "true"),
            ("closed-app", &pre.node, "false"),
        ] {
            create(
                &pods,
                json!({"metadata": {"name": app, "annotations": {"hort.dev/allow-hooks": allowed}},
                       "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}]}}),
            )
            .await;
        }
        Self { base, pre, post }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        self.base.api()
    }

    /// Creates BackupJob `name` with a pre hook in `pre-app` and a post hook in `post-app`.
    /// Every hook run fails (no kubelet answers); the post hook's failure is tolerated, the pre
    /// hook's as `pre_on_error` says.
    async fn job(&self, name: &str, backoff_limit: u32, pre_on_error: &str) {
        create(
            &self.api::<BackupJob>(),
            json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name},
                   "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                            "backoffLimit": backoff_limit,
                            "hooks": {
                                "pre": [{"name": "freeze", "pod": "pre-app", "command": ["freeze"], "onError": pre_on_error}],
                                "post": [{"name": "thaw", "pod": "post-app", "command": ["thaw"], "onError": "Continue"}]}}}),
        )
        .await;
    }

    /// Stops the controllers and starts new ones, as an operator restart does.
    fn restart_controllers(&mut self) {
        self.base.controllers.abort();
        let metrics = self.base.metrics.clone();
        let ctx = Context::new(
            self.base.client.clone(),
            metrics,
            Clock::System,
            agent_settings(),
            self.base.ns.clone(),
            None,
        );
        let scope = Scope::Namespace(self.base.ns.clone());
        self.base.controllers = tokio::spawn(controllers::run(Arc::new(ctx), scope, 4));
    }

    async fn stop(self) {
        self.pre.stop(&self.base.client).await;
        self.post.stop(&self.base.client).await;
        self.base.stop().await;
    }
}

/// A fake kubelet's action that labels BackupJob `conflict` with `touched: value`, then
/// reports on `done`.
fn label_job(value: &'static str, done: oneshot::Sender<()>) -> OnFirst {
    Box::new(move || {
        Box::pin(async move {
            let ns = format!("hort-hooks-conflict-{}", std::process::id());
            let jobs: Api<BackupJob> = Api::namespaced(client().await, &ns);
            let label = Patch::Merge(json!({"metadata": {"labels": {"touched": value}}}));
            jobs.patch("conflict", &PatchParams::default(), &label).await.unwrap();
            done.send(()).unwrap();
        })
    })
}

/// A fake kubelet's action that reads pod `pod` in the namespace of the test named `prefix`
/// and sends its scheduling gates (`None`: no such pod) on `seen`.
fn read_gates(prefix: &'static str, pod: &'static str, seen: oneshot::Sender<Option<Vec<String>>>) -> OnFirst {
    Box::new(move || {
        Box::pin(async move {
            let ns = format!("{prefix}-{}", std::process::id());
            let pods: Api<Pod> = Api::namespaced(client().await, &ns);
            seen.send(pods.get_opt(pod).await.unwrap().as_ref().map(gates)).unwrap();
        })
    })
}

/// What [`read_gates`] saw when the pre hook ran.
async fn gates_seen(seen: oneshot::Receiver<Option<Vec<String>>>) -> Option<Vec<String>> {
    tokio::time::timeout(WAIT, seen)
        .await
        .expect("the pre hook never ran")
        .unwrap()
}

fn phase(job: &BackupJob) -> Phase {
    job.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn status_write_conflicts_do_not_run_hooks_again() {
    // While the first pre hook and the first post hook run, another writer changes the job:
    // the operator's next status write, conditional on the resourceVersion it read, conflicts.
    let (pre_tx, pre_rx) = oneshot::channel();
    let (post_tx, post_rx) = oneshot::channel();
    let env = TestEnv::start(
        "hort-hooks-conflict",
        Some(label_job("during-pre-hook", pre_tx)),
        Some(label_job("during-post-hook", post_tx)),
        Duration::ZERO,
    )
    .await;
    let jobs: Api<BackupJob> = env.api();
    let pods: Api<Pod> = env.api();
    env.job("conflict", 1, "Continue").await;
    tokio::time::timeout(WAIT, pre_rx)
        .await
        .expect("the pre hook never ran")
        .unwrap();
    wait_for(&pods, "conflict-1", "the agent pod", |_| true).await;
    // Reconciles after the conflict find the attempt under way; give them time to (wrongly)
    // run the pre hook again before the pod ends.
    wait_for(&jobs, "conflict", "the attempt recorded with its pod", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.agent_pod.as_deref() == Some("conflict-1")
                && s.message.as_deref().is_some_and(|m| m.contains("agent pod"))
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.pre.runs(), 1, "the pre hook ran once");
    assert_eq!(env.post.runs(), 0, "no post hook before the attempt ended");

    finish_pod(&pods, "conflict-1", 0, &backup_report("c0ffee00")).await;
    tokio::time::timeout(WAIT, post_rx)
        .await
        .expect("the post hook never ran")
        .unwrap();
    wait_for(&jobs, "conflict", "the job to succeed", |j| {
        phase(j) == Phase::Succeeded
    })
    .await;
    let status = jobs.get("conflict").await.unwrap().status.unwrap();
    assert_eq!(status.attempts, 1);
    assert_eq!(status.post_hooks_attempt, Some(1));
    assert_eq!((env.pre.runs(), env.post.runs()), (1, 1), "(pre, post) hook runs");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn an_agent_pod_the_namespace_refuses_ends_each_attempt_before_any_hook_runs() {
    let env = TestEnv::start("hort-hooks-quota", None, None, Duration::ZERO).await;
    let jobs: Api<BackupJob> = env.api();
    let pods: Api<Pod> = env.api();
    // From now on the namespace admits no pod: the agent pod, created before the pre hooks,
    // is refused.
    create(
        &env.api::<ResourceQuota>(),
        json!({"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}),
    )
    .await;
    env.job("quota", 1, "Continue").await;
    wait_for(&jobs, "quota", "the job to fail", |j| phase(j) == Phase::Failed).await;
    // Later reconciles of a failed job run no hook.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = jobs.get("quota").await.unwrap().status.unwrap();
    assert_eq!(status.attempts, 2, "both attempts of backoffLimit 1 were counted");
    assert_eq!(status.post_hooks_attempt, Some(2));
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("attempt 2 of 2 failed: creating agent pod \"quota-2\" failed")
            && message.contains("quota"),
        "the message names the pod creation error: {message}"
    );
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason, "BackoffLimitExceeded");
    assert_eq!(
        (env.pre.runs(), env.post.runs()),
        (0, 0),
        "no hook paused the application for a pod that could not run"
    );
    assert!(pods.get_opt("quota-1").await.unwrap().is_none());
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn the_agent_pod_exists_held_back_while_the_pre_hook_runs_and_is_let_go_after() {
    let (seen_tx, seen_rx) = oneshot::channel();
    let on_pre = read_gates("hort-hooks-gate", "gate-1", seen_tx);
    let env = TestEnv::start("hort-hooks-gate", Some(on_pre), None, Duration::ZERO).await;
    let pods: Api<Pod> = env.api();
    env.job("gate", 0, "Continue").await;
    let during = gates_seen(seen_rx).await;
    assert_eq!(
        during,
        Some(vec!["hort.dev/pre-hooks".to_string()]),
        "while the pre hook runs, the pod exists and only the pre-hooks gate holds it"
    );
    wait_for(&pods, "gate-1", "the agent pod, let go after the pre hook", |p| {
        gates(p).is_empty()
    })
    .await;
    assert_eq!((env.pre.runs(), env.post.runs()), (1, 0), "(pre, post) hook runs");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_failing_pre_hook_runs_the_post_hook_and_deletes_the_held_pod() {
    let (seen_tx, seen_rx) = oneshot::channel();
    let on_pre = read_gates("hort-hooks-prefail", "prefail-1", seen_tx);
    let env = TestEnv::start("hort-hooks-prefail", Some(on_pre), None, Duration::ZERO).await;
    let (jobs, pods): (Api<BackupJob>, Api<Pod>) = (env.api(), env.api());
    // The pre hook fails (its kubelet drops the exec) with onError: Fail.
    env.job("prefail", 3, "Fail").await;
    let during = gates_seen(seen_rx).await;
    assert_eq!(
        during,
        Some(vec!["hort.dev/pre-hooks".to_string()]),
        "the pod was held back"
    );
    wait_for(&jobs, "prefail", "the job to fail", |j| phase(j) == Phase::Failed).await;
    let status = jobs.get("prefail").await.unwrap().status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("attempt 1: a pre hook failed, no data was read: pre hook \"freeze\""),
        "{message}"
    );
    assert_eq!(status.post_hooks_attempt, Some(1));
    assert_eq!(
        (env.pre.runs(), env.post.runs()),
        (1, 1),
        "the post hook undid the pre hook; no retry"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while pods.get_opt("prefail-1").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the held pod was never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_pod_that_does_not_allow_hooks_gets_no_exec() {
    let env = TestEnv::start("hort-hooks-closed", None, None, Duration::ZERO).await;
    let jobs: Api<BackupJob> = env.api();
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "closed"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                        "hooks": {"pre": [{"name": "peek", "pod": "closed-app", "command": ["cat", "/secret"]}]}}}),
    )
    .await;
    wait_for(&jobs, "closed", "the job to fail", |j| phase(j) == Phase::Failed).await;
    let message = jobs
        .get("closed")
        .await
        .unwrap()
        .status
        .unwrap()
        .message
        .unwrap_or_default();
    assert!(
        message.contains("pod \"closed-app\" does not allow hooks"),
        "the message says why: {message}"
    );
    assert_eq!(env.pre.runs(), 0, "no exec reached the pod's node");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn an_operator_stopped_during_the_pre_hooks_runs_the_post_hooks_after_its_restart() {
    // The first pre hook blocks until the test lets it go.
    let (arrived_tx, arrived_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let block: OnFirst = Box::new(move || {
        Box::pin(async move {
            arrived_tx.send(()).unwrap();
            let _ = release_rx.await;
        })
    });
    let mut env = TestEnv::start("hort-hooks-restart", Some(block), None, Duration::ZERO).await;
    let jobs: Api<BackupJob> = env.api();
    let pods: Api<Pod> = env.api();
    env.job("restart", 1, "Continue").await;
    tokio::time::timeout(WAIT, arrived_rx)
        .await
        .expect("the pre hook never ran")
        .unwrap();
    // The agent pod exists already, held back from scheduling while the pre hook runs.
    let held = pods.get("restart-1").await.unwrap();
    assert_eq!(gates(&held), ["hort.dev/pre-hooks"]);
    // The operator stops while the pre hook runs.
    env.restart_controllers();
    release_tx.send(()).unwrap();

    // The restarted operator finds attempt 1 begun and its pod held back by a prologue that no
    // longer runs: it deletes the pod, runs the post hook and counts the attempt as failed;
    // attempt 2 runs with its own pre hook, and its pod is let go once that passed.
    wait_for(&pods, "restart-2", "the second attempt's agent pod, let go", |p| {
        gates(p).is_empty()
    })
    .await;
    assert_eq!((env.pre.runs(), env.post.runs()), (2, 1), "(pre, post) hook runs");
    assert!(pods.get_opt("restart-1").await.unwrap().is_none());
    finish_pod(&pods, "restart-2", 0, &backup_report("feed0001")).await;
    wait_for(&jobs, "restart", "the job to succeed", |j| phase(j) == Phase::Succeeded).await;
    let status = jobs.get("restart").await.unwrap().status.unwrap();
    assert_eq!(status.attempts, 2);
    assert_eq!((env.pre.runs(), env.post.runs()), (2, 2), "(pre, post) hook runs");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_timed_out_pre_hook_may_continue_and_a_failing_post_hook_fails_the_job_but_keeps_the_snapshot() {
    // The pre hook's exec hangs: its kubelet holds the connection without answering.
    let env = TestEnv::start("hort-hooks-policies", None, None, Duration::from_secs(5)).await;
    let (jobs, pods): (Api<BackupJob>, Api<Pod>) = (env.api(), env.api());
    // The post hook finds its pod by label among the running pods.
    pods.patch(
        "post-app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"role": "resumer"}}})),
    )
    .await
    .unwrap();
    pods.patch_status(
        "post-app",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "policies"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                        "backoffLimit": 0,
                        "hooks": {
                            "pre": [{"name": "slow", "pod": "pre-app", "command": ["freeze"],
                                     "timeoutSeconds": 1, "onError": "Continue"}],
                            "post": [{"name": "resume", "selector": {"role": "resumer"}, "command": ["thaw"],
                                      "onError": "Fail"}]}}}),
    )
    .await;

    // timeoutSeconds: 1 ends the wait long before the exec would (5 s); Continue makes the
    // failure a Warning and the backup runs.
    wait_for(
        &pods,
        "policies-1",
        "the agent pod after the timed-out pre hook",
        |_| true,
    )
    .await;
    let warnings = wait_for_event(&env.base.client, &env.base.ns, "policies", "HookFailed").await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(r#"pre hook "slow": in pod "pre-app": timed out after 1s"#)),
        "{warnings:?}"
    );
    assert_eq!(env.pre.runs(), 1);

    // The post hook runs in the pod its selector finds; it fails with onError: Fail, so the
    // job fails, and says that its snapshot was written and is kept.
    finish_pod(&pods, "policies-1", 0, &backup_report("5eed0001")).await;
    wait_for(&jobs, "policies", "the job to fail after its post hook", |j| {
        phase(j) == Phase::Failed
    })
    .await;
    let status = jobs.get("policies").await.unwrap().status.unwrap();
    assert_eq!(env.post.runs(), 1, "the selector led the post hook to post-app's node");
    assert_eq!(status.snapshot_id.as_deref(), Some("5eed0001"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("snapshot 5eed0001 was written, but post hook \"resume\""),
        "{message}"
    );
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason, "HookFailed");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn hooks_that_hang_hold_up_no_other_job() {
    // Every pre hook exec hangs for two minutes, far longer than the test waits.
    let env = TestEnv::start("hort-hooks-hung", None, None, Duration::from_secs(120)).await;
    let (jobs, pods): (Api<BackupJob>, Api<Pod>) = (env.api(), env.api());
    // More jobs with hung pre hooks than the test operator reconciles at a time (4).
    for i in 0..6 {
        create(
            &jobs,
            json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": format!("hung-{i}")},
                   "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                            "hooks": {"pre": [{"name": "stall", "pod": "pre-app", "command": ["stall"],
                                               "timeoutSeconds": 600}]}}}),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.pre.runs() < RUNS_PER_NAMESPACE {
        assert!(tokio::time::Instant::now() < deadline, "the hung hooks never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A job without hooks gets its agent pod at once, and the namespace's other hooks wait
    // for its share of turns instead of piling up execs.
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "plain"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}}}}),
    )
    .await;
    wait_for(&pods, "plain-1", "the agent pod of the job without hooks", |_| true).await;
    assert_eq!(
        env.pre.runs(),
        RUNS_PER_NAMESPACE,
        "hook execs at once in one namespace"
    );
    for i in 0..6 {
        wait_for(
            &jobs,
            &format!("hung-{i}"),
            "the job to say it runs its pre hooks",
            |j| j.status.as_ref().and_then(|s| s.message.as_deref()) == Some("attempt 1: running pre hooks"),
        )
        .await;
    }
    env.stop().await;
}
