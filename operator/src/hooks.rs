//! Backup hooks: commands the operator runs, through the `pods/exec` API, in application pods
//! before each backup attempt (`spec.hooks.pre`) and after it (`spec.hooks.post`), e.g. to
//! flush or pause an application. A hook runs in the pod it names, or in every running pod its
//! selector matches, and only in pods that allow it ([`ALLOW_HOOKS`]): whoever may create a
//! BackupJob must not get `pods/exec` into pods whose owner did not agree (docs/security.md).
//! A failing or timed-out hook fails the attempt unless its `onError` is `Continue`, which only
//! records a warning.
//!
//! Pre and post hooks come in pairs, once per attempt: an attempt is recorded in the job's
//! status before its pre hooks run, so no later reconcile runs them again, and whatever ends
//! the attempt after that (its pod finished, could not be made to run, vanished, or the
//! operator stopped while the pre hooks ran) runs its post hooks once, so a pre hook that
//! pauses something is always undone. An agent pod known before the pre hooks is created
//! before them (`backup_hooks`): if it is refused, the attempt ends with neither. [`next_step`] decides which hooks are due from what the status
//! and the agent pod say; they run outside the reconcile loop (`backup_hooks`, `hook_runs`).

use std::time::Duration;

use hort_crds::backup_job::{Hook, HookErrorPolicy};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, ListParams};
use kube::{Api, ResourceExt};
use tokio::io::AsyncReadExt;

/// What the operator knows about a job's latest attempt when it reconciles the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptFacts {
    /// The latest attempt recorded in status (`status.attempts`; 0 before the first).
    pub attempt: u32,
    /// Whether that attempt is recorded as started (`status.agentPod` is set): its pre hooks
    /// have run, or may have run when a reconcile broke off while running them.
    pub started: bool,
    /// The attempt whose post hooks have run (`status.postHooksAttempt`).
    pub post_hooks_attempt: Option<u32>,
    /// The attempt's agent pod.
    pub pod: PodState,
}

/// The state of an attempt's agent pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// No such pod: it was never created (creating it failed, or the reconcile broke off
    /// before), or it was deleted.
    Missing,
    /// The pod exists and has not finished.
    Running,
    /// The pod succeeded or failed.
    Finished,
}

/// Which hooks are due now, and whether the latest attempt still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookStep {
    /// No attempt is under way: the next one may start. Its pre hooks run only after the
    /// status that records it was written.
    StartNext,
    /// The attempt's pod runs; its post hooks wait for its end.
    Wait,
    /// The attempt is over, or broke off after its pre hooks may have run, and its post hooks
    /// have not run: run them now, once.
    RunPost,
    /// The attempt is over and its post hooks have run: no hook is due for it.
    Done,
}

/// Decides which hooks of a job are due, from the facts about its latest attempt.
pub fn next_step(facts: AttemptFacts) -> HookStep {
    if !facts.started {
        return HookStep::StartNext;
    }
    match facts.pod {
        PodState::Running => HookStep::Wait,
        PodState::Missing | PodState::Finished if facts.post_hooks_attempt == Some(facts.attempt) => HookStep::Done,
        PodState::Missing | PodState::Finished => HookStep::RunPost,
    }
}

/// The annotation a pod's owner sets to `"true"` to let BackupJobs of its namespace run hooks
/// in it.
pub const ALLOW_HOOKS: &str = "hort.dev/allow-hooks";

/// Why hooks may not run in `pod`, if they may not.
fn refusal(pod: &Pod) -> Option<String> {
    (pod.annotations().get(ALLOW_HOOKS).map(String::as_str) != Some("true")).then(|| {
        format!(
            "pod {:?} does not allow hooks: whoever manages it must set the annotation {ALLOW_HOOKS}: \"true\" on it (see docs/security.md); nothing was run",
            pod.name_any()
        )
    })
}

/// At most this much of a failed command's output is kept for the error message.
const OUTPUT_TAIL: usize = 300;
/// Bytes of each output stream kept while a hook runs (the end of it): a hook that prints
/// without end costs the operator no more memory than this.
const OUTPUT_KEPT: usize = 4096;

/// Reads `stream` to its end, keeping only its last `keep` bytes.
async fn read_tail(mut stream: impl tokio::io::AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut tail = Vec::with_capacity(2 * keep);
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    let excess = tail.len().saturating_sub(keep);
    tail.drain(..excess);
    tail
}

/// Runs `hooks` of `stage` (`pre` or `post`) in order. Returns the messages of tolerated
/// failures, or the failure that fails the attempt (the remaining hooks are not run).
pub async fn run(pods: &Api<Pod>, stage: &str, hooks: &[Hook]) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    for hook in hooks {
        if let Err(why) = run_hook(pods, hook).await {
            let message = format!("{stage} hook {:?}: {why}", hook.name);
            match hook.on_error {
                HookErrorPolicy::Continue => warnings.push(message),
                HookErrorPolicy::Fail => return Err(message),
            }
        }
    }
    Ok(warnings)
}

/// The container a hook runs in: the one it names, else the pod's first container (the API
/// server itself picks none in a pod with several).
fn container(hook: &Hook, pod: &Pod) -> Option<String> {
    hook.container.clone().or_else(|| {
        pod.spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
    })
}

/// Runs one hook in each of its pods.
async fn run_hook(pods: &Api<Pod>, hook: &Hook) -> Result<(), String> {
    let targets = match (&hook.pod, &hook.selector) {
        (Some(name), _) => vec![pods.get(name).await.map_err(|e| format!("pod {name:?}: {e}"))?],
        (None, Some(selector)) => {
            let labels = selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let running = pods
                .list(&ListParams::default().labels(&labels).fields("status.phase=Running"))
                .await
                .map_err(|e| format!("listing pods with labels {labels}: {e}"))?;
            if running.items.is_empty() {
                return Err(format!("no running pod has the labels {labels}"));
            }
            running.items
        }
        (None, None) => return Err("names neither a pod nor a selector".into()),
    };
    if let Some(why) = targets.iter().find_map(refusal) {
        return Err(why);
    }
    for pod in &targets {
        let name = pod.name_any();
        exec(pods, &name, container(hook, pod), hook)
            .await
            .map_err(|e| format!("in pod {name:?}: {e}"))?;
    }
    Ok(())
}

/// Runs the hook's command in `container` of `pod` and waits for it, at most
/// `timeoutSeconds`.
async fn exec(pods: &Api<Pod>, pod: &str, container: Option<String>, hook: &Hook) -> Result<(), String> {
    let mut params = AttachParams::default().stdin(false).stdout(true).stderr(true);
    if let Some(container) = container {
        params = params.container(container);
    }
    let timeout = Duration::from_secs(hook.timeout_seconds.into());
    let run = async {
        let mut process = pods
            .exec(pod, hook.command.clone(), &params)
            .await
            .map_err(|e| e.to_string())?;
        let status = process.take_status();
        let (mut stdout, mut stderr) = (process.stdout(), process.stderr());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(stream) = stdout.as_mut() {
                out = read_tail(stream, OUTPUT_KEPT).await;
            }
        };
        let read_err = async {
            if let Some(stream) = stderr.as_mut() {
                err = read_tail(stream, OUTPUT_KEPT).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        let _ = process.join().await;
        match status {
            Some(s) if s.status.as_deref() == Some("Success") => Ok(()),
            Some(s) => {
                let output = if err.is_empty() { out } else { err };
                let output = String::from_utf8_lossy(&output);
                let output = output.trim();
                let start = output.char_indices().rev().nth(OUTPUT_TAIL).map_or(0, |(i, _)| i);
                Err(format!(
                    "{}{}",
                    s.message.unwrap_or_else(|| "the command failed".into()),
                    if output.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", &output[start..])
                    }
                ))
            }
            None => Err("the command's exit status was not reported".into()),
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("timed out after {}s", hook.timeout_seconds))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hook_that_prints_without_end_costs_bounded_memory() {
        use tokio::io::AsyncReadExt as _;
        let endless = tokio::io::repeat(b'y').take(64 * 1024 * 1024);
        let tail = read_tail(endless, OUTPUT_KEPT).await;
        assert_eq!(tail.len(), OUTPUT_KEPT);
        let short = read_tail(&b"done\n"[..], OUTPUT_KEPT).await;
        assert_eq!(short, b"done\n");
    }

    #[test]
    fn hooks_run_only_in_pods_whose_owner_allows_them() {
        let pod = |annotations: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "db-0", "annotations": annotations}}))
                .unwrap()
        };
        assert_eq!(refusal(&pod(serde_json::json!({ALLOW_HOOKS: "true"}))), None);
        let refused = refusal(&pod(serde_json::json!({}))).unwrap();
        assert!(
            refused.contains("pod \"db-0\" does not allow hooks") && refused.contains(ALLOW_HOOKS),
            "{refused}"
        );
        assert!(refusal(&pod(serde_json::json!({ALLOW_HOOKS: "yes"}))).is_some());
    }

    #[test]
    fn a_hook_without_a_container_runs_in_the_pods_first_one() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-0"},
            "spec": {"containers": [{"name": "postgres"}, {"name": "exporter"}]}
        }))
        .unwrap();
        let mut hook: Hook = serde_json::from_value(serde_json::json!({
            "name": "flush", "pod": "db-0", "command": ["sync"]
        }))
        .unwrap();
        assert_eq!(container(&hook, &pod).as_deref(), Some("postgres"));
        hook.container = Some("exporter".into());
        assert_eq!(container(&hook, &pod).as_deref(), Some("exporter"));
    }

    fn facts(attempt: u32, started: bool, post_hooks_attempt: Option<u32>, pod: PodState) -> AttemptFacts {
        AttemptFacts {
            attempt,
            started,
            post_hooks_attempt,
            pod,
        }
    }

    #[test]
    fn a_job_without_a_started_attempt_starts_the_next() {
        // A new job.
        assert_eq!(next_step(facts(0, false, None, PodState::Missing)), HookStep::StartNext);
        // Attempt 1 failed before its pod was created and its post hooks ran: attempt 2 may start.
        assert_eq!(
            next_step(facts(1, false, Some(1), PodState::Missing)),
            HookStep::StartNext
        );
    }

    #[test]
    fn a_running_attempt_waits_for_its_pod() {
        assert_eq!(next_step(facts(1, true, None, PodState::Running)), HookStep::Wait);
        assert_eq!(next_step(facts(3, true, Some(2), PodState::Running)), HookStep::Wait);
    }

    #[test]
    fn an_attempt_that_ended_runs_its_post_hooks_once() {
        assert_eq!(next_step(facts(1, true, None, PodState::Finished)), HookStep::RunPost);
        assert_eq!(
            next_step(facts(2, true, Some(1), PodState::Finished)),
            HookStep::RunPost
        );
        assert_eq!(next_step(facts(2, true, Some(2), PodState::Finished)), HookStep::Done);
    }

    #[test]
    fn pre_hooks_without_a_pod_are_paired_with_their_post_hooks() {
        // The status says attempt 2 started (its pre hooks ran or were running), but no pod
        // exists: the reconcile broke off before creating it, or the pod was deleted.
        assert_eq!(next_step(facts(2, true, Some(1), PodState::Missing)), HookStep::RunPost);
        assert_eq!(next_step(facts(2, true, None, PodState::Missing)), HookStep::RunPost);
        // Once they ran, they do not run again.
        assert_eq!(next_step(facts(2, true, Some(2), PodState::Missing)), HookStep::Done);
    }
}
