//! What became of an agent pod (pure): its phase, why it waits, when it ended, and what the
//! agent reported or why it failed.

use hort_crds::common::Progress;
use hort_protocol::report::{self, Report, ReportError};
use hort_protocol::{ExitCode, ProgressLine};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, Pod};

use super::pod::AGENT_CONTAINER;

/// Whether `pod` mounts claim `claim`.
pub fn reads_claim(pod: &Pod, claim: &str) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.volumes.iter().flatten().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == claim)
        })
    })
}

/// The pod's phase; `Pending` when it has none yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod has ended (`Succeeded` or `Failed`).
pub fn finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// When the pod was created.
pub fn created(pod: &Pod) -> Timestamp {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// The state of the agent container, once the kubelet reported it: the pod's first container,
/// or the init container [`AGENT_CONTAINER`] of a pod that runs a command after the agent
/// (a volume verification's, `verify_command`).
fn agent_state(pod: &Pod) -> Option<&ContainerState> {
    let status = pod.status.as_ref()?;
    let init = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|s| s.name == AGENT_CONTAINER);
    init.or_else(|| status.container_statuses.as_ref()?.first())?
        .state
        .as_ref()
}

/// The terminated state of the agent container, once it ended.
pub fn terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    agent_state(pod)?.terminated.as_ref()
}

/// Why the agent container has not started, e.g. `ErrImagePull: …`, while it waits.
pub fn waiting(pod: &Pod) -> Option<String> {
    let waiting = agent_state(pod)?.waiting.as_ref()?;
    let reason = waiting.reason.clone()?;
    Some(match &waiting.message {
        Some(message) => format!("{reason}: {message}"),
        None => reason,
    })
}

/// What the agent left: its termination message, or the pod's own status message (e.g.
/// `DeadlineExceeded`) when the container left none.
pub fn message(pod: &Pod) -> String {
    let message = terminated(pod).and_then(|t| t.message.clone()).unwrap_or_default();
    if !message.trim().is_empty() {
        return message;
    }
    pod_reason(pod).unwrap_or_else(|| "the agent left no message".into())
}

/// The pod's own status message or reason (e.g. `DeadlineExceeded`), if it has one.
pub fn pod_reason(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.message.clone().or(s.reason.clone()))
}

/// When the agent container ended; the pod's creation time when unknown.
pub fn finished_at(pod: &Pod) -> Timestamp {
    terminated(pod)
        .and_then(|t| t.finished_at.as_ref())
        .map_or_else(|| created(pod), |t| t.0)
}

/// The last `max` characters of `text`, trimmed.
pub fn tail(text: &str, max: usize) -> &str {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(max);
    let start = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
    &text[start..]
}

/// The progress shown in the status, from the newest progress line in `log` (the tail of the
/// agent's output); `None` when it holds none.
pub fn progress_from_log(log: &str) -> Option<Progress> {
    let line = ProgressLine::newest_in(log)?;
    Some(Progress {
        bytes_done: line.bytes,
        bytes_total: line.bytes_total,
        percent: line.percent(),
    })
}

/// The agent's report of a pod that succeeded.
pub fn decode_report<R: Report>(pod: &Pod) -> Result<R, ReportError> {
    report::decode(&message(pod))
}

/// Why an agent pod failed, for a status message: what the exit code means and the end of
/// what the agent said (at most `max` characters of it).
pub fn failure(pod: &Pod, max: usize) -> String {
    let said = message(pod);
    let said = tail(&said, max);
    match terminated(pod).and_then(|t| ExitCode::from_code(t.exit_code)) {
        Some(code) if code != ExitCode::Ok && code != ExitCode::Error => {
            format!("{} (exit code {}): {said}", code.meaning(), code.code())
        }
        _ => said.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(exit_code: i32, message: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "agent", "image": "a", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "message": message}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn failures_say_what_the_exit_code_means() {
        let wrong = failure(&ended(12, "hort-agent: wrong password\n"), 600);
        assert_eq!(
            wrong,
            "the repository password opens no key (exit code 12): hort-agent: wrong password"
        );
        assert_eq!(failure(&ended(1, "pg_dump failed"), 600), "pg_dump failed");
        assert_eq!(failure(&ended(137, "…killed"), 3), "led");
        let gone: Pod = serde_json::from_value(serde_json::json!({
            "status": {"phase": "Failed", "reason": "DeadlineExceeded"}
        }))
        .unwrap();
        assert_eq!(failure(&gone, 600), "DeadlineExceeded");
    }

    #[test]
    fn progress_comes_from_the_newest_progress_line() {
        let line = |bytes: u64| {
            format!(
                r#"{{"type":"progress","operation":"restore","elapsed_secs":1.0,"files":1,"bytes":{bytes},
                    "bytes_total":400,"new_bytes":0,"errors":0,"bytes_per_sec":1.0}}"#
            )
            .replace('\n', "")
        };
        let log = format!("starting\n{}\n{}\na warning\n", line(100), line(300));
        let progress = progress_from_log(&log).unwrap();
        assert_eq!(
            (progress.bytes_done, progress.bytes_total, progress.percent),
            (300, Some(400), Some(75))
        );
        assert!(progress_from_log("no json here").is_none());
    }

    #[test]
    fn reports_are_decoded_from_the_termination_message() {
        let report = hort_protocol::ForgetReport {
            snapshots_kept: 2,
            snapshots_removed: 1,
        };
        let pod = ended(0, &report::encode(&report));
        assert_eq!(decode_report::<hort_protocol::ForgetReport>(&pod), Ok(report));
        assert!(decode_report::<hort_protocol::BackupReport>(&pod).is_err());
    }
}
