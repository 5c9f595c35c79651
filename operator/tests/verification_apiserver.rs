//! Verifications against a real kube-apiserver: the agent pod with its throwaway server and
//! password Secret, or its ephemeral scratch claim; the agent's report in status, Events and
//! metrics; the scratch resources removed when the run ends; a Schedule creating
//! Verifications on its own cron; a Verification of the repository (its packs read) and a
//! StorageGroup creating those on its own cron. Run through `scripts/test.sh`, which starts the API server.

use std::time::Duration;

use hort_crds::common::Phase;
use hort_crds::{Schedule, StorageGroup, Verification};
use hort_operator::clock::Clock;
use hort_operator::schedule_plan::CronSchedule;
use hort_operator::verification_plan;
use hort_protocol::report::encode;
use hort_protocol::{PacksRead, VerificationFailure, VerificationReport};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

mod metrics_wait;
mod support;
use metrics_wait::metrics_showing;
use support::{TestEnv, WAIT, client, create, finish_pod, ready_s3_group, usable_claim, wait_for, wait_for_event};

/// Waits until object `name` of `api` is gone.
async fn wait_gone<K>(api: &Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt(name).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} {name:?} was not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until pod `name` exists and returns it.
async fn wait_for_pod(pods: &Api<Pod>, name: &str) -> Pod {
    wait_for(pods, name, "the agent pod", |_| true).await;
    pods.get(name).await.unwrap()
}

/// The agent's report of a snapshot verification with `failures`.
fn agent_report(failures: &[(&str, &str)]) -> VerificationReport {
    VerificationReport {
        snapshot_id: Some("ab12cd34ef".into()),
        ok: failures.is_empty(),
        restore_seconds: 42.5,
        check_seconds: 1.5,
        checked: vec![
            "database shop: 2 tables, row counts match the backup".into(),
            "assertion balanced (shop): true".into(),
        ],
        failures: failures
            .iter()
            .map(|(subject, detail)| VerificationFailure {
                subject: (*subject).into(),
                detail: (*detail).into(),
            })
            .collect(),
        failures_total: failures.len() as u64,
        files: 2,
        bytes: 4096,
        tables: 2,
        packs: None,
    }
}

fn report(failures: &[(&str, &str)]) -> String {
    encode(&agent_report(failures))
}

fn phase(v: &Verification) -> Phase {
    v.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_database_verification_runs_a_throwaway_server_and_records_what_was_checked() {
    let env = TestEnv::start("hort-verify-db", Clock::System).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let verifications: Api<Verification> = env.api();
    let pods: Api<Pod> = env.api();
    let secrets: Api<Secret> = env.api();
    ready_s3_group(&client, &ns).await;

    create(
        &verifications,
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "Verification", "metadata": {"name": "shop"},
            "spec": {"storageGroupRef": {"name": "s3"}, "source": {"snapshotId": "ab12cd34"},
                     "database": {"kind": "Postgres", "image": "postgres:16",
                                  "assertions": [{"name": "balanced", "database": "shop",
                                                  "sql": "select sum(amount) = 0 from ledger"}]}}
        }),
    )
    .await;
    let pod = wait_for_pod(&pods, "shop-verify").await;
    wait_for(&verifications, "shop", "Running", |v| phase(v) == Phase::Running).await;
    wait_for_event(&client, &ns, "shop", "VerificationStarted").await;

    // The server is a native sidecar, its password a generated Secret owned by the run.
    let spec = pod.spec.clone().unwrap();
    let server = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        (server.image.as_deref(), server.restart_policy.as_deref()),
        (Some("postgres:16"), Some("Always"))
    );
    let args = spec.containers[0].args.clone().unwrap();
    assert_eq!(args[..2], ["verify-restore-postgres", "ab12cd34"]);
    assert!(args.iter().any(|a| a.contains("sum(amount) = 0")));
    let secret = secrets.get("shop-verify").await.unwrap();
    let owner = &secret.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Verification", "shop"));
    let data = secret.data.clone().unwrap();
    assert_eq!(data["username"].0, b"postgres");
    let password = String::from_utf8(data["password"].0.clone()).unwrap();
    assert_eq!(password.len(), 32, "a fresh random password");
    // The password is in no pod spec, status or Event: only referenced.
    let pod_json = serde_json::to_string(&pod).unwrap();
    assert!(!pod_json.contains(&password), "the password leaked into the pod spec");

    // The agent reports every check passed: Succeeded, the report in status, metrics.
    finish_pod(&pods, "shop-verify", 0, &report(&[])).await;
    wait_for(&verifications, "shop", "Succeeded", |v| phase(v) == Phase::Succeeded).await;
    let status = verifications.get("shop").await.unwrap().status.unwrap();
    assert_eq!(status.snapshot_id.as_deref(), Some("ab12cd34ef"));
    assert_eq!(status.restore_duration_seconds, Some(42.5));
    assert_eq!(status.checked.len(), 2);
    assert_eq!((status.failures_total, status.restored.unwrap().tables), (0, 2));
    assert!(status.completion_time.is_some());
    let notes = wait_for_event(&client, &ns, "shop", "Verified").await;
    assert!(notes[0].contains("2 checks passed"), "{notes:?}");
    let status_json = serde_json::to_string(&verifications.get("shop").await.unwrap()).unwrap();
    assert!(!status_json.contains(&password));
    let expected = [
        format!(r#"hort_verify_total{{namespace="{ns}",result="succeeded"}} 1"#),
        format!(r#"hort_restore_duration_seconds_count{{kind="postgres",namespace="{ns}"}} 1"#),
        format!(r#"hort_last_verified_timestamp_seconds{{namespace="{ns}",schedule=""}} "#),
    ];
    metrics_showing(&env.metrics, &expected).await;

    // The scratch resources are gone once the run has ended.
    wait_gone(&pods, "shop-verify", "the agent pod").await;
    wait_gone(&secrets, "shop-verify", "the password Secret").await;

    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_failed_check_fails_the_verification_naming_it_and_the_scratch_claim_goes_with_the_pod() {
    let env = TestEnv::start("hort-verify-vol", Clock::System).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let verifications: Api<Verification> = env.api();
    let pods: Api<Pod> = env.api();
    let claims: Api<PersistentVolumeClaim> = env.api();
    ready_s3_group(&client, &ns).await;
    // A claim of the user's: never touched by a verification.
    usable_claim(&client, &ns, "data").await;

    let volume = |name: &str| {
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "Verification", "metadata": {"name": name},
            "spec": {"storageGroupRef": {"name": "s3"}, "source": {"tags": ["hort.dev/schedule=files"]},
                     "volume": {"storageClassName": "standard", "size": "2Gi"}}
        })
    };
    create(&verifications, volume("files")).await;
    let pod = wait_for_pod(&pods, "files-verify").await;
    let spec = pod.spec.clone().unwrap();
    assert_eq!(
        spec.containers[0].args.as_deref().unwrap(),
        [
            "verify-restore",
            "latest",
            "--scratch",
            "/scratch/restore",
            "--tag",
            "hort.dev/schedule=files"
        ]
    );
    assert!(spec.init_containers.is_none(), "no database server for files");
    // The ephemeral volume controller creates the scratch claim, owned by the pod.
    wait_for(&claims, "files-verify-scratch", "the scratch claim", |c| {
        c.owner_references()
            .iter()
            .any(|o| o.kind == "Pod" && o.name == "files-verify")
            && c.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()) == Some("standard")
    })
    .await;

    // A file differs: the agent exits Damaged with its report; the run fails naming the file.
    let failures = [
        ("media/a.jpg", "content differs from the snapshot"),
        ("media/b.jpg", "missing"),
    ];
    finish_pod(&pods, "files-verify", 4, &report(&failures)).await;
    wait_for(&verifications, "files", "Failed", |v| phase(v) == Phase::Failed).await;
    let status = verifications.get("files").await.unwrap().status.unwrap();
    assert_eq!(status.failures_total, 2);
    assert_eq!(status.failures[0].subject, "media/a.jpg");
    assert_eq!(
        status.message.as_deref(),
        Some(
            "snapshot ab12cd34ef failed verification: media/a.jpg: content differs from the snapshot (and 1 more failures)"
        )
    );
    let notes = wait_for_event(&client, &ns, "files", "CheckFailed").await;
    assert!(notes[0].contains("media/a.jpg"), "{notes:?}");
    wait_gone(&pods, "files-verify", "the agent pod").await;
    wait_gone(&claims, "files-verify-scratch", "the scratch claim").await;
    assert!(claims.get_opt("data").await.unwrap().is_some());

    // A run that could not check (no report) fails saying why.
    create(&verifications, volume("broken")).await;
    wait_for_pod(&pods, "broken-verify").await;
    finish_pod(&pods, "broken-verify", 12, "hort-agent: wrong password").await;
    wait_for(&verifications, "broken", "Failed without a report", |v| {
        v.status
            .as_ref()
            .and_then(|s| s.message.as_deref())
            .is_some_and(|m| m.starts_with("verification failed before its checks ran") && m.contains("wrong password"))
    })
    .await;
    let failed = format!(r#"hort_verify_total{{namespace="{ns}",result="failed"}} 2"#);
    metrics_showing(&env.metrics, &[failed]).await;
    wait_gone(&pods, "broken-verify", "the agent pod").await;

    env.stop().await;
}

/// Simulates the kubelet for a verification pod with a command: the agent (an init
/// container) exited `agent_exit` with `report`, the command container is in `command`
/// (a container state, JSON), the pod in `phase`.
async fn end_with_command(
    pods: &Api<Pod>,
    name: &str,
    phase: &str,
    agent_exit: i32,
    report: &str,
    command: serde_json::Value,
) {
    let now = Timestamp::now().to_string();
    let status = json!({"status": {"phase": phase, "startTime": now,
        "initContainerStatuses": [{"name": "agent", "ready": false, "restartCount": 0, "image": "hort-agent:test",
            "imageID": "", "state": {"terminated": {"exitCode": agent_exit, "message": report, "finishedAt": now}}}],
        "containerStatuses": [{"name": "command", "ready": false, "restartCount": 0, "image": "busybox",
            "imageID": "", "state": command}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// The report of an agent whose content check of the files passed.
fn files_ok() -> String {
    encode(&VerificationReport {
        snapshot_id: Some("ab12cd34ef".into()),
        ok: true,
        restore_seconds: 4.5,
        check_seconds: 0.5,
        checked: vec!["2 files: content matches the snapshot".into()],
        failures: Vec::new(),
        failures_total: 0,
        files: 2,
        bytes: 4096,
        tables: 0,
        packs: None,
    })
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn the_users_command_runs_after_the_agent_over_the_files_and_its_exit_code_decides() {
    let env = TestEnv::start("hort-verify-cmd", Clock::System).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let verifications: Api<Verification> = env.api();
    let pods: Api<Pod> = env.api();
    ready_s3_group(&client, &ns).await;
    let with_command = |name: &str, script: &str, timeout: Option<i64>| {
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "Verification", "metadata": {"name": name},
            "spec": {"storageGroupRef": {"name": "s3"}, "source": {"snapshotId": "ab12cd34"},
                     "volume": {"size": "1Gi", "command": {"image": "hort.local/busybox:stable",
                                "command": ["sh", "-c", script], "timeoutSeconds": timeout}}}
        })
    };

    // The API server takes the pod: the agent an init container, the command the container,
    // the restored files read-only at /restore.
    create(&verifications, with_command("good", "test -f /restore/app.db", None)).await;
    let pod = wait_for_pod(&pods, "good-verify").await;
    let spec = pod.spec.clone().unwrap();
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init[0].name, "agent");
    assert_eq!(
        init[0].args.as_deref().unwrap(),
        ["verify-restore", "ab12cd34", "--scratch", "/scratch/restore", "--keep"]
    );
    let command = &spec.containers[0];
    assert_eq!(command.name, "command");
    assert_eq!(command.args, None);
    let files = &command.volume_mounts.as_ref().unwrap()[0];
    assert_eq!((files.mount_path.as_str(), files.read_only), ("/restore", Some(true)));
    assert!(command.env.iter().flatten().all(|e| e.value_from.is_none()));
    wait_for(&verifications, "good", "Running", |v| {
        v.status
            .as_ref()
            .and_then(|s| s.message.as_deref())
            .is_some_and(|m| m.ends_with("then runs the command of image hort.local/busybox:stable"))
    })
    .await;

    // The agent passed, the command exited 0: Succeeded, the command among the checks.
    end_with_command(
        &pods,
        "good-verify",
        "Succeeded",
        0,
        &files_ok(),
        json!({"terminated": {"exitCode": 0}}),
    )
    .await;
    wait_for(&verifications, "good", "Succeeded", |v| phase(v) == Phase::Succeeded).await;
    let status = verifications.get("good").await.unwrap().status.unwrap();
    assert_eq!(
        status.checked,
        [
            "2 files: content matches the snapshot",
            "command hort.local/busybox:stable: exit 0"
        ]
    );
    assert_eq!(status.restore_duration_seconds, Some(4.5));
    wait_for_event(&client, &ns, "good", "Verified").await;
    wait_gone(&pods, "good-verify", "the agent pod").await;

    // The command exited 3: Failed, naming the command, with its exit code and output.
    create(&verifications, with_command("bad", "test -f /restore/missing", None)).await;
    wait_for_pod(&pods, "bad-verify").await;
    // Longer than an Event's note may be: the status keeps 2048 bytes, the Event its ends.
    let long = format!("{}\nchecking /restore\n/restore/missing: not found\n", "-".repeat(3000));
    let output = json!({"terminated": {"exitCode": 3, "message": long}});
    end_with_command(&pods, "bad-verify", "Failed", 0, &files_ok(), output).await;
    wait_for(&verifications, "bad", "Failed", |v| phase(v) == Phase::Failed).await;
    let status = verifications.get("bad").await.unwrap().status.unwrap();
    assert_eq!(status.failures_total, 1);
    assert_eq!(status.failures[0].subject, "command hort.local/busybox:stable");
    let detail = &status.failures[0].detail;
    assert!(detail.starts_with("exit code 3; output ends: ---"), "{detail}");
    assert!(
        detail.ends_with("---\nchecking /restore\n/restore/missing: not found"),
        "{detail}"
    );
    assert_eq!(detail.len(), "exit code 3; output ends: ".len() + 2048);
    let notes = wait_for_event(&client, &ns, "bad", "CheckFailed").await;
    assert!(
        notes[0].contains("command hort.local/busybox:stable: exit code 3"),
        "{notes:?}"
    );
    assert!(notes[0].ends_with("/restore/missing: not found"), "{notes:?}");
    wait_gone(&pods, "bad-verify", "the agent pod").await;

    // A command still running at its timeout fails the run, and its pod is removed.
    create(&verifications, with_command("slow", "sleep 3600", Some(2))).await;
    wait_for_pod(&pods, "slow-verify").await;
    let running = json!({"running": {"startedAt": Timestamp::now().to_string()}});
    end_with_command(&pods, "slow-verify", "Running", 0, &files_ok(), running).await;
    wait_for(&verifications, "slow", "Failed at the timeout", |v| {
        phase(v) == Phase::Failed
    })
    .await;
    let status = verifications.get("slow").await.unwrap().status.unwrap();
    assert!(
        status.failures[0]
            .detail
            .starts_with("did not end within timeoutSeconds (2s)"),
        "{:?}",
        status.failures
    );
    wait_gone(&pods, "slow-verify", "the agent pod").await;

    env.stop().await;
}

/// Triggers a reconcile of the schedule (the manual clock moving is not an event).
async fn poke(schedules: &Api<Schedule>, name: &str, n: u32) {
    let patch = json!({"metadata": {"annotations": {"hort.dev/test-poke": n.to_string()}}});
    schedules
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_schedule_creates_verifications_on_its_own_cron_and_records_the_newest() {
    let clock = Clock::manual(Timestamp::now());
    let env = TestEnv::start("hort-verify-sched", clock.clone()).await;
    let ns = env.ns.clone();
    let client = client().await;
    let schedules: Api<Schedule> = env.api();
    let verifications: Api<Verification> = Api::namespaced(client.clone(), &ns);

    let created = create(
        &schedules,
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "0 0 1 1 *",
                "jobTemplate": {"spec": {"storageGroupRef": {"name": "s3"}, "activeDeadlineSeconds": 900,
                                         "source": {"mariadb": {"host": "db", "credentialsSecretRef": {"name": "db"}}}}},
                "verification": {"schedule": "*/5 * * * *", "historyLimit": {"successful": 1, "failed": 1}}
            }
        }),
    )
    .await;
    let created = created.metadata.creation_timestamp.unwrap().0;
    clock.set(created);
    let cron = CronSchedule::parse("*/5 * * * *", None).unwrap();
    let first = cron.next_after(created).unwrap();
    let second = cron.next_after(first).unwrap();
    wait_for(&schedules, "nightly", "nextVerificationTime", |s| {
        s.status
            .as_ref()
            .and_then(|s| s.verification_runs.next_verification_time.as_ref())
            .map(|t| t.0)
            == Some(first)
    })
    .await;
    assert!(verifications.list(&Default::default()).await.unwrap().items.is_empty());

    // Due: one Verification, named after the time, of the source's kind, owned and labelled.
    clock.set(first + SignedDuration::from_secs(10));
    poke(&schedules, "nightly", 1).await;
    let name1 = verification_plan::name("nightly", first);
    wait_for(&verifications, &name1, "the first Verification", |_| true).await;
    wait_for_event(&client, &ns, "nightly", "VerificationCreated").await;
    let v = verifications.get(&name1).await.unwrap();
    assert_eq!(v.labels()["hort.dev/schedule"], "nightly");
    assert_eq!(v.owner_references()[0].kind, "Schedule");
    assert_eq!(
        v.spec.database.as_ref().map(|d| d.kind),
        Some(hort_crds::verification::DatabaseKind::Mariadb)
    );
    assert_eq!(
        v.spec.source.unwrap().tags,
        [format!("hort.dev/namespace={ns}"), "hort.dev/schedule=nightly".into()]
    );
    assert_eq!(v.spec.active_deadline_seconds, Some(900));

    // It succeeds: the Schedule records it and the metric shows the time.
    wait_for(&verifications, &name1, "its first status", |v| v.status.is_some()).await;
    let done = first + SignedDuration::from_secs(100);
    let finished = json!({"status": {"phase": "Succeeded", "completionTime": done.to_string(),
                                     "snapshotId": "ab12cd34", "restoreDurationSeconds": 12.0}});
    verifications
        .patch_status(&name1, &PatchParams::default(), &Patch::Merge(finished.clone()))
        .await
        .unwrap();
    poke(&schedules, "nightly", 2).await;
    wait_for(&schedules, "nightly", "lastVerification Succeeded", |s| {
        s.status
            .as_ref()
            .and_then(|s| s.verification_runs.last_verification.as_ref())
            .is_some_and(|r| {
                r.name == name1 && r.result == Phase::Succeeded && r.restore_duration_seconds == Some(12.0)
            })
    })
    .await;
    let expected = format!(
        r#"hort_last_verified_timestamp_seconds{{namespace="{ns}",schedule="nightly"}} {}"#,
        done.as_second()
    );
    metrics_showing(&env.metrics, &[expected]).await;

    // The next run: a second Verification; once it finished too, the first is beyond the
    // history (one success kept) and deleted.
    clock.set(second + SignedDuration::from_secs(10));
    poke(&schedules, "nightly", 3).await;
    let name2 = verification_plan::name("nightly", second);
    wait_for(&verifications, &name2, "the second Verification", |_| true).await;
    wait_for(&verifications, &name2, "its first status", |v| v.status.is_some()).await;
    verifications
        .patch_status(&name2, &PatchParams::default(), &Patch::Merge(finished))
        .await
        .unwrap();
    poke(&schedules, "nightly", 4).await;
    wait_gone(&verifications, &name1, "the older Verification").await;

    env.stop().await;
}

/// The agent's report of a repository `verify`: 412 of 4120 packs (1 GiB) read in 12
/// snapshots, with `failures`.
fn repository_report(failures: &[(&str, &str)]) -> String {
    VerificationReport {
        snapshot_id: None,
        restore_seconds: 0.0,
        checked: vec![
            "snapshots: 12 walked, every tree and content blob indexed, every indexed pack present".into(),
            "packs: 412 of 4120 read (10%, 1.0 GiB), 9000 blobs decrypted and hashed".into(),
        ],
        files: 0,
        bytes: 0,
        tables: 0,
        packs: Some(PacksRead {
            snapshots: 12,
            stored: 4120,
            read: 412,
            bytes_read: 1 << 30,
        }),
        ..agent_report(failures)
    }
    .encode_within_limit()
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_repository_verification_succeeds_on_a_clean_report_and_fails_naming_the_damaged_pack() {
    let env = TestEnv::start("hort-verify-repo", Clock::System).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let verifications: Api<Verification> = env.api();
    let pods: Api<Pod> = env.api();
    ready_s3_group(&client, &ns).await;

    let repository = |name: &str, percent: u8| {
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "Verification", "metadata": {"name": name},
            "spec": {"storageGroupRef": {"name": "s3"}, "repository": {"readDataPercent": percent}}
        })
    };
    // A share: `verify --read-data-subset`, in a pod with the group's access and nothing else.
    create(&verifications, repository("sample", 10)).await;
    let pod = wait_for_pod(&pods, "sample-verify").await;
    let spec = pod.spec.clone().unwrap();
    assert_eq!(
        spec.containers[0].args.as_deref().unwrap(),
        ["verify", "--read-data-subset", "10%"]
    );
    assert!(spec.init_containers.is_none(), "no database server");
    assert!(
        spec.volumes.iter().flatten().all(|v| v.ephemeral.is_none()),
        "no scratch claim"
    );
    wait_for(&verifications, "sample", "Running", |v| phase(v) == Phase::Running).await;
    let started = wait_for_event(&client, &ns, "sample", "VerificationStarted").await;
    assert!(started[0].contains("reads 10% of its packs"), "{started:?}");
    let status = verifications.get("sample").await.unwrap().status.unwrap();
    assert!(
        status.conditions.iter().all(|c| c.type_ != "SnapshotResolved"),
        "no snapshot to resolve: {:?}",
        status.conditions
    );

    // Nothing damaged: Succeeded, what was read in status, the group's metric.
    finish_pod(&pods, "sample-verify", 0, &repository_report(&[])).await;
    wait_for(&verifications, "sample", "Succeeded", |v| phase(v) == Phase::Succeeded).await;
    let status = verifications.get("sample").await.unwrap().status.unwrap();
    assert_eq!(
        status.message.as_deref(),
        Some("repository verified: 412 of 4120 packs read (1.0 GiB) in 12 snapshots, nothing damaged")
    );
    let read = status.repository.unwrap();
    assert_eq!(
        (read.packs_read, read.packs_stored, read.bytes_read),
        (412, 4120, 1 << 30)
    );
    assert_eq!(status.checked.len(), 2);
    assert_eq!((status.restore_duration_seconds, status.snapshot_id), (None, None));
    wait_for_event(&client, &ns, "sample", "Verified").await;
    let expected = [
        format!(r#"hort_verify_total{{namespace="{ns}",result="succeeded"}} 1"#),
        format!(r#"hort_last_repository_verified_timestamp_seconds{{namespace="{ns}",storage_group="s3"}} "#),
    ];
    let text = metrics_showing(&env.metrics, &expected).await;
    for absent in [
        "hort_restore_duration_seconds_count",
        "hort_last_verified_timestamp_seconds{",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(absent) && l.contains(&ns)),
            "a repository verification restores nothing and proves no schedule: {absent} in\n{text}"
        );
    }
    wait_gone(&pods, "sample-verify", "the agent pod").await;

    // Every pack (`--read-data`), one damaged: Failed, naming the pack and the file it held.
    create(&verifications, repository("all", 100)).await;
    let pod = wait_for_pod(&pods, "all-verify").await;
    assert_eq!(
        pod.spec.unwrap().containers[0].args.as_deref().unwrap(),
        ["verify", "--read-data"]
    );
    let pack = format!("pack {}", "9f".repeat(32));
    let file_detail = format!("damaged ({pack})");
    let failures = [
        (pack.as_str(), "damaged: content does not match its name"),
        ("snapshot 1a2b3c4d: file /data/orders.csv", file_detail.as_str()),
    ];
    finish_pod(&pods, "all-verify", 4, &repository_report(&failures)).await;
    wait_for(&verifications, "all", "Failed", |v| phase(v) == Phase::Failed).await;
    let status = verifications.get("all").await.unwrap().status.unwrap();
    assert_eq!(status.failures_total, 2);
    assert_eq!(status.failures[0].subject, pack);
    assert_eq!(status.failures[1].subject, "snapshot 1a2b3c4d: file /data/orders.csv");
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with(&format!("repository damaged: {pack}: damaged"))),
        "{:?}",
        status.message
    );
    let notes = wait_for_event(&client, &ns, "all", "CheckFailed").await;
    assert!(notes[0].contains(&pack), "{notes:?}");
    let failed = format!(r#"hort_verify_total{{namespace="{ns}",result="failed"}} 1"#);
    metrics_showing(&env.metrics, &[failed]).await;
    wait_gone(&pods, "all-verify", "the agent pod").await;

    env.stop().await;
}

/// Triggers a reconcile of the group (the manual clock moving is not an event).
async fn poke_group(groups: &Api<StorageGroup>, n: u32) {
    let patch = json!({"metadata": {"annotations": {"hort.dev/test-poke": n.to_string()}}});
    groups
        .patch("s3", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

/// The group's condition `VerificationScheduled`, once it has one.
fn scheduled_condition(g: &StorageGroup) -> Option<(String, String, String)> {
    let c = g
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "VerificationScheduled")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_storage_group_verifies_its_repository_on_its_own_cron_and_records_the_newest() {
    let clock = Clock::manual(Timestamp::now());
    let env = TestEnv::start("hort-verify-group", clock.clone()).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let groups: Api<StorageGroup> = env.api();
    let verifications: Api<Verification> = env.api();
    let pods: Api<Pod> = env.api();
    ready_s3_group(&client, &ns).await;

    // A time zone the operator does not know: named in the condition, nothing scheduled.
    let policy = |zone: &str| {
        json!({"spec": {"verification": {"schedule": "*/5 * * * *", "timeZone": zone, "readDataPercent": 25,
                                          "historyLimit": {"successful": 1, "failed": 1}}}})
    };
    groups
        .patch("s3", &PatchParams::default(), &Patch::Merge(policy("Mars/Olympus")))
        .await
        .unwrap();
    wait_for(&groups, "s3", "VerificationScheduled False", |g| {
        scheduled_condition(g).is_some_and(|(status, reason, message)| {
            status == "False" && reason == "InvalidSchedule" && message.contains("spec.verification.timeZone")
        })
    })
    .await;
    wait_for_event(&client, &ns, "s3", "InvalidSchedule").await;

    let created = groups.get("s3").await.unwrap().metadata.creation_timestamp.unwrap().0;
    clock.set(created);
    groups
        .patch("s3", &PatchParams::default(), &Patch::Merge(policy("UTC")))
        .await
        .unwrap();
    let cron = CronSchedule::parse("*/5 * * * *", None).unwrap();
    let first = cron.next_after(created).unwrap();
    let second = cron.next_after(first).unwrap();
    wait_for(&groups, "s3", "nextVerificationTime", |g| {
        g.status
            .as_ref()
            .and_then(|s| s.verification_runs.next_verification_time.as_ref())
            .map(|t| t.0)
            == Some(first)
            && scheduled_condition(g).is_some_and(|(status, _, _)| status == "True")
    })
    .await;
    assert!(verifications.list(&Default::default()).await.unwrap().items.is_empty());

    // Due: a Verification of the repository, named after the time, owned and labelled.
    clock.set(first + SignedDuration::from_secs(10));
    poke_group(&groups, 1).await;
    let name1 = verification_plan::name("s3", first);
    wait_for(&verifications, &name1, "the first Verification", |_| true).await;
    let notes = wait_for_event(&client, &ns, "s3", "VerificationCreated").await;
    assert!(notes[0].contains(&name1), "{notes:?}");
    let v = verifications.get(&name1).await.unwrap();
    assert_eq!(v.labels()["hort.dev/storage-group"], "s3");
    assert_eq!(
        (
            v.owner_references()[0].kind.as_str(),
            v.owner_references()[0].name.as_str()
        ),
        ("StorageGroup", "s3")
    );
    assert_eq!(v.spec.repository.as_ref().map(|r| r.read_data_percent), Some(25));
    assert!(v.spec.source.is_none() && v.spec.database.is_none() && v.spec.volume.is_none());

    // Its agent pod runs and finds nothing damaged: the group records it and the metric.
    let pod_name = format!("{name1}-verify");
    let pod = wait_for_pod(&pods, &pod_name).await;
    assert_eq!(pod.labels()["hort.dev/storage-group"], "s3");
    finish_pod(&pods, &pod_name, 0, &repository_report(&[])).await;
    wait_for(&groups, "s3", "lastVerification Succeeded", |g| {
        g.status.as_ref().is_some_and(|s| {
            s.verification_runs
                .last_verification
                .as_ref()
                .is_some_and(|r| r.name == name1 && r.result == Phase::Succeeded)
                && s.verification_runs.last_successful_verification_time.is_some()
        })
    })
    .await;
    let expected = format!(
        r#"hort_last_repository_verified_timestamp_seconds{{namespace="{ns}",storage_group="s3"}} {}"#,
        (first + SignedDuration::from_secs(10)).as_second()
    );
    metrics_showing(&env.metrics, &[expected]).await;

    // The next run: a second Verification; once it failed, the first (one success kept) stays
    // and the second is the newest; a third success pushes the first out.
    clock.set(second + SignedDuration::from_secs(10));
    poke_group(&groups, 2).await;
    let name2 = verification_plan::name("s3", second);
    wait_for(&verifications, &name2, "the second Verification", |_| true).await;
    let pod_name = format!("{name2}-verify");
    wait_for_pod(&pods, &pod_name).await;
    finish_pod(&pods, &pod_name, 4, &repository_report(&[("pack 00ff", "missing")])).await;
    wait_for(&groups, "s3", "lastVerification Failed", |g| {
        g.status
            .as_ref()
            .and_then(|s| s.verification_runs.last_verification.as_ref())
            .is_some_and(|r| r.name == name2 && r.result == Phase::Failed)
    })
    .await;
    let third = cron.next_after(second).unwrap();
    clock.set(third + SignedDuration::from_secs(10));
    poke_group(&groups, 3).await;
    let name3 = verification_plan::name("s3", third);
    let pod_name = format!("{name3}-verify");
    wait_for_pod(&pods, &pod_name).await;
    finish_pod(&pods, &pod_name, 0, &repository_report(&[])).await;
    wait_for(&verifications, &name3, "the third to succeed", |v| {
        phase(v) == Phase::Succeeded
    })
    .await;
    poke_group(&groups, 4).await;
    wait_gone(&verifications, &name1, "the older success").await;
    assert!(
        verifications.get_opt(&name2).await.unwrap().is_some(),
        "one failure is kept"
    );

    env.stop().await;
}
