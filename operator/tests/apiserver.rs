//! The controllers against a real kube-apiserver: a StorageGroup reports exactly which
//! references are missing and recovers when they appear; a BackupJob waits for its group and
//! says why. Run through `scripts/test.sh`, which starts the API server.

use std::time::Duration;

use hort_crds::common::Phase;
use hort_crds::restore_request::TargetKind;
use hort_crds::{BackupJob, RestoreRequest, Schedule, StorageGroup};
use hort_operator::clock::Clock;
use hort_operator::leader::{Attempt, LeaderElector, LeaseConfig};
use hort_operator::schedule_plan::{CronSchedule, job_name};
use hort_protocol::report::encode;
use hort_protocol::{BackupReport, CheckReport, ForgetReport, RestoreReport, TargetReport};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

mod metrics_wait;
mod pod_gates;
mod support;
use metrics_wait::metrics_showing;
use pod_gates::gates;
use support::{
    TestEnv, WAIT, client, create, finish_pod, healthy_check, ready_s3_group, unfinished_check_pod, usable_claim,
    wait_for, wait_for_check_pods, wait_for_event,
};

fn condition<'a>(
    conditions: Option<&'a Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.and_then(|c| c.iter().find(|c| c.type_ == type_))
}

/// What an agent reports for a target.
fn target(reachable: bool, writable: bool, error: Option<&str>) -> TargetReport {
    TargetReport {
        reachable,
        writable,
        error: error.map(str::to_owned),
        ..TargetReport::default()
    }
}

/// An agent's backup report (as the agent encodes it) of snapshot `id`.
fn backup_report(id: &str, bytes_read: u64, bytes_new: u64, bytes_stored: u64, files: u64) -> String {
    encode(&BackupReport {
        snapshot_id: id.into(),
        bytes_read,
        bytes_new,
        bytes_stored,
        files,
        duration_seconds: 2.5,
        targets_behind: Vec::new(),
        catalog_error: None,
    })
}

/// The names of the check pods in the namespace, waiting until there are `count`.
fn group_ready(group: &StorageGroup) -> Option<(String, String, String)> {
    let c = condition(group.status.as_ref().map(|s| &s.conditions), "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn storage_group_and_backup_job_report_what_they_wait_for() {
    let env = TestEnv::start("hort-operator", Clock::System).await;
    let (client, ns, metrics) = (env.client.clone(), env.ns.clone(), env.metrics.clone());
    let groups: Api<StorageGroup> = env.api();
    let secrets: Api<Secret> = env.api();
    let claims: Api<PersistentVolumeClaim> = env.api();
    let jobs: Api<BackupJob> = env.api();

    create(
        &groups,
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup",
            "metadata": {"name": "mirrored"},
            "spec": {
                "strategy": "Mirror",
                "targets": [
                    {"name": "s3", "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "backups",
                                          "credentialsSecretRef": {"name": "sg-s3"}}},
                    {"name": "disk", "pvc": {"claimName": "sg-disk"}}
                ],
                "encryption": {"keySecretRef": {"name": "sg-key"}},
                "agent": {"nodeSelector": {"hort.dev/test": "checks"}}
            }
        }),
    )
    .await;

    // Every missing reference is named with the field that refers to it.
    wait_for(
        &groups,
        "mirrored",
        "Ready=False naming all three missing references",
        |g| {
            group_ready(g).is_some_and(|(status, reason, message)| {
                status == "False"
                    && reason == "ReferenceNotFound"
                    && message.contains(r#"Secret "sg-key" (spec.encryption.keySecretRef) not found"#)
                    && message.contains(r#"Secret "sg-s3" (spec.targets[0].s3.credentialsSecretRef) not found"#)
                    && message.contains(r#"PersistentVolumeClaim "sg-disk" (spec.targets[1].pvc.claimName) not found"#)
            })
        },
    )
    .await;
    assert_eq!(
        groups.get("mirrored").await.unwrap().status.unwrap().target_count,
        Some(2)
    );

    // A BackupJob of a missing group, and one of the not-ready group, say so.
    let job = |name: &str, group: &str| {
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
            "metadata": {"name": name},
            "spec": {"storageGroupRef": {"name": group},
                     "source": {"postgres": {"host": "db", "credentialsSecretRef": {"name": "db"}}}}
        })
    };
    create(&jobs, job("orphan", "nowhere")).await;
    create(&jobs, job("waiting", "mirrored")).await;
    wait_for(&jobs, "orphan", "StorageGroupReady=False StorageGroupNotFound", |j| {
        let status = j.status.as_ref();
        condition(status.map(|s| &s.conditions), "StorageGroupReady").is_some_and(|c| {
            c.status == "False"
                && c.reason == "StorageGroupNotFound"
                && c.message
                    .contains(r#"StorageGroup "nowhere" (spec.storageGroupRef) not found"#)
        }) && status.is_some_and(|s| s.source_kind == Some(hort_crds::backup_job::SourceKind::Postgres))
    })
    .await;
    wait_for(&jobs, "waiting", "StorageGroupReady=False StorageGroupNotReady", |j| {
        condition(j.status.as_ref().map(|s| &s.conditions), "StorageGroupReady")
            .is_some_and(|c| c.reason == "StorageGroupNotReady" && c.message.contains("sg-key"))
    })
    .await;

    // A Secret its owner has not marked usable is not used, whatever it holds.
    create(
        &secrets,
        json!({"metadata": {"name": "sg-s3"}, "stringData": {"AWS_ACCESS_KEY_ID": "id"}}),
    )
    .await;
    wait_for(&groups, "mirrored", "the unmarked Secret to be refused", |g| {
        group_ready(g).is_some_and(|(status, reason, message)| {
            status == "False"
                && reason == "ReferenceNotUsable"
                && message.contains(
                    r#"Secret "sg-s3" (spec.targets[0].s3.credentialsSecretRef) is not marked for use by Hort; its owner allows it with `kubectl label secret sg-s3 hort.dev/usable=true`"#,
                )
        })
    })
    .await;

    // A marked Secret without one of the keys is named with the key; Secret values are never
    // needed.
    secrets
        .patch(
            "sg-s3",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"hort.dev/usable": "true"}}})),
        )
        .await
        .unwrap();
    wait_for(&groups, "mirrored", "the missing key to be named", |g| {
        group_ready(g).is_some_and(|(_, _, message)| {
            message.contains(
                r#"Secret "sg-s3" (spec.targets[0].s3.credentialsSecretRef) has no key "AWS_SECRET_ACCESS_KEY""#,
            ) && !message.contains(r#"Secret "sg-s3" (spec.targets[0].s3.credentialsSecretRef) not found"#)
        })
    })
    .await;

    // Once every reference resolves, the group waits for its target checks.
    secrets
        .patch(
            "sg-s3",
            &PatchParams::apply("hort-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "sg-s3", "labels": {"hort.dev/usable": "true"}},
                       "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}})),
        )
        .await
        .unwrap();
    create(
        &secrets,
        json!({"metadata": {"name": "sg-key", "labels": {"hort.dev/usable": "true"}}, "stringData": {"password": "pw"}}),
    )
    .await;
    create(
        &claims,
        json!({"metadata": {"name": "sg-disk", "labels": {"hort.dev/usable": "true"}},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    wait_for(&groups, "mirrored", "Ready=Unknown CheckRunning", |g| {
        group_ready(g).is_some_and(|(status, reason, _)| status == "Unknown" && reason == "CheckRunning")
    })
    .await;

    // The check pod reaches the repository through Secret references, never Secret values.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let check = wait_for_check_pods(&pods, 1).await.remove(0);
    let container = &check.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        container.args.as_deref(),
        Some(&["check".to_string(), "--init".to_string()][..])
    );
    assert_eq!(
        check.spec.as_ref().unwrap().node_selector,
        Some([("hort.dev/test".to_string(), "checks".to_string())].into()),
        "spec.agent applies to check pods"
    );
    let pod_env = container.env.as_ref().unwrap();
    let password = pod_env.iter().find(|e| e.name == "HORT_PASSWORD").unwrap();
    assert!(password.value.is_none());
    assert_eq!(
        password
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "sg-key"
    );
    let repository = pod_env.iter().find(|e| e.name == "HORT_REPOSITORY").unwrap();
    assert!(
        repository.value.as_deref().unwrap().ends_with(",/targets/disk"),
        "{repository:?}"
    );
    assert_eq!(check.owner_references()[0].name, "mirrored");

    // The agent found the S3 target unreachable and the disk fine: Mirror keeps working.
    let report = encode(&CheckReport {
        repository_id: Some("9f1c".into()),
        created: true,
        targets: vec![
            target(false, false, Some("connection refused")),
            TargetReport {
                bytes_used: Some(4096),
                bytes_free: Some(1073741824),
                ..target(true, true, None)
            },
        ],
        error: None,
        key_rotation: None,
        snapshots: None,
    });
    finish_pod(&pods, &check.name_any(), 0, &report).await;
    wait_for(&groups, "mirrored", "Ready=True Degraded from the check", |g| {
        group_ready(g).is_some_and(|(status, reason, message)| {
            status == "True" && reason == "Degraded" && message.contains(r#"target "s3": connection refused"#)
        })
    })
    .await;
    let status = groups.get("mirrored").await.unwrap().status.unwrap();
    assert_eq!(status.repository_id.as_deref(), Some("9f1c"));
    assert_eq!(status.used_size.as_deref(), Some("4.0 KiB"));
    assert!(!status.targets[0].reachable && status.targets[1].writable);
    wait_for(&jobs, "waiting", "the job to see the group Ready", |j| {
        condition(j.status.as_ref().map(|s| &s.conditions), "StorageGroupReady").is_some_and(|c| c.status == "True")
    })
    .await;

    // A new generation is checked again; a failing check names what the agent said.
    groups
        .patch(
            "mirrored",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"checkIntervalSeconds": 600}})),
        )
        .await
        .unwrap();
    let second = wait_for_check_pods(&pods, 2)
        .await
        .into_iter()
        .find(|p| p.name_any() != check.name_any())
        .unwrap();
    assert_eq!(
        second.spec.as_ref().unwrap().containers[0].args.as_deref(),
        Some(&["check", "--resync", "--repository-id", "9f1c"].map(String::from)[..]),
        "a group that recorded its repository never asks for another to be created; a Mirror group is brought level"
    );
    finish_pod(&pods, &second.name_any(), 3, "error: the password opens no key file").await;
    wait_for(&groups, "mirrored", "Ready=False CheckFailed", |g| {
        group_ready(g).is_some_and(|(status, reason, message)| {
            status == "False" && reason == "CheckFailed" && message.contains("the password opens no key file")
        })
    })
    .await;
    wait_for_event(&client, &ns, "mirrored", "CheckFailed").await;

    // A check that fails but still reports its targets (the agent could not open the
    // repository on any of them) names each target's error.
    groups
        .patch(
            "mirrored",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"checkIntervalSeconds": 900}})),
        )
        .await
        .unwrap();
    let third = unfinished_check_pod(&pods).await;
    let report = encode(&CheckReport {
        repository_id: None,
        created: false,
        targets: vec![
            target(true, false, Some("s3://backups/hort: 403 SignatureDoesNotMatch")),
            target(false, false, Some("/targets/disk: permission denied")),
        ],
        error: Some("no target holds a readable repository".into()),
        key_rotation: None,
        snapshots: None,
    });
    finish_pod(&pods, &third.name_any(), 1, &report).await;
    wait_for(&groups, "mirrored", "Ready=False naming each target", |g| {
        group_ready(g).is_some_and(|(status, reason, message)| {
            status == "False"
                && reason == "TargetsUnhealthy"
                && message.contains(r#"target "s3": s3://backups/hort: 403 SignatureDoesNotMatch"#)
                && message.contains(r#"target "disk": /targets/disk: permission denied"#)
        })
    })
    .await;

    // A check that finds another repository than the recorded one never replaces it.
    groups
        .patch(
            "mirrored",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"checkIntervalSeconds": 1200}})),
        )
        .await
        .unwrap();
    let fourth = unfinished_check_pod(&pods).await;
    let report = encode(&CheckReport {
        repository_id: Some("77aa".into()),
        created: false,
        targets: vec![target(true, true, None), target(true, true, None)],
        error: None,
        key_rotation: None,
        snapshots: None,
    });
    finish_pod(&pods, &fourth.name_any(), 0, &report).await;
    wait_for(&groups, "mirrored", "Ready=False RepositoryChanged", |g| {
        group_ready(g).is_some_and(|(status, reason, message)| {
            status == "False" && reason == "RepositoryChanged" && message.contains("77aa") && message.contains("9f1c")
        })
    })
    .await;
    let status = groups.get("mirrored").await.unwrap().status.unwrap();
    assert_eq!(status.repository_id.as_deref(), Some("9f1c"));

    // A RestoreRequest of the waiting job waits for its snapshot, then resolves it.
    let restores: Api<RestoreRequest> = Api::namespaced(client.clone(), &ns);
    create(
        &restores,
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "RestoreRequest",
            "metadata": {"name": "restore-waiting"},
            "spec": {"storageGroupRef": {"name": "mirrored"},
                     "source": {"backupJobRef": {"name": "waiting"}},
                     "target": {"postgres": {"host": "db", "credentialsSecretRef": {"name": "db"},
                                             "databases": [{"from": "app", "to": "app_copy"}]}}}
        }),
    )
    .await;
    let resolved = |r: &RestoreRequest| {
        let status = r.status.as_ref();
        condition(status.map(|s| &s.conditions), "SnapshotResolved").map(|c| (c.reason.clone(), c.message.clone()))
    };
    wait_for(
        &restores,
        "restore-waiting",
        "SnapshotResolved=False BackupJobNotFinished",
        |r| {
            resolved(r)
                .is_some_and(|(reason, message)| reason == "BackupJobNotFinished" && message.contains("\"waiting\""))
        },
    )
    .await;
    jobs.patch_status(
        "waiting",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded", "snapshotId": "5eed5eed5eed"}})),
    )
    .await
    .unwrap();
    wait_for(&restores, "restore-waiting", "the snapshot of the finished job", |r| {
        r.status.as_ref().and_then(|s| s.snapshot_id.as_deref()) == Some("5eed5eed5eed")
            && resolved(r).is_some_and(|(reason, _)| reason == "FromBackupJob")
            && r.status.as_ref().and_then(|s| s.target_kind) == Some(TargetKind::Postgres)
    })
    .await;

    let text = metrics_showing(
        &metrics,
        &[
            format!(r#"hort_storage_group_ready{{namespace="{ns}",storage_group="mirrored"}} 0"#),
            r#"hort_reconcile_total{kind="StorageGroup",result="success"}"#.to_string(),
        ],
    )
    .await;
    assert!(
        !text.contains("pw") && !text.contains("secret\""),
        "metrics must not carry Secret values"
    );

    env.stop().await;
}

fn schedule_ready_message(s: &Schedule) -> String {
    condition(s.status.as_ref().map(|s| &s.conditions), "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Triggers a reconcile of the schedule (the manual clock moving is not an event).
async fn poke(schedules: &Api<Schedule>, name: &str, n: u32) {
    schedules
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"hort.dev/test-poke": n.to_string()}}})),
        )
        .await
        .unwrap();
}

async fn finish(jobs: &Api<BackupJob>, name: &str, at: Timestamp) {
    // Let the BackupJob reconciler settle first, so it does not overwrite the phase set here.
    wait_for(jobs, name, "the job's first status", |j| j.status.is_some()).await;
    jobs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded", "completionTime": at.to_string()}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn schedule_creates_jobs_on_its_cron_with_an_injected_clock() {
    let clock = Clock::manual(Timestamp::now());
    let env = TestEnv::start("hort-schedule", clock.clone()).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), &ns);

    let created = create(
        &schedules,
        json!({
            "apiVersion": "hort.dev/v1alpha1", "kind": "Schedule",
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "*/5 * * * *",
                "historyLimit": {"successful": 1, "failed": 1},
                "jobTemplate": {
                    "metadata": {"labels": {"app": "db"}, "annotations": {"team": "payments"}},
                    "spec": {"storageGroupRef": {"name": "s3"},
                             "source": {"volume": {"claimName": "data", "snapshot": "None"}}}
                }
            }
        }),
    )
    .await;
    let created = created.metadata.creation_timestamp.unwrap().0;
    clock.set(created);
    let cron = CronSchedule::parse("*/5 * * * *", None).unwrap();
    let first = cron.next_after(created).unwrap();
    let second = cron.next_after(first).unwrap();
    let third = cron.next_after(second).unwrap();

    // Before the first time: nothing is created, and the next time is shown.
    wait_for(&schedules, "nightly", "nextScheduleTime", |s| {
        s.status
            .as_ref()
            .and_then(|s| s.next_schedule_time.as_ref())
            .map(|t| t.0)
            == Some(first)
    })
    .await;
    assert!(jobs.list(&Default::default()).await.unwrap().items.is_empty());

    // At the first time, one job, named after the time, carrying the template's labels.
    clock.set(first + SignedDuration::from_secs(10));
    poke(&schedules, "nightly", 1).await;
    let job1 = job_name("nightly", first);
    wait_for(&jobs, &job1, "the first BackupJob", |_| true).await;
    wait_for_event(&client, &ns, "nightly", "BackupJobCreated").await;
    let j = jobs.get(&job1).await.unwrap();
    assert_eq!(j.labels().get("app").map(String::as_str), Some("db"));
    assert_eq!(j.annotations().get("team").map(String::as_str), Some("payments"));
    assert_eq!(j.labels().get("hort.dev/schedule").map(String::as_str), Some("nightly"));
    wait_for(&schedules, "nightly", "lastScheduleTime and active", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.last_schedule_time.as_ref().map(|t| t.0) == Some(first)
                && st.active.iter().any(|a| a.name == job1)
                && st.next_schedule_time.as_ref().map(|t| t.0) == Some(second)
        })
    })
    .await;

    // At the second time the first job still runs: Forbid makes the run wait.
    clock.set(second + SignedDuration::from_secs(10));
    poke(&schedules, "nightly", 2).await;
    wait_for(&schedules, "nightly", "the Forbid wait to be reported", |s| {
        schedule_ready_message(s).contains("waits: concurrencyPolicy Forbid")
    })
    .await;
    assert_eq!(jobs.list(&Default::default()).await.unwrap().items.len(), 1);
    wait_for_event(&client, &ns, "nightly", "WaitingForActiveJob").await;

    // The first job finishes: the waiting run starts, and the success time is recorded.
    finish(&jobs, &job1, second).await;
    let job2 = job_name("nightly", second);
    wait_for(&jobs, &job2, "the second BackupJob after the first finished", |_| true).await;
    wait_for(&schedules, "nightly", "lastSuccessfulTime", |s| {
        s.status
            .as_ref()
            .and_then(|s| s.last_successful_time.as_ref())
            .map(|t| t.0)
            == Some(second)
    })
    .await;
    // The metrics come from the Schedule's status (as after an operator restart): a series from
    // its creation on, and its last success, which no BackupJob reconcile recorded here (the
    // test finished the job).
    metrics_showing(
        &env.metrics,
        &[
            format!(r#"hort_schedule_created_timestamp_seconds{{namespace="{ns}",schedule="nightly"}} "#),
            format!(
                r#"hort_last_successful_backup_timestamp_seconds{{namespace="{ns}",schedule="nightly"}} {}"#,
                second.as_second()
            ),
        ],
    )
    .await;

    // The second job finishes: with historyLimit.successful 1 the first job is deleted.
    finish(&jobs, &job2, second + SignedDuration::from_secs(60)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while jobs.get_opt(&job1).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{job1} was not deleted by historyLimit"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        jobs.get_opt(&job2).await.unwrap().is_some(),
        "the newest success is kept"
    );

    // Suspended: the third time passes without a job.
    schedules
        .patch(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    clock.set(third + SignedDuration::from_secs(10));
    poke(&schedules, "nightly", 3).await;
    wait_for(&schedules, "nightly", "the suspension to be reported", |s| {
        schedule_ready_message(s).starts_with("suspended")
    })
    .await;
    assert!(jobs.get_opt(&job_name("nightly", third)).await.unwrap().is_none());

    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn only_one_replica_leads_and_a_standby_takes_over() {
    let client = client().await;
    let ns = format!("hort-lease-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": ns}})).await;
    let config = |identity: &str| LeaseConfig {
        namespace: ns.clone(),
        name: "hort-operator-leader".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(300),
    };
    let a = LeaderElector::new(&client, config("replica-a"));
    let b = LeaderElector::new(&client, config("replica-b"));

    assert_eq!(a.try_acquire().await.unwrap(), Attempt::Leading);
    assert_eq!(b.try_acquire().await.unwrap(), Attempt::Following);
    assert_eq!(a.try_acquire().await.unwrap(), Attempt::Leading, "the holder renews");

    // While A keeps renewing, B never leads.
    let holding = tokio::spawn(async move { a.hold().await });
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(b.try_acquire().await.unwrap(), Attempt::Following);
    }

    // A stops renewing (its process died): B takes over once the lease has expired.
    holding.abort();
    tokio::time::timeout(Duration::from_secs(10), b.acquire())
        .await
        .expect("the standby did not take over an expired lease");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let spec = leases.get("hort-operator-leader").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));

    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn status_written_from_a_stale_read_is_refused() {
    let client = client().await;
    hort_operator::crd_install::install(&client).await.unwrap();
    let ns = format!("hort-conflict-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": ns}})).await;
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), &ns);
    let stale: BackupJob = create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "j"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}}}}),
    )
    .await;
    // Someone else records a result after our read...
    jobs.patch_status(
        "j",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded", "snapshotId": "abcdef12"}})),
    )
    .await
    .unwrap();
    // ...so our write, computed from the stale copy, must not overwrite it.
    let pending = hort_crds::BackupJobStatus::default();
    let err = hort_operator::status::apply(&client, &stale, &pending)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let now = jobs.get("j").await.unwrap().status.unwrap();
    assert_eq!(now.snapshot_id.as_deref(), Some("abcdef12"));
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn backup_job_runs_agent_pods_retries_and_records_the_snapshot() {
    let env = TestEnv::start("hort-backup", Clock::System).await;
    let (client, ns, metrics) = (env.client.clone(), env.ns.clone(), env.metrics.clone());
    let _groups: Api<StorageGroup> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    ready_s3_group(&client, &ns).await;

    // The application mounts the ReadWriteOnce volume on node-a.
    usable_claim(&client, &ns, "data").await;
    create(
        &pods,
        json!({"metadata": {"name": "app"},
               "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "app"}],
                        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}),
    )
    .await;
    pods.patch_status(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();

    // First attempt: an agent pod with the volume mounted read-only, on the app's node.
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "files"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                        "tags": ["manual"], "backoffLimit": 1}}),
    )
    .await;
    wait_for(&pods, "files-1", "the first agent pod", |_| true).await;
    let pod = pods.get("files-1").await.unwrap();
    let spec = pod.spec.unwrap();
    let args = spec.containers[0].args.clone().unwrap();
    assert_eq!(&args[..2], ["backup", "/source"]);
    assert!(args.windows(2).any(|w| w == ["--tag", "manual"]), "{args:?}");
    assert!(
        args.windows(2).any(|w| w == ["--tag", "hort.dev/backup-job=files"]),
        "{args:?}"
    );
    let node_terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|s| s.node_selector_terms.clone())
        .expect("the agent pod is pinned to the node that mounts the volume");
    assert_eq!(
        node_terms[0].match_fields.as_ref().unwrap()[0].values.as_deref(),
        Some(&["node-a".to_string()][..])
    );
    let source = spec.volumes.unwrap().into_iter().find(|v| v.name == "source").unwrap();
    assert_eq!(source.persistent_volume_claim.unwrap().read_only, Some(true));
    // It runs as the agents' own ServiceAccount, which the operator created without a token.
    assert_eq!(spec.service_account_name.as_deref(), Some("hort-agent"));
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = accounts.get("hort-agent").await.unwrap();
    assert_eq!(account.automount_service_account_token, Some(false));
    wait_for(&jobs, "files", "phase Running, saying the volume is read live", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Running
                && s.attempts == 1
                && condition(Some(&s.conditions), "VolumeSnapshot")
                    .is_some_and(|c| c.status == "False" && c.reason == "SnapshotDisabled")
        })
    })
    .await;
    wait_for_event(&client, &ns, "files", "SnapshotDisabled").await;

    // The agent dies: after the backoff a second attempt starts.
    finish_pod(&pods, "files-1", 137, "error: killed").await;
    wait_for(&pods, "files-2", "the retry's agent pod", |_| true).await;

    // The second attempt reports its snapshot.
    let report = backup_report("c0ffee00", 4000, 3000, 2000, 12);
    finish_pod(&pods, "files-2", 0, &report).await;
    wait_for(&jobs, "files", "phase Succeeded with the snapshot", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Succeeded
                && s.snapshot_id.as_deref() == Some("c0ffee00")
                && s.attempts == 2
                && s.stats
                    .as_ref()
                    .is_some_and(|st| st.dedup_ratio == 2.0 && st.files == 12)
                && condition(Some(&s.conditions), "Complete").is_some_and(|c| c.status == "True")
        })
    })
    .await;
    wait_for_event(&client, &ns, "files", "BackupSucceeded").await;

    // No retries left: the job fails and says why.
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "once"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                        "backoffLimit": 0}}),
    )
    .await;
    wait_for(&pods, "once-1", "the agent pod", |_| true).await;
    finish_pod(
        &pods,
        "once-1",
        2,
        "error: snapshot of volume data failed: no space left",
    )
    .await;
    wait_for(&jobs, "once", "phase Failed naming the agent's error", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Failed
                && s.message.as_deref().is_some_and(|m| m.contains("no space left"))
                && condition(Some(&s.conditions), "Failed").is_some_and(|c| c.reason == "BackoffLimitExceeded")
        })
    })
    .await;
    assert!(
        pods.get_opt("once-2").await.unwrap().is_none(),
        "backoffLimit 0 allows no retry"
    );

    // An agent pod deleted mid-backup (evicted, node lost) counts as a failed attempt and the
    // next attempt starts.
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "evicted"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                        "backoffLimit": 1}}),
    )
    .await;
    wait_for(&pods, "evicted-1", "the agent pod", |_| true).await;
    wait_for(&jobs, "evicted", "the attempt to be recorded", |j| {
        j.status
            .as_ref()
            .is_some_and(|s| s.agent_pod.as_deref() == Some("evicted-1"))
    })
    .await;
    pods.delete("evicted-1", &DeleteParams::default()).await.unwrap();
    wait_for(&pods, "evicted-2", "the retry after the pod vanished", |_| true).await;

    // Deleting a job with a running backup stops the backup: the finalizer deletes the agent
    // pod before the job goes.
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "doomed"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}}}}),
    )
    .await;
    wait_for(&pods, "doomed-1", "the agent pod", |_| true).await;
    wait_for(&jobs, "doomed", "the finalizer", |j| {
        j.finalizers().iter().any(|f| f == "hort.dev/agent-pods")
    })
    .await;
    jobs.delete("doomed", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while jobs.get_opt("doomed").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the deleted job is still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        pods.get_opt("doomed-1").await.unwrap().is_none(),
        "the deleted job's agent pod is gone with it"
    );

    // Restore the first job's snapshot into a claim that is created for it.
    let restores: Api<RestoreRequest> = Api::namespaced(client.clone(), &ns);
    create(
        &restores,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "RestoreRequest", "metadata": {"name": "files-back"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"backupJobRef": {"name": "files"}},
                        "target": {"volume": {"claimName": "restored", "storageClassName": "standard",
                                              "size": "1Gi", "paths": ["docs"]}}}}),
    )
    .await;
    wait_for(&pods, "files-back-restore", "the restore pod", |_| true).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claim = claims.get("restored").await.unwrap().spec.unwrap();
    assert_eq!(claim.storage_class_name.as_deref(), Some("standard"));
    assert_eq!(
        claim
            .resources
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned()),
        Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into())),
        "the claim requests spec.target.volume.size"
    );
    let args = pods.get("files-back-restore").await.unwrap().spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        args,
        [
            "restore",
            "c0ffee00",
            "--target",
            "/target",
            "--path",
            "docs",
            "--overwrite",
            "never"
        ]
    );
    let report = encode(&RestoreReport {
        snapshot_id: "c0ffee00".into(),
        bytes_restored: 1234,
        files: 3,
        skipped: 0,
        duration_seconds: 0.2,
        row_counts: Default::default(),
    });
    finish_pod(&pods, "files-back-restore", 0, &report).await;
    wait_for(&restores, "files-back", "the restore to succeed", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Succeeded
                && s.stats
                    .as_ref()
                    .is_some_and(|st| st.bytes_restored == 1234 && st.files == 3)
        })
    })
    .await;
    wait_for_event(&client, &ns, "files-back", "RestoreSucceeded").await;

    // A schedule's success triggers a prune by its retention, limited to its own snapshots.
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), &ns);
    let schedule = create(
        &schedules,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": "weekly"},
               "spec": {"schedule": "@yearly", "retention": {"keepLast": 2, "keepWeekly": 4},
                        "jobTemplate": {"spec": {"storageGroupRef": {"name": "s3"},
                                                 "source": {"volume": {"claimName": "data", "snapshot": "None"}}}}}}),
    )
    .await;
    // A job of this schedule (as the schedule would create it) succeeds.
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
               "metadata": {"name": "weekly-1", "labels": {"hort.dev/schedule": "weekly"},
                            "ownerReferences": [{"apiVersion": "hort.dev/v1alpha1", "kind": "Schedule",
                                                 "name": "weekly", "uid": schedule.uid().unwrap(),
                                                 "controller": true}]},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}}}}),
    )
    .await;
    wait_for(&pods, "weekly-1-1", "the scheduled job's agent pod", |_| true).await;
    let args = pods.get("weekly-1-1").await.unwrap().spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.windows(2).any(|w| w == ["--tag", "hort.dev/schedule=weekly"]),
        "{args:?}"
    );
    let backed_up = backup_report("5ca1ab1e", 10, 0, 0, 1);
    finish_pod(&pods, "weekly-1-1", 0, &backed_up).await;
    let prune = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = pods
                .list(&ListParams::default().labels("hort.dev/agent-role=prune"))
                .await
                .unwrap()
                .items;
            if let Some(pod) = found.into_iter().next() {
                break pod;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no prune pod after the schedule's success"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let args = prune.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
    assert_eq!(
        args,
        [
            "forget",
            "--prune",
            "--tag",
            &format!("hort.dev/namespace={ns}"),
            "--tag",
            "hort.dev/schedule=weekly",
            "--keep-last",
            "2",
            "--keep-weekly",
            "4"
        ]
    );
    finish_pod(
        &pods,
        &prune.name_any(),
        0,
        &encode(&ForgetReport {
            snapshots_kept: 2,
            snapshots_removed: 3,
        }),
    )
    .await;
    wait_for(&schedules, "weekly", "lastPrune", |s| {
        s.status
            .as_ref()
            .and_then(|s| s.last_prune.as_ref())
            .is_some_and(|p| p.succeeded && p.snapshots_removed == 3 && p.snapshots_kept == 2)
    })
    .await;
    wait_for_event(&client, &ns, "weekly", "Pruned").await;

    let expected = [
        format!(r#"hort_backup_total{{namespace="{ns}",result="succeeded",schedule=""}} 1"#),
        // `once` (no retries left).
        format!(r#"hort_backup_total{{namespace="{ns}",result="failed",schedule=""}} 1"#),
        format!(r#"hort_backup_bytes{{kind="stored",namespace="{ns}",schedule=""}} 2000"#),
        format!(r#"hort_last_successful_backup_timestamp_seconds{{namespace="{ns}",schedule=""}}"#),
        format!(r#"hort_restore_total{{namespace="{ns}",result="succeeded"}} 1"#),
        // The measured restore time of the volume restore (0.2 s), beside the verifications'.
        format!(r#"hort_restore_duration_seconds_sum{{kind="volume",namespace="{ns}"}} 0.2"#),
    ];
    metrics_showing(&metrics, &expected).await;

    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn the_backup_pod_gets_the_namespace_catalog_without_secret_values() {
    let env = TestEnv::start("hort-catalog", Clock::System).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let jobs: Api<BackupJob> = env.api();
    let pods: Api<Pod> = env.api();
    let secrets: Api<Secret> = env.api();
    ready_s3_group(&client, &ns).await;
    let password = "catalog-must-not-hold-this-7d1e";
    create(
        &secrets,
        json!({"metadata": {"name": "db-credentials", "labels": {"hort.dev/usable": "true"}},
               "stringData": {"username": "postgres", "password": password}}),
    )
    .await;
    let source = json!({"postgres": {"host": "db.shop.svc", "databases": ["shop"],
                                     "credentialsSecretRef": {"name": "db-credentials"}}});
    create(
        &env.api::<Schedule>(),
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": "nightly"},
               "spec": {"schedule": "@yearly", "suspend": true,
                        "jobTemplate": {"spec": {"storageGroupRef": {"name": "s3"}, "source": source}}}}),
    )
    .await;
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "db-manual"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": source}}),
    )
    .await;
    wait_for(&pods, "db-manual-1", "the agent pod", |_| true).await;
    let container = pods
        .get("db-manual-1")
        .await
        .unwrap()
        .spec
        .unwrap()
        .containers
        .remove(0);
    let variable = container
        .env
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == hort_protocol::env::CATALOG)
        .expect("the backup pod gets the catalog");
    let text = variable.value.expect("the catalog is a value, not a reference");
    let catalog: hort_protocol::Catalog = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            catalog.namespace.as_str(),
            catalog.storage_group.as_str(),
            catalog.written_by.as_str()
        ),
        (ns.as_str(), "s3", "db-manual")
    );
    assert_eq!(catalog.storage_groups.len(), 1);
    assert_eq!(
        catalog.storage_groups[0].spec["targets"][0]["s3"]["credentialsSecretRef"]["name"],
        "s3"
    );
    assert_eq!(catalog.schedules[0].name, "nightly");
    let postgres = &catalog.schedules[0].spec["jobTemplate"]["spec"]["source"]["postgres"];
    assert_eq!(
        (&postgres["host"], &postgres["port"]),
        (&json!("db.shop.svc"), &json!(5432))
    );
    let job = catalog.backup_jobs.iter().find(|b| b.name == "db-manual").unwrap();
    assert_eq!(
        job.spec["source"]["postgres"]["credentialsSecretRef"]["name"],
        "db-credentials"
    );
    // Secrets are named, never copied: neither the value nor its base64 is anywhere in it.
    assert!(text.contains("db-credentials"));
    for secret in [
        password.to_string(),
        "Y2F0YWxvZy1tdXN0LW5vdC1ob2xkLXRoaXMtN2QxZQ".to_string(),
    ] {
        assert!(!text.contains(&secret), "the catalog holds a Secret's value: {text}");
    }
    let args = container.args.unwrap_or_default().join(" ");
    assert!(
        !args.contains("storageGroups"),
        "the catalog is never an argument: {args}"
    );
    env.stop().await;
}

/// The value of variable `name` in the agent container of `pod`.
fn agent_env(pod: &Pod, name: &str) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_groups_bandwidth_limits_reach_the_backup_pod() {
    use hort_protocol::env::{LIMIT_DOWNLOAD, LIMIT_UPLOAD};
    let env = TestEnv::start("hort-bandwidth", Clock::System).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let (groups, pods): (Api<StorageGroup>, Api<Pod>) = (env.api(), env.api());
    ready_s3_group(&client, &ns).await;
    usable_claim(&client, &ns, "data").await;
    let limits = Patch::Merge(json!({"spec": {"bandwidth": {"uploadPerSecond": "20Mi", "downloadPerSecond": "1.5G"}}}));
    groups.patch("s3", &PatchParams::default(), &limits).await.unwrap();
    // The changed group is checked again, by a pod under the new limits.
    let deadline = tokio::time::Instant::now() + WAIT;
    let check = loop {
        let checks = pods
            .list(&ListParams::default().labels("hort.dev/agent-role=check"))
            .await
            .unwrap()
            .items;
        if let Some(pod) = checks.into_iter().find(|p| agent_env(p, LIMIT_UPLOAD).is_some()) {
            break pod;
        }
        assert!(tokio::time::Instant::now() < deadline, "no check pod with the limits");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    finish_pod(&pods, &check.name_any(), 0, &encode(&healthy_check("r"))).await;
    create(
        &env.api::<BackupJob>(),
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "bw"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}}}}),
    )
    .await;
    wait_for(&pods, "bw-1", "the backup pod", |_| true).await;
    let pod = pods.get("bw-1").await.unwrap();
    assert_eq!(
        (agent_env(&pod, LIMIT_UPLOAD), agent_env(&pod, LIMIT_DOWNLOAD)),
        (Some("20971520".into()), Some("1500000000".into())),
        "bytes per second, as the agent reads them"
    );
    // A job's own upload rate replaces the group's; its download rate stays the group's.
    create(
        &env.api::<BackupJob>(),
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "slow"},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                        "bandwidth": {"uploadPerSecond": "1Mi"}}}),
    )
    .await;
    wait_for(&pods, "slow-1", "the slower job's pod", |_| true).await;
    let pod = pods.get("slow-1").await.unwrap();
    assert_eq!(
        (agent_env(&pod, LIMIT_UPLOAD), agent_env(&pod, LIMIT_DOWNLOAD)),
        (Some("1048576".into()), Some("1500000000".into()))
    );
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_group_is_checked_again_once_its_check_interval_has_passed() {
    let clock = Clock::manual(Timestamp::now());
    let env = TestEnv::start("hort-check-interval", clock.clone()).await;
    ready_s3_group(&env.client, &env.ns).await;
    let (groups, pods): (Api<StorageGroup>, Api<Pod>) = (env.api(), env.api());
    let interval = i64::from(groups.get("s3").await.unwrap().spec.check_interval_seconds);
    let first = wait_for_check_pods(&pods, 1).await;
    assert_eq!(first.len(), 1);
    let ended = hort_operator::agent::outcome::finished_at(&first[0]);
    // A metadata change makes the operator look at the group (no new generation).
    let look = |n: u32| {
        let poke = Patch::Merge(json!({"metadata": {"annotations": {"hort.dev/test-poke": n.to_string()}}}));
        let groups = groups.clone();
        async move { groups.patch("s3", &PatchParams::default(), &poke).await.unwrap() }
    };

    // Five seconds before the interval ends, a look starts no check.
    clock.set(ended + SignedDuration::from_secs(interval - 5));
    look(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        wait_for_check_pods(&pods, 1).await.len(),
        1,
        "checked before the interval passed"
    );

    // Once it has passed, the next look starts one.
    clock.set(ended + SignedDuration::from_secs(interval + 1));
    look(2).await;
    wait_for_check_pods(&pods, 2).await;
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn max_concurrent_jobs_holds_a_second_job_until_the_first_ends() {
    let env = TestEnv::start("hort-slots", Clock::System).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let groups: Api<StorageGroup> = env.api();
    let jobs: Api<BackupJob> = env.api();
    let pods: Api<Pod> = env.api();
    ready_s3_group(&client, &ns).await;
    usable_claim(&client, &ns, "data").await;
    groups
        .patch(
            "s3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxConcurrentJobs": 1}})),
        )
        .await
        .unwrap();
    let job = |name: &str| {
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data", "snapshot": "None"}},
                        "backoffLimit": 0}})
    };

    // The first job takes the group's one slot and runs its agent pod.
    create(&jobs, job("first")).await;
    wait_for(&pods, "first-1", "the first job's agent pod", |_| true).await;
    // The second waits, visibly, while the first one's pod runs.
    create(&jobs, job("second")).await;
    wait_for(&jobs, "second", "the second job to wait for a slot", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Pending
                && s.attempts == 0
                && condition(Some(&s.conditions), "GroupSlot").is_some_and(|c| {
                    c.status == "False"
                        && c.reason == "WaitingForGroupSlot"
                        && c.message
                            .contains("StorageGroup \"s3\": 1 of its 1 (spec.maxConcurrentJobs)")
                })
        })
    })
    .await;
    let notes = wait_for_event(&client, &ns, "second", "WaitingForGroupSlot").await;
    assert!(notes[0].contains("StorageGroup \"s3\""), "{notes:?}");
    // It keeps waiting: several looks later (every 3 s) it has still no pod.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(pods.get_opt("second-1").await.unwrap().is_none(), "no slot was free");

    // The first job ends: the second starts.
    finish_pod(&pods, "first-1", 0, &backup_report("aa11bb22", 10, 10, 10, 1)).await;
    wait_for(&jobs, "first", "the first job to succeed", |j| {
        j.status.as_ref().is_some_and(|s| s.phase == Phase::Succeeded)
    })
    .await;
    wait_for(
        &pods,
        "second-1",
        "the second job's agent pod once the slot freed",
        |_| true,
    )
    .await;
    wait_for(&jobs, "second", "the second job to hold the slot", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.attempts == 1
                && condition(Some(&s.conditions), "GroupSlot")
                    .is_some_and(|c| c.status == "True" && c.reason == "GroupSlotTaken")
        })
    })
    .await;

    // Zero is refused by the API server, naming the field.
    let err = groups
        .patch(
            "s3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxConcurrentJobs": 0}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.maxConcurrentJobs"), "{err}");
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn schedule_windows_hold_or_skip_runs_due_outside_them() {
    let clock = Clock::manual(Timestamp::now());
    let env = TestEnv::start("hort-windows", clock.clone()).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let schedules: Api<Schedule> = env.api();
    let jobs: Api<BackupJob> = env.api();

    // Hourly; one window 01:00-02:00 in Tokyo (16:00-17:00 UTC the day before).
    let schedule = |name: &str, outside: &str| {
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": name},
               "spec": {"schedule": "0 * * * *", "timeZone": "Asia/Tokyo", "concurrencyPolicy": "Allow",
                        "windows": [{"start": "01:00", "end": "02:00"}], "outsideWindow": outside,
                        "jobTemplate": {"spec": {"storageGroupRef": {"name": "s3"},
                                                 "source": {"volume": {"claimName": "data", "snapshot": "None"}}}}}})
    };
    let created = create(&schedules, schedule("held", "Wait")).await;
    create(&schedules, schedule("skipped", "Skip")).await;
    let created = created.metadata.creation_timestamp.unwrap().0;
    let cron = CronSchedule::parse("0 * * * *", Some("Asia/Tokyo")).unwrap();
    // The first hourly time that is not 16:00 UTC, i.e. outside the window.
    let mut due = cron.next_after(created).unwrap();
    while due.to_zoned(jiff::tz::TimeZone::UTC).hour() == 16 {
        due = cron.next_after(due).unwrap();
    }
    let day = due.to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut opens = day
        .at(16, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    if opens <= due {
        opens = day
            .tomorrow()
            .unwrap()
            .at(16, 0, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp();
    }

    // Due outside the window: Wait holds the run and says until when; Skip skips it.
    clock.set(due + SignedDuration::from_secs(10));
    poke(&schedules, "held", 1).await;
    poke(&schedules, "skipped", 1).await;
    wait_for(&schedules, "held", "the run to wait for the window", |s| {
        schedule_ready_message(s).contains(&format!(
            "waits: every backup window (spec.windows) is closed; the next opens at {opens}"
        ))
    })
    .await;
    wait_for_event(&client, &ns, "held", "WaitingForWindow").await;
    wait_for(&schedules, "skipped", "the run to be skipped", |s| {
        s.status
            .as_ref()
            .and_then(|s| s.last_skipped_time.as_ref())
            .map(|t| t.0)
            == Some(due)
            && schedule_ready_message(s).contains("was skipped")
    })
    .await;
    wait_for_event(&client, &ns, "skipped", "SkippedOutsideWindow").await;
    assert!(jobs.list(&Default::default()).await.unwrap().items.is_empty());

    // The window opens: the waiting schedule creates one job, for its latest due time; the
    // skipping one creates the job of the time inside the window, not the skipped one.
    clock.set(opens + SignedDuration::from_secs(10));
    poke(&schedules, "held", 2).await;
    poke(&schedules, "skipped", 2).await;
    wait_for(
        &jobs,
        &job_name("held", opens),
        "the held run's job once the window opened",
        |_| true,
    )
    .await;
    wait_for(
        &jobs,
        &job_name("skipped", opens),
        "the next run inside the window",
        |_| true,
    )
    .await;
    let names: Vec<String> = jobs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&job_name("skipped", due)), "{names:?}");

    // Validation names the field.
    let err = schedules
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"windows": [{"start": "1:00", "end": "02:00"}]}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.windows[0].start"), "{err}");
    let err = schedules
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"windows": [{"start": "02:00", "end": "02:00"}]}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("start and end must differ"), "{err}");
    let mut no_windows = schedule("nowin", "Skip");
    no_windows["spec"].as_object_mut().unwrap().remove("windows");
    let err = schedules
        .create(&Default::default(), &serde_json::from_value(no_windows).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("spec.outsideWindow: Skip needs spec.windows"),
        "{err}"
    );
    env.stop().await;
}

/// The node slot gate and node-affinity exclusions of pod `name`.
async fn slot_state(pods: &Api<Pod>, name: &str) -> (bool, Vec<String>) {
    let pod = pods.get(name).await.unwrap();
    let spec = pod.spec.unwrap();
    let gated = spec
        .scheduling_gates
        .iter()
        .flatten()
        .any(|g| g.name == hort_operator::node_slots::NODE_SLOT_GATE);
    let excluded = spec
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .map(|s| s.node_selector_terms)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|t| t.match_fields.unwrap_or_default())
        .filter(|r| r.operator == "NotIn")
        .flat_map(|r| r.values.unwrap_or_default())
        .collect();
    (gated, excluded)
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn max_jobs_per_node_releases_agent_pods_only_where_a_slot_is_free() {
    let env = TestEnv::start("hort-nodeslots", Clock::System).await;
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let pods: Api<Pod> = env.api();
    let slots = tokio::spawn(hort_operator::node_slots::run(
        client.clone(),
        hort_operator::controllers::Scope::Namespace(ns.clone()),
        1,
    ));
    // Agent pods as the operator creates them with a limit: gated; `pin` as for a claim that
    // one node mounts.
    let agent = |name: &str, pin: Option<&str>| {
        let mut pod = json!({"metadata": {"name": name, "labels": {"hort.dev/agent-role": "backup"}},
                             "spec": {"containers": [{"name": "agent", "image": "hort-agent:test"}],
                                      "schedulingGates": [{"name": "hort.dev/node-slot"}]}});
        if let Some(node) = pin {
            pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
        }
        pod
    };
    // What the scheduler does: binds the pod to a node.
    let bind = |name: &'static str, node: &'static str| {
        let pods = pods.clone();
        async move {
            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                 "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            pods.create_subresource::<serde_json::Value, serde_json::Value>(
                "binding",
                name,
                &Default::default(),
                &binding,
            )
            .await
            .unwrap();
        }
    };
    let released = |name: &'static str| {
        let pods = pods.clone();
        async move {
            wait_for(
                &pods,
                name,
                "the pod to be released from its node-slot gate",
                |p: &Pod| {
                    !p.spec
                        .as_ref()
                        .and_then(|s| s.scheduling_gates.as_ref())
                        .is_some_and(|g| g.iter().any(|g| g.name == "hort.dev/node-slot"))
                },
            )
            .await;
        }
    };

    // Nothing runs: a is released as it is, and the scheduler puts it on node-1.
    create(&pods, agent("a", None)).await;
    released("a").await;
    assert_eq!(slot_state(&pods, "a").await, (false, vec![]));
    bind("a", "node-1").await;
    // node-1 is at the limit: b is released kept off it.
    create(&pods, agent("b", None)).await;
    released("b").await;
    assert_eq!(slot_state(&pods, "b").await, (false, vec!["node-1".to_string()]));
    // b is not bound yet and may go to any other node: c waits; d may only go to node-1,
    // which is full: it waits too.
    create(&pods, agent("c", None)).await;
    create(&pods, agent("d", Some("node-1"))).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        slot_state(&pods, "c").await.0,
        "c must wait while b may still land anywhere"
    );
    assert!(slot_state(&pods, "d").await.0, "d must wait while node-1 is full");
    // a ends: node-1 has a slot for d.
    finish_pod(&pods, "a", 0, "done").await;
    released("d").await;
    assert!(slot_state(&pods, "c").await.0, "c still waits for b");
    // b lands on node-2: c is released kept off node-2 (b) and node-1 (d, not bound yet).
    bind("b", "node-2").await;
    released("c").await;
    assert_eq!(
        slot_state(&pods, "c").await,
        (false, vec!["node-1".to_string(), "node-2".to_string()])
    );
    slots.abort();
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn max_jobs_per_node_leaves_a_pod_held_for_its_pre_hooks_alone() {
    use hort_operator::agent::api::{PRE_HOOKS_GATE, release};
    use hort_operator::node_slots::NODE_SLOT_GATE;
    let env = TestEnv::start("hort-nodeslots-hooks", Clock::System).await;
    let pods: Api<Pod> = env.api();
    let slots = tokio::spawn(hort_operator::node_slots::run(
        env.client.clone(),
        hort_operator::controllers::Scope::Namespace(env.ns.clone()),
        1,
    ));
    let agent = |name: &str, gates: &[&str]| {
        let gates: Vec<_> = gates.iter().map(|g| json!({"name": g})).collect();
        json!({"metadata": {"name": name, "labels": {"hort.dev/agent-role": "backup"}},
               "spec": {"containers": [{"name": "agent", "image": "hort-agent:test"}], "schedulingGates": gates}})
    };
    // "held" (the older: same second, first by name) waits for its job's pre hooks: with a
    // limit of 1 it would otherwise be released first and hold every node's slot.
    create(&pods, agent("held", &[NODE_SLOT_GATE, PRE_HOOKS_GATE])).await;
    create(&pods, agent("next", &[NODE_SLOT_GATE])).await;
    wait_for(&pods, "next", "the pod after it to be released", |p| {
        gates(p).is_empty()
    })
    .await;
    assert_eq!(
        gates(&pods.get("held").await.unwrap()),
        [NODE_SLOT_GATE, PRE_HOOKS_GATE]
    );
    // Its pre hooks passed: it waits for its slot like any other, and gets one once "next"
    // is on node-1.
    release(&pods, "held").await.unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "next"},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    pods.create_subresource::<serde_json::Value, serde_json::Value>("binding", "next", &Default::default(), &binding)
        .await
        .unwrap();
    wait_for(&pods, "held", "the pod to get its slot", |p| gates(p).is_empty()).await;
    assert_eq!(slot_state(&pods, "held").await, (false, vec!["node-1".to_string()]));
    slots.abort();
    env.stop().await;
}
