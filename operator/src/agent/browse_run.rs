//! Running commands in a browse pod (see [`super::browse`]): waiting for it to start, exec of
//! `hort-agent` with its stdout copied unchanged (the API server's exec stream carries bytes
//! as they are, unlike a pod's log, which the container runtime splits into lines), and the
//! whole run for one report. Every call is made with the client it is given: the plugin's
//! user, or the overview page's user, never the operator's own rights.

use std::time::{Duration, Instant};

use hort_protocol::AgentCommand;
use hort_protocol::report::{Report, decode};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{AttachParams, DeleteParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a command in a browse pod did not give its output.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done, naming the object.
        action: String,
        /// What the API server or the connection said.
        source: kube::Error,
    },
    /// The pod will not start (image, Secret, or it ended).
    #[error("the agent pod {namespace}/{name} cannot start: {why}")]
    CannotStart {
        /// The pod's namespace.
        namespace: String,
        /// The pod.
        name: String,
        /// What its status says.
        why: String,
    },
    /// The pod did not run within the time allowed.
    #[error("the agent pod {namespace}/{name} did not start within {seconds} s")]
    StartTimeout {
        /// The pod's namespace.
        namespace: String,
        /// The pod.
        name: String,
        /// The time allowed.
        seconds: u64,
    },
    /// The agent's command failed: its last `hort-agent:` line, or the exec status.
    #[error("{0}")]
    Agent(String),
    /// Copying the agent's output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being copied.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Why a pod that is not running yet will not start, if it will not.
pub fn stuck(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
        return Some(format!(
            "it ended ({}){}",
            status.phase.as_deref().unwrap_or_default(),
            status.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        ));
    }
    status.container_statuses.iter().flatten().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        [
            "ErrImagePull",
            "ImagePullBackOff",
            "InvalidImageName",
            "CreateContainerConfigError",
            "CreateContainerError",
        ]
        .contains(&reason)
        .then(|| format!("{reason}: {}", waiting.message.as_deref().unwrap_or_default()))
    })
}

/// Waits until pod `name`'s container runs, at most `timeout`.
pub async fn wait_running(pods: &Api<Pod>, name: &str, namespace: &str, timeout: Duration) -> Result<(), BrowseError> {
    let started = Instant::now();
    loop {
        let pod = pods.get(name).await.map_err(|source| BrowseError::Api {
            action: format!("reading pod {namespace}/{name}"),
            source,
        })?;
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            return Ok(());
        }
        if let Some(why) = stuck(&pod) {
            return Err(BrowseError::CannotStart {
                namespace: namespace.into(),
                name: name.into(),
                why,
            });
        }
        if started.elapsed() > timeout {
            return Err(BrowseError::StartTimeout {
                namespace: namespace.into(),
                name: name.into(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `command` in pod `name`, copying its stdout to `sink`; the agent's error when it fails.
pub async fn exec(
    pods: &Api<Pod>,
    name: &str,
    command: &AgentCommand,
    sink: &mut (impl AsyncWrite + Unpin),
) -> Result<(), BrowseError> {
    let mut argv = vec!["hort-agent".to_string()];
    argv.extend(command.to_args());
    let params = AttachParams::default()
        .container("agent")
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut attached = pods
        .exec(name, argv, &params)
        .await
        .map_err(|source| BrowseError::Api {
            action: format!("running hort-agent in pod {name} (exec)"),
            source,
        })?;
    let mut stdout = attached.stdout().expect("stdout was asked for");
    let mut stderr = attached.stderr().expect("stderr was asked for");
    let status = attached.take_status().expect("the status is taken once");
    let copy = async {
        let copied = tokio::io::copy(&mut stdout, sink).await;
        sink.flush().await.and(copied)
    };
    let mut errors = Vec::new();
    let (copied, _) = tokio::join!(copy, stderr.read_to_end(&mut errors));
    let status = status.await;
    let _ = attached.join().await;
    let errors = String::from_utf8_lossy(&errors);
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => {}
        other => {
            let said = errors
                .lines()
                .rev()
                .find(|l| l.starts_with("hort-agent:"))
                .map(str::to_owned)
                .or_else(|| other.and_then(|s| s.message))
                .unwrap_or_else(|| "no message".into());
            return Err(BrowseError::Agent(said));
        }
    }
    match copied {
        // A reader that stopped reading (`cat … | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(BrowseError::Io {
            what: "copying the agent's output".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Deletes browse pod `name` at once; a pod already gone is no error.
pub async fn delete_now(pods: &Api<Pod>, name: &str) -> Result<(), kube::Error> {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    match pods.delete(name, &now).await {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Creates `pod` (a [`super::browse::browse_pod`] running `command`), waits at most
/// `start_timeout` for it, reads the agent's report of `command`, and deletes the pod, also
/// after an error. A pod that cannot be deleted ends by itself (its deadline).
pub async fn run_report<R: Report>(
    pods: &Api<Pod>,
    pod: &Pod,
    command: &AgentCommand,
    start_timeout: Duration,
) -> Result<R, BrowseError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    pods.create(&PostParams::default(), pod)
        .await
        .map_err(|source| BrowseError::Api {
            action: format!("creating agent pod {namespace}/{name}"),
            source,
        })?;
    let out = async {
        wait_running(pods, &name, &namespace, start_timeout).await?;
        let mut out = Vec::new();
        exec(pods, &name, command, &mut out).await?;
        Ok(out)
    }
    .await;
    if let Err(e) = delete_now(pods, &name).await {
        tracing::warn!(pod = %name, %namespace, error = %e, "could not delete a browse pod; it ends by its deadline");
    }
    let out = out?;
    decode(&String::from_utf8_lossy(&out))
        .map_err(|e| BrowseError::Agent(format!("{e} (an agent image of another release?)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_that_cannot_start_says_why() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"status": status})).unwrap()
        };
        let pulling = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied for x"}}}]}),
        );
        assert_eq!(
            stuck(&pulling).as_deref(),
            Some("ImagePullBackOff: pull access denied for x")
        );
        let secret = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"s3\" not found"}}}]}),
        );
        assert!(stuck(&secret).unwrap().contains("secret \"s3\" not found"));
        let creating = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(stuck(&creating), None, "still starting");
        let ended = pod(serde_json::json!({"phase": "Failed", "message": "deadline exceeded"}));
        assert_eq!(stuck(&ended).as_deref(), Some("it ended (Failed): deadline exceeded"));
    }
}
