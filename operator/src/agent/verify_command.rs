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

use hort_crds::verification::VerificationCommand;
use hort_protocol::{ExitCode, VerificationFailure, VerificationReport};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, EmptyDirVolumeSource, EnvVar, Pod, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::outcome;
use super::pod::{self, NON_ROOT_USER};
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
    command
        .resources
        .clone()
        .unwrap_or_else(|| super::verify::bounded(("100m", "128Mi"), ("1", "512Mi")))
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
        security_context: Some(pod::restricted(user, true)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::pod::{AGENT_CONTAINER, AgentPod, AgentSettings, build, repository_access};
    use crate::agent::verify;
    use hort_crds::storage_group::StorageGroupSpec;
    use hort_crds::verification::{VerificationSpec, VerificationStatus};
    use hort_protocol::report::encode;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn spec(command: &str) -> VerificationSpec {
        serde_yaml::from_str(&format!(
            "storageGroupRef: {{name: g}}\nsource: {{snapshotId: ab12cd34}}\nvolume: {{size: 1Gi, command: {command}}}"
        ))
        .unwrap()
    }

    fn command_of(spec: &VerificationSpec) -> &VerificationCommand {
        spec.volume.as_ref().unwrap().command.as_ref().unwrap()
    }

    /// The pod the operator builds for `spec` over an S3 group with a repository password.
    fn pod_of(spec: &VerificationSpec) -> Pod {
        let group: StorageGroupSpec = serde_yaml::from_str(
            "targets: [{name: s3, s3: {endpoint: \"http://s3:9000\", bucket: b, credentialsSecretRef: {name: s3-keys}}}]\n\
             encryption: {keySecretRef: {name: repo-key}}",
        )
        .unwrap();
        let mut access = repository_access(&group);
        let agent_command = verify::command(spec, Some("ab12cd34"), "v-verify", &mut access).unwrap();
        let settings = AgentSettings {
            image: "hort-agent:1".into(),
            pull_policy: "IfNotPresent".into(),
            retry_backoff: std::time::Duration::from_secs(1),
            default_resources: None,
            default_deadline_seconds: None,
            max_pods_per_node: None,
        };
        let mut pod = build(
            &settings,
            AgentPod {
                name: "v-verify".into(),
                namespace: "demo".into(),
                owner: OwnerReference::default(),
                labels: std::collections::BTreeMap::new(),
                command: agent_command,
                repository: access,
                overrides: None,
                active_deadline_seconds: None,
                node: None,
            },
        );
        add_command(&mut pod, command_of(spec));
        pod
    }

    #[test]
    fn the_agent_restores_in_an_init_container_and_the_command_reads_the_files_read_only_without_secrets() {
        let spec = spec("{image: 'alpine:3.20', command: [sh, -c], args: ['test -f /restore/app.db']}");
        let pod = pod_of(&spec);
        let pod_spec = pod.spec.unwrap();
        // The agent first: an init container, so the command starts only after it exited 0.
        let init = pod_spec.init_containers.as_ref().unwrap();
        assert_eq!(init.len(), 1);
        let agent = &init[0];
        assert_eq!(agent.name, AGENT_CONTAINER);
        assert_eq!(agent.restart_policy, None, "not a sidecar: it runs to its end first");
        assert_eq!(
            agent.args.as_deref().unwrap(),
            ["verify-restore", "ab12cd34", "--scratch", RESTORE_DIR, "--keep"],
            "the agent leaves the files for the command"
        );
        // The repository's credentials are the agent's only (by reference).
        let agent_secrets: Vec<&str> = agent
            .env
            .iter()
            .flatten()
            .filter(|e| e.value_from.is_some())
            .map(|e| e.name.as_str())
            .collect();
        assert!(agent_secrets.contains(&"HORT_PASSWORD"), "{agent_secrets:?}");
        assert!(agent_secrets.iter().any(|n| n.ends_with("AWS_SECRET_ACCESS_KEY")));

        assert_eq!(pod_spec.containers.len(), 1);
        let command = &pod_spec.containers[0];
        assert_eq!(command.name, COMMAND_CONTAINER);
        assert_eq!(command.image.as_deref(), Some("alpine:3.20"));
        assert_eq!(command.command.as_deref().unwrap(), ["sh", "-c"]);
        assert_eq!(command.args.as_deref().unwrap(), ["test -f /restore/app.db"]);
        assert_eq!(
            command.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError"),
            "a failed command's output tail becomes its termination message"
        );
        // No Secret of Hort's: no value from a Secret, no env from one, no Secret volume, no
        // ServiceAccount token, no Service links.
        let env = command.env.as_ref().unwrap();
        assert!(env.iter().all(|e| e.value_from.is_none()), "{env:?}");
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["HOME", "TMPDIR"]);
        assert_eq!(command.env_from, None);
        assert_eq!(pod_spec.automount_service_account_token, Some(false));
        assert_eq!(pod_spec.enable_service_links, Some(false));
        // Only the restored files (read-only, below the agent's scratch mount) and a /tmp.
        let mounts = command.volume_mounts.as_ref().unwrap();
        let files = &mounts[0];
        assert_eq!(
            (
                files.name.as_str(),
                files.mount_path.as_str(),
                files.sub_path.as_deref(),
                files.read_only
            ),
            ("scratch", RESTORE_MOUNT, Some("restore"), Some(true))
        );
        assert_eq!(
            format!("{SCRATCH_DIR}/restore"),
            RESTORE_DIR,
            "the agent's restore directory"
        );
        assert_eq!(mounts.len(), 2);
        let tmp = pod_spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == mounts[1].name)
            .unwrap();
        assert!(tmp.empty_dir.is_some());
        // Pod Security "restricted", with a read-only root file system.
        let security = command.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(
            (security.run_as_user, security.run_as_group),
            (Some(NON_ROOT_USER), Some(NON_ROOT_USER))
        );
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        let caps = security.capabilities.as_ref().unwrap();
        assert_eq!(
            (caps.drop.as_deref(), caps.add.as_ref()),
            (Some(&["ALL".to_string()][..]), None)
        );
        assert_eq!(
            pod_spec.security_context.unwrap().seccomp_profile.unwrap().type_,
            "RuntimeDefault"
        );
        // Bounded by default.
        let limits = command.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!((&limits["cpu"].0[..], &limits["memory"].0[..]), ("1", "512Mi"));
    }

    #[test]
    fn the_command_runs_as_the_user_and_with_the_resources_given() {
        let spec = spec("{image: 'sqlite:3', command: [check], runAsUser: 1000, resources: {limits: {memory: 2Gi}}}");
        let pod_spec = pod_of(&spec).spec.unwrap();
        let command = &pod_spec.containers[0];
        let security = command.security_context.as_ref().unwrap();
        assert_eq!((security.run_as_user, security.run_as_group), (Some(1000), Some(1000)));
        assert_eq!(command.args, None);
        let resources = command.resources.as_ref().unwrap();
        assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "2Gi");
        assert_eq!(resources.requests, None, "the spec's resources replace the defaults");
    }

    fn verification_report(ok: bool) -> VerificationReport {
        VerificationReport {
            snapshot_id: Some("ab12cd34".into()),
            ok,
            restore_seconds: 3.0,
            check_seconds: 1.0,
            checked: vec!["3 files: content matches the snapshot".into()],
            failures: if ok {
                Vec::new()
            } else {
                vec![VerificationFailure {
                    subject: "app.db".into(),
                    detail: "content differs from the snapshot".into(),
                }]
            },
            failures_total: u64::from(!ok),
            files: 3,
            bytes: 300,
            tables: 0,
            packs: None,
        }
    }

    /// A pod whose agent init container exited `agent` with `report` and whose command
    /// container is in `command_state` (JSON), in pod phase `phase`.
    fn ended_pod(phase: &str, agent: i32, report: &str, command_state: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "status": {"phase": phase,
                "initContainerStatuses": [{"name": "agent", "image": "a", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": agent, "message": report}}}],
                "containerStatuses": [{"name": "command", "image": "c", "imageID": "", "ready": false,
                    "restartCount": 0, "state": command_state}]}
        }))
        .unwrap()
    }

    fn outcome_of(pod: &Pod, command: &VerificationCommand) -> (bool, VerificationStatus) {
        let report = report_of(pod, Some((command, result(pod)))).unwrap();
        let mut status = VerificationStatus::default();
        let passed = verify::record(&report, &mut status);
        (passed, status)
    }

    #[test]
    fn exit_0_passes_and_another_exit_code_fails_naming_the_command_and_showing_the_output_tail() {
        let spec = spec("{image: 'alpine:3.20', command: [sh]}");
        let command = command_of(&spec);
        let good = encode(&verification_report(true));

        let pod = ended_pod(
            "Succeeded",
            0,
            &good,
            serde_json::json!({"terminated": {"exitCode": 0}}),
        );
        let (passed, status) = outcome_of(&pod, command);
        assert!(passed);
        assert_eq!(status.checked.last().unwrap(), "command alpine:3.20: exit 0");
        assert_eq!(status.restore_duration_seconds, Some(3.0), "the agent's report is kept");
        assert_eq!(
            status.message.as_deref(),
            Some("snapshot ab12cd34 verified: 2 checks passed; the restore took 3.0s")
        );

        let output = format!("{}\nintegrity_check: page 7 is never used\n", "x".repeat(5000));
        let pod = ended_pod(
            "Failed",
            0,
            &good,
            serde_json::json!({"terminated": {"exitCode": 3, "message": output}}),
        );
        let (passed, status) = outcome_of(&pod, command);
        assert!(!passed);
        assert_eq!(status.failures_total, 1);
        let failure = &status.failures[0];
        assert_eq!(failure.subject, "command alpine:3.20");
        assert!(
            failure.detail.starts_with("exit code 3; output ends: xxx"),
            "{}",
            failure.detail
        );
        assert!(failure.detail.ends_with("integrity_check: page 7 is never used"));
        assert!(
            failure.detail.len() <= OUTPUT_TAIL_BYTES + 40,
            "bounded: {}",
            failure.detail.len()
        );
        assert!(
            status
                .message
                .as_deref()
                .unwrap()
                .starts_with("snapshot ab12cd34 failed verification: command alpine:3.20: exit code 3")
        );
        let quiet = ended_pod("Failed", 0, &good, serde_json::json!({"terminated": {"exitCode": 1}}));
        assert_eq!(
            outcome_of(&quiet, command).1.failures[0].detail,
            "exit code 1, no output"
        );
    }

    #[test]
    fn damaged_files_fail_the_run_and_the_command_that_never_ran_is_not_counted() {
        let spec = spec("{image: 'alpine:3.20', command: [sh]}");
        let command = command_of(&spec);
        let damaged = encode(&verification_report(false));
        let pod = ended_pod(
            "Failed",
            ExitCode::Damaged.code(),
            &damaged,
            serde_json::json!({"waiting": {"reason": "PodInitializing"}}),
        );
        let (passed, status) = outcome_of(&pod, command);
        assert!(!passed);
        assert_eq!(status.failures_total, 1);
        assert_eq!(status.failures[0].subject, "app.db");
        assert!(status.checked.iter().all(|c| !c.starts_with("command")));
        // An agent that could not check at all: its error, no report.
        let broken = ended_pod(
            "Failed",
            12,
            "hort-agent: wrong password",
            serde_json::json!({"waiting": {"reason": "PodInitializing"}}),
        );
        let why = report_of(&broken, Some((command, result(&broken)))).unwrap_err();
        assert!(why.contains("wrong password"), "{why}");
    }

    #[test]
    fn a_command_past_its_timeout_or_the_runs_deadline_fails_saying_so() {
        let slow = spec("{image: 'alpine:3.20', command: [sleep, '3600'], timeoutSeconds: 60}");
        let command = command_of(&slow);
        let good = encode(&verification_report(true));
        let running = ended_pod(
            "Running",
            0,
            &good,
            serde_json::json!({"running": {"startedAt": "2026-03-01T10:00:00Z"}}),
        );
        assert_eq!(
            deadline(&running, command),
            Some("2026-03-01T10:01:00Z".parse().unwrap())
        );
        let no_timeout = spec("{image: 'a', command: [b]}");
        assert_eq!(deadline(&running, command_of(&no_timeout)), None);
        let late = timed_out(command, "still checking\n");
        assert_eq!(
            late,
            "did not end within timeoutSeconds (60s); output ends: still checking"
        );
        let report = report_of(&running, Some((command, Err(late)))).unwrap();
        assert_eq!(report.failures[0].subject, "command alpine:3.20");
        // The run's deadline ended the pod while the image was still pulled.
        let mut gone = ended_pod(
            "Failed",
            0,
            &good,
            serde_json::json!({"waiting": {"reason": "ImagePullBackOff"}}),
        );
        gone.status.as_mut().unwrap().reason = Some("DeadlineExceeded".into());
        assert_eq!(
            result(&gone).unwrap_err(),
            "did not end: DeadlineExceeded (waiting: ImagePullBackOff)"
        );
    }
}
