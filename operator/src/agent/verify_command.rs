//! The user's own command over a volume verification's restored files (pure): the pod layout
//! that runs it, and what its end adds to the agent's report.
//!
//! The agent becomes an init container of the verification pod (restore and content check,
//! its report in its termination message) and the command the pod's only container: the
//! command starts only when the agent exited 0, so it never runs over files that failed the
//! check, and both share the pod's generic ephemeral volume without a second claim or a
//! second pod. The command's container sees the restored files read-only, runs under the Pod
//! Security Standard "restricted" and gets none of Hort's Secrets: the repository's password
//! and credentials are in the agent's environment only, and the pod mounts no ServiceAccount
//! token.

use std::collections::BTreeMap;

use hort_crds::verification::VerificationCommand;
use hort_protocol::{ExitCode, VerificationFailure, VerificationReport};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerState, EmptyDirVolumeSource, EnvVar, Pod, ResourceRequirements, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::outcome;
use super::pod::NON_ROOT_USER;
use super::verify::{RESTORE_DIR, SCRATCH_DIR};

/// Name of the container that runs the user's command.
pub const COMMAND_CONTAINER: &str = "command";
/// Where the command's container sees the restored files (read-only).
pub const RESTORE_MOUNT: &str = "/restore";
/// Its writable temporary directory (an `emptyDir`; the root file system is read-only).
const TMP_DIR: &str = "/tmp";
/// Size limit of that directory.
const TMP_SIZE_LIMIT: &str = "256Mi";
/// At most this many bytes of the command's output are shown (the kubelet keeps the last
/// 2048 bytes or 80 lines of a failed container's log as its termination message).
pub const OUTPUT_TAIL_BYTES: usize = 2048;

/// The subject of the command's check in `status.checked` and `status.failures`.
pub fn subject(command: &VerificationCommand) -> String {
    format!("command {}", command.image)
}

/// The command container's resources: the spec's, else 100m CPU and 128Mi memory requested
/// and 1 CPU and 512Mi memory at most.
pub fn resources(command: &VerificationCommand) -> ResourceRequirements {
    command.resources.clone().unwrap_or_else(|| {
        let quantities = |cpu: &str, memory: &str| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(memory.into())),
            ])
        };
        ResourceRequirements {
            requests: Some(quantities("100m", "128Mi")),
            limits: Some(quantities("1", "512Mi")),
            ..ResourceRequirements::default()
        }
    })
}

/// Moves the agent container of a volume verification's pod into its init containers and
/// makes `command` the pod's container: restricted, non-root (`runAsUser`, else
/// [`NON_ROOT_USER`]), a read-only root file system with a writable `/tmp`, the restored
/// files read-only at [`RESTORE_MOUNT`], and no environment but `HOME` and `TMPDIR`.
pub fn add_command(pod: &mut Pod, command: &VerificationCommand) {
    let spec = pod.spec.get_or_insert_default();
    let agent = std::mem::take(&mut spec.containers);
    spec.init_containers.get_or_insert_default().extend(agent);
    let user = command.run_as_user.unwrap_or(NON_ROOT_USER);
    let sub_path = RESTORE_DIR
        .strip_prefix(SCRATCH_DIR)
        .expect("the restore directory is below the scratch mount")
        .trim_start_matches('/');
    let value = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    spec.containers = vec![Container {
        name: COMMAND_CONTAINER.into(),
        image: Some(command.image.clone()),
        command: Some(command.command.clone()),
        args: (!command.args.is_empty()).then(|| command.args.clone()),
        env: Some(vec![value("HOME", TMP_DIR), value("TMPDIR", TMP_DIR)]),
        resources: Some(resources(command)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "scratch".into(),
                mount_path: RESTORE_MOUNT.into(),
                sub_path: Some(sub_path.into()),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "command-tmp".into(),
                mount_path: TMP_DIR.into(),
                ..VolumeMount::default()
            },
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            run_as_non_root: Some(true),
            run_as_user: Some(user),
            run_as_group: Some(user),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }];
    spec.volumes.get_or_insert_default().push(Volume {
        name: "command-tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(TMP_SIZE_LIMIT.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    });
    // No Service's address in the command's environment either.
    spec.enable_service_links = Some(false);
}

/// The state of the command's container, once the kubelet reported it.
fn state(pod: &Pod) -> Option<&ContainerState> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == COMMAND_CONTAINER)?
        .state
        .as_ref()
}

/// When a running command passes its `timeoutSeconds` (counted from its start); `None`
/// without a timeout or before it started.
pub fn deadline(pod: &Pod, command: &VerificationCommand) -> Option<Timestamp> {
    let timeout = command.timeout_seconds?;
    let started = state(pod)?.running.as_ref()?.started_at.as_ref()?.0;
    started.checked_add(SignedDuration::from_secs(timeout)).ok()
}

/// What became of the command of a finished pod whose agent passed: `Ok` for exit 0, else
/// why it failed (the exit code and the end of its output, or why it did not end).
pub fn result(pod: &Pod) -> Result<(), String> {
    let Some(state) = state(pod) else {
        return Err(format!("did not start: {}", ended_because(pod)));
    };
    if let Some(ended) = &state.terminated {
        if ended.exit_code == 0 {
            return Ok(());
        }
        let output = ended.message.as_deref().unwrap_or_default();
        return Err(with_output(format!("exit code {}", ended.exit_code), output));
    }
    let waiting = state
        .waiting
        .as_ref()
        .and_then(|w| w.reason.clone())
        .map(|r| format!(" (waiting: {r})"))
        .unwrap_or_default();
    Err(format!("did not end: {}{waiting}", ended_because(pod)))
}

/// Why the pod ended, e.g. `DeadlineExceeded`.
fn ended_because(pod: &Pod) -> String {
    outcome::pod_reason(pod).unwrap_or_else(|| format!("the pod ended ({})", outcome::phase(pod)))
}

/// Why a command stopped at its timeout failed, with the end of its `log`.
pub fn timed_out(command: &VerificationCommand, log: &str) -> String {
    let seconds = command.timeout_seconds.unwrap_or_default();
    with_output(format!("did not end within timeoutSeconds ({seconds}s)"), log)
}

/// `what`, followed by the last [`OUTPUT_TAIL_BYTES`] of `output` when there is any.
fn with_output(what: String, output: &str) -> String {
    let output = output.trim();
    if output.is_empty() {
        return format!("{what}, no output");
    }
    let mut start = output.len().saturating_sub(OUTPUT_TAIL_BYTES);
    while !output.is_char_boundary(start) {
        start += 1;
    }
    format!("{what}; output ends: {}", &output[start..])
}

/// What an ended verification pod says: the agent's report when its checks ran (it exits Ok
/// when they passed and Damaged when one failed, writing the report both times), with the
/// `command`'s result added when there is one; else why the run failed (the agent's error).
pub fn report_of(
    pod: &Pod,
    command: Option<(&VerificationCommand, Result<(), String>)>,
) -> Result<VerificationReport, String> {
    let exit_code = outcome::terminated(pod).map(|t| t.exit_code);
    // With a command the agent is an init container: it may have passed in a failed pod.
    let passed = outcome::phase(pod) == "Succeeded" || exit_code == Some(0) && command.is_some();
    if !passed && exit_code != Some(ExitCode::Damaged.code()) {
        return Err(outcome::failure(pod, 600));
    }
    let mut report = outcome::decode_report::<VerificationReport>(pod).map_err(|e| e.to_string())?;
    if let Some((command, result)) = command {
        apply(&mut report, command, result);
    }
    Ok(report)
}

/// Adds the command's `result` to the agent's `report`: a check `command <image>: exit 0`, or
/// a failure naming the command. A report whose checks failed is left as it is (the command
/// did not run).
fn apply(report: &mut VerificationReport, command: &VerificationCommand, result: Result<(), String>) {
    if !report.ok || report.failures_total > 0 || !report.failures.is_empty() {
        return;
    }
    match result {
        Ok(()) => report.checked.push(format!("{}: exit 0", subject(command))),
        Err(detail) => {
            report.ok = false;
            report.failures_total = 1;
            report.failures.push(VerificationFailure {
                subject: subject(command),
                detail,
            });
        }
    }
}
