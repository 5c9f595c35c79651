//! Backup hooks: commands the operator runs, through the `pods/exec` API, in application pods
//! before each backup attempt (`spec.hooks.pre`) and after it (`spec.hooks.post`), e.g. to
//! flush or pause an application. A hook runs in the pod it names, or in every running pod its
//! selector matches. A failing or timed-out hook fails the attempt unless its `onError` is
//! `Continue`, which only records a warning. Post hooks run after every attempt, also a failed
//! one, so a pre hook that pauses something is always undone.

use std::time::Duration;

use hort_crds::backup_job::{Hook, HookErrorPolicy};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, ListParams};
use kube::{Api, ResourceExt};
use tokio::io::AsyncReadExt;

/// At most this much of a failed command's output is kept for the error message.
const OUTPUT_TAIL: usize = 300;

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

/// Runs one hook in each of its pods.
async fn run_hook(pods: &Api<Pod>, hook: &Hook) -> Result<(), String> {
    let targets = match (&hook.pod, &hook.selector) {
        (Some(name), _) => vec![name.clone()],
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
            running.items.iter().map(|p| p.name_any()).collect()
        }
        (None, None) => return Err("names neither a pod nor a selector".into()),
    };
    for pod in targets {
        exec(pods, &pod, hook)
            .await
            .map_err(|e| format!("in pod {pod:?}: {e}"))?;
    }
    Ok(())
}

/// Runs the hook's command in `pod` and waits for it, at most `timeoutSeconds`.
async fn exec(pods: &Api<Pod>, pod: &str, hook: &Hook) -> Result<(), String> {
    let mut params = AttachParams::default().stdin(false).stdout(true).stderr(true);
    if let Some(container) = &hook.container {
        params = params.container(container.clone());
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
                let _ = stream.read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(stream) = stderr.as_mut() {
                let _ = stream.read_to_end(&mut err).await;
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
