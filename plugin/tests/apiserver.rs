//! `kubectl hort` against a real API server (KUBECONFIG; no node, no operator): the test
//! writes the objects and plays the operator by writing their status.

use std::process::Output;
use std::time::Duration;

use hort_crds::{BackupJob, RestoreRequest, Schedule, StorageGroup};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A fresh namespace `plugin-NAME-PID` with Hort's CRDs installed.
async fn namespace(name: &str) -> (Client, String) {
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no usable KUBECONFIG ({e}); run scripts/test.sh"));
    hort_operator::crd_install::install(&client).await.unwrap();
    let ns = format!("plugin-{name}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    (client, ns)
}

async fn drop_namespace(client: &Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
}

/// Creates an object and writes its status, as the operator would.
async fn create_with_status<K>(api: &Api<K>, object: Value) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let status = object.get("status").cloned();
    let parsed: K = serde_json::from_value(object).unwrap();
    let created = api.create(&PostParams::default(), &parsed).await.unwrap();
    match status {
        Some(status) => set_status(api, &created.name_any(), status).await,
        None => created,
    }
}

async fn set_status<K>(api: &Api<K>, name: &str, status: Value) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await
        .unwrap()
}

/// `kubectl-hort ARGS -n NS` (a child process, stdout and stderr captured).
fn plugin(ns: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-hort"));
    cmd.args(args).args(["-n", ns]).kill_on_drop(true);
    cmd
}

async fn run(ns: &str, args: &[&str]) -> (i32, String, String) {
    let Output { status, stdout, stderr } = plugin(ns, args).output().await.unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn group(name: &str) -> Value {
    json!({"apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup", "metadata": {"name": name},
           "spec": {"targets": [{"name": "a", "s3": {"endpoint": "http://s3.invalid:9000", "bucket": "bkt",
                    "credentialsSecretRef": {"name": "s3"}}}], "encryption": {"keySecretRef": {"name": "key"}}}})
}

fn schedule(name: &str) -> Value {
    json!({"apiVersion": "hort.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": name},
           "spec": {"schedule": "30 2 * * *", "jobTemplate": {"metadata": {"labels": {"team": "shop"}},
                    "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}, "tags": ["nightly"]}}}})
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-11-30T10:00:00Z"})
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn status_shows_groups_schedules_running_work_and_failures() {
    let (client, ns) = namespace("status").await;
    let groups: Api<StorageGroup> = Api::namespaced(client.clone(), &ns);
    let mut broken = group("broken");
    broken["status"] = json!({"targets": [{"name": "a", "reachable": false, "writable": false, "message": "dns"}],
        "conditions": [condition("Ready", "False", "TargetsUnhealthy", "0 of 1 targets healthy")]});
    create_with_status(&groups, broken).await;
    let mut ready = group("s3");
    ready["status"] = json!({"repositoryId": "abcdef0123456789", "usedSize": "2.0 MiB",
        "targets": [{"name": "a", "reachable": true, "writable": true}],
        "conditions": [condition("Ready", "True", "Checked", "ok")]});
    create_with_status(&groups, ready).await;
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), &ns);
    let mut nightly = schedule("nightly");
    nightly["status"] = json!({"lastScheduleTime": "2026-11-30T02:30:00Z", "nextScheduleTime": "2099-12-01T02:30:00Z"});
    create_with_status(&schedules, nightly).await;
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), &ns);
    create_with_status(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
        "metadata": {"name": "nightly-1", "labels": {"hort.dev/schedule": "nightly"}},
        "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}},
        "status": {"phase": "Failed", "message": "claim data not found", "completionTime": "2026-11-30T02:31:00Z",
                   "conditions": [condition("Failed", "True", "InvalidReference", "claim data not found")]}}),
    )
    .await;
    create_with_status(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
        "metadata": {"name": "running"},
        "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}},
        "status": {"phase": "Running", "progress": {"bytesDone": 300, "bytesTotal": 400, "percent": 75}}}),
    )
    .await;

    let (code, out, err) = run(&ns, &["status"]).await;
    assert_eq!(code, 0, "{err}");
    let line = |start: &str| {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start}:\n{out}"))
            .to_owned()
    };
    assert!(
        line("broken ").contains("TargetsUnhealthy") && line("broken ").contains("0/1"),
        "{out}"
    );
    assert!(
        line("s3 ").contains("Ready") && line("s3 ").contains("abcdef012345"),
        "{out}"
    );
    assert!(
        line("nightly ").contains("Failed (nightly-1)") && line("nightly ").contains("in "),
        "{out}"
    );
    assert!(line("BackupJob/running ").contains("75%"), "{out}");
    assert!(line("BackupJob/nightly-1 ").contains("InvalidReference"), "{out}");
    assert!(line("BackupJob/nightly-1 ").contains("claim data not found"), "{out}");

    let (code, out, _) = run(&ns, &["status", "-o", "json"]).await;
    assert_eq!(code, 0);
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["failures"][0]["reason"], "InvalidReference");
    assert_eq!(view["active"][0]["progress"], "75%");
    drop_namespace(&client, &ns).await;
}

/// Waits for the plugin's BackupJob (labelled manual) and returns it.
async fn manual_job(jobs: &Api<BackupJob>) -> BackupJob {
    for _ in 0..100 {
        let listed = jobs
            .list(&ListParams::default().labels("hort.dev/manual=true"))
            .await
            .unwrap();
        if let Some(job) = listed.items.into_iter().next() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("kubectl hort backup now created no BackupJob");
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn backup_now_follows_the_job_and_exits_with_its_result() {
    let (client, ns) = namespace("backup").await;
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), &ns);
    create_with_status(&schedules, schedule("nightly")).await;
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), &ns);

    // Succeeded: exit code 0; the progress shows as plain lines (stderr is not a terminal).
    let follower = plugin(&ns, &["backup", "now", "nightly"]).output();
    let play = async {
        let job = manual_job(&jobs).await;
        let name = job.name_any();
        assert!(name.starts_with("nightly-manual-"), "{name}");
        assert_eq!(job.labels()["hort.dev/schedule"], "nightly");
        assert_eq!(job.labels()["team"], "shop");
        assert_eq!(job.spec.tags, ["nightly"]);
        assert!(job.owner_references().is_empty());
        set_status(
            &jobs,
            &name,
            json!({"phase": "Running", "progress": {"bytesDone": 512, "bytesTotal": 1024, "percent": 50}}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        set_status(
            &jobs,
            &name,
            json!({"phase": "Succeeded", "snapshotId": "feedbeef00", "progress": null}),
        )
        .await;
        name
    };
    let (output, name) = tokio::join!(follower, play);
    let output = output.unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{out}{err}");
    assert!(
        err.contains(&format!("BackupJob {ns}/{name}: Running 50% (512 B of 1.0 KiB)")),
        "{err}"
    );
    assert!(
        out.contains(&format!("BackupJob {ns}/{name} succeeded: snapshot feedbeef00")),
        "{out}"
    );
    jobs.delete(&name, &DeleteParams::default()).await.unwrap();

    // Failed (a copy of another job): exit code 1 and the status message.
    let follower = plugin(&ns, &["backup", "now", "--from-job", &name]).output();
    let source = create_with_status(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob",
        "metadata": {"name": name, "labels": {"hort.dev/schedule": "nightly"}},
        "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}}}),
    )
    .await;
    let play = async {
        let job = loop {
            let job = manual_job(&jobs).await;
            if job.name_any() != source.name_any() {
                break job;
            }
        };
        set_status(
            &jobs,
            &job.name_any(),
            json!({"phase": "Failed", "message": "the agent failed: repository locked"}),
        )
        .await;
        job.name_any()
    };
    let (output, copy) = tokio::join!(follower, play);
    let output = output.unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "error: BackupJob {ns}/{copy} failed: the agent failed: repository locked"
        )),
        "{err}"
    );

    // --no-wait returns at once with the name.
    let (code, out, _) = run(&ns, &["backup", "now", "nightly", "--no-wait"]).await;
    assert_eq!(code, 0);
    assert!(out.trim().starts_with("nightly-manual-"), "{out}");

    let (code, _, err) = run(&ns, &["backup", "now", "weekly"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "Schedule {ns}/weekly not found: list them with `kubectl hort status -n {ns}`"
        )),
        "{err}"
    );
    drop_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn dr_applies_the_catalog_and_restores_the_latest_backups() {
    use hort_protocol::catalog::{self, Catalog, CatalogBackup, CatalogObject};
    use kubectl_hort::cli::FollowFlags;
    use kubectl_hort::dr::{DrOptions, namespace_map, plan};
    use kubectl_hort::dr_run::{FIELD_MANAGER, execute};

    let (client, ns) = namespace("dr").await;
    let pg = json!({"postgres": {"host": "db.shop.svc", "credentialsSecretRef": {"name": "db-credentials"}}});
    let job = |name: &str, snapshot: &str, source: &Value| CatalogBackup {
        name: name.into(),
        schedule: None,
        spec: json!({"storageGroupRef": {"name": "s3"}, "source": source}),
        phase: "Succeeded".into(),
        snapshot_id: Some(snapshot.into()),
        created: None,
        completion_time: None,
        message: None,
    };
    let stored = hort_protocol::StoredCatalog {
        snapshot_id: "ab".repeat(32),
        time: "2026-11-30T03:00:00Z".into(),
        catalog: Catalog {
            version: catalog::VERSION,
            namespace: "shop".into(),
            storage_group: "s3".into(),
            written_by: "files".into(),
            time: "2026-11-30T03:00:00Z".into(),
            storage_groups: vec![CatalogObject {
                name: "s3".into(),
                labels: Default::default(),
                spec: group("s3")["spec"].clone(),
            }],
            schedules: vec![CatalogObject {
                name: "nightly".into(),
                labels: Default::default(),
                spec: schedule("nightly")["spec"].clone(),
            }],
            backup_jobs: vec![
                job("db", "0123456789abcdef", &pg),
                job("files", "fedcba9876543210", &json!({"volume": {"claimName": "data"}})),
            ],
        },
    };
    let options = DrOptions {
        namespace_map: namespace_map(&[format!("shop={ns}")]).unwrap(),
        ..DrOptions::default()
    };
    let plan = plan(&[stored], &options).unwrap();
    let no_wait = FollowFlags {
        no_wait: true,
        timeout: 60,
    };
    let done = execute(&client, &plan, &no_wait).await;
    let results: Vec<(&str, &str, &str)> = done
        .iter()
        .map(|d| (d.kind.as_str(), d.name.as_str(), d.result.as_str()))
        .collect();
    assert_eq!(
        results,
        [
            ("StorageGroup", "s3", "applied"),
            ("Schedule", "nightly", "applied"),
            ("RestoreRequest", "dr-db-01234567", "created"),
            ("RestoreRequest", "dr-files-fedcba98", "created"),
        ],
        "{done:?}"
    );
    let groups: Api<StorageGroup> = Api::namespaced(client.clone(), &ns);
    let applied = groups.get("s3").await.unwrap();
    let managers: Vec<String> = applied
        .managed_fields()
        .iter()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert_eq!(managers, [FIELD_MANAGER]);
    assert_eq!(applied.spec.targets[0].s3.as_ref().unwrap().bucket, "bkt");
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), &ns);
    assert_eq!(schedules.get("nightly").await.unwrap().spec.schedule, "30 2 * * *");
    let restores: Api<RestoreRequest> = Api::namespaced(client.clone(), &ns);
    let db = restores.get("dr-db-01234567").await.unwrap();
    assert_eq!(db.spec.source.snapshot_id.as_deref(), Some("0123456789abcdef"));
    assert_eq!(
        db.spec.target.postgres.as_ref().unwrap().credentials_secret_ref.name,
        "db-credentials"
    );

    // Again, followed: the same objects are applied, the restores made before are followed.
    let followed = FollowFlags {
        no_wait: false,
        timeout: 60,
    };
    let play = async {
        for (name, phase) in [("dr-db-01234567", "Succeeded"), ("dr-files-fedcba98", "Failed")] {
            set_status(&restores, name, json!({"phase": phase, "message": "played"})).await;
        }
    };
    let (done, ()) = tokio::join!(execute(&client, &plan, &followed), play);
    let results: Vec<&str> = done.iter().map(|d| d.result.as_str()).collect();
    assert_eq!(results, ["applied", "applied", "succeeded", "failed"], "{done:?}");
    assert_eq!(done[3].message, "played");

    // A group that exists with other values is kept, and the row says what to do.
    let mut other = group("s3");
    other["spec"]["targets"][0]["s3"]["bucket"] = json!("another");
    groups.delete("s3", &DeleteParams::default()).await.unwrap();
    create_with_status(&groups, other).await;
    let done = execute(&client, &plan, &no_wait).await;
    assert_eq!(done[0].result, "failed");
    assert!(
        done[0].message.contains("exists with other values") && done[0].message.contains("delete it"),
        "{}",
        done[0].message
    );
    assert_eq!(
        groups.get("s3").await.unwrap().spec.targets[0]
            .s3
            .as_ref()
            .unwrap()
            .bucket,
        "another"
    );
    drop_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn restore_prints_with_dry_run_and_creates_otherwise() {
    let (client, ns) = namespace("restore").await;
    let flags = [
        "restore",
        "s3",
        "--from-job",
        "nightly-1",
        "--to-claim",
        "data",
        "--path",
        "media",
    ];
    let (code, out, err) = run(&ns, &[&flags[..], &["--dry-run=client", "-o", "yaml"]].concat()).await;
    assert_eq!(code, 0, "{err}");
    let printed: RestoreRequest = serde_yaml::from_str(&out).unwrap();
    assert_eq!(printed.spec.target.volume.as_ref().unwrap().paths, ["media"]);
    let restores: Api<RestoreRequest> = Api::namespaced(client.clone(), &ns);
    assert!(
        restores.list(&ListParams::default()).await.unwrap().items.is_empty(),
        "dry run created nothing"
    );

    // Server dry run: the API server's validation applies (here: a too short snapshot id).
    let (code, _, err) = run(
        &ns,
        &[
            "restore",
            "s3",
            "--snapshot",
            "abc",
            "--to-claim",
            "data",
            "--dry-run=server",
        ],
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("snapshotId"), "{err}");

    let (code, out, err) = run(&ns, &[&flags[..], &["--name", "r1", "--no-wait"]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "r1");
    let created = restores.get("r1").await.unwrap();
    assert_eq!(created.spec, printed.spec, "what --dry-run printed is what is created");

    // Followed to the end: the outcome from the status.
    let follower = plugin(&ns, &[&flags[..], &["--name", "r2"]].concat()).output();
    let play = async {
        while restores.get_opt("r2").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        set_status(
            &restores,
            "r2",
            json!({"phase": "Succeeded", "snapshotId": "feedbeef00",
            "stats": {"bytesRestored": 2048, "files": 3, "skipped": 1, "durationSeconds": 2.0}}),
        )
        .await;
    };
    let (output, ()) = tokio::join!(follower, play);
    let output = output.unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        out.contains("succeeded: snapshot feedbeef00, 3 files, 2.0 KiB written, 1 kept"),
        "{out}"
    );
    drop_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn logs_and_repository_reads_name_what_is_missing() {
    let (client, ns) = namespace("logs").await;
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), &ns);
    let job = |name: &str| {
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name},
               "spec": {"storageGroupRef": {"name": "s3"}, "source": {"volume": {"claimName": "data"}}}})
    };
    let mut done = job("done");
    done["status"] = json!({"phase": "Succeeded", "agentPod": "done-backup-1"});
    create_with_status(&jobs, done).await;
    create_with_status(&jobs, job("waiting")).await;

    let (code, _, err) = run(&ns, &["logs", "done"]).await;
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!("the agent pod done-backup-1 of BackupJob {ns}/done is gone")),
        "{err}"
    );
    let (code, _, err) = run(&ns, &["logs", "waiting"]).await;
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!("BackupJob {ns}/waiting has no agent pod yet (phase Pending)")),
        "{err}"
    );
    let (code, _, err) = run(&ns, &["logs", "nothing"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("BackupJob or RestoreRequest {ns}/nothing not found")),
        "{err}"
    );

    let (code, _, err) = run(&ns, &["snapshots", "nope", "--agent-image", "hort-agent:test"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "StorageGroup {ns}/nope not found: list them with `kubectl hort status -n {ns}`"
        )),
        "{err}"
    );
    drop_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn the_agent_pod_is_deleted_when_it_cannot_start_and_on_ctrl_c() {
    let (client, ns) = namespace("browse").await;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "hort-agent"}})).unwrap(),
        )
        .await
        .unwrap();
    let groups: Api<StorageGroup> = Api::namespaced(client.clone(), &ns);
    create_with_status(&groups, group("s3")).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let browse_pods = || async {
        pods.list(&ListParams::default().labels("hort.dev/agent-role=browse"))
            .await
            .unwrap()
            .items
    };

    // No node runs it here: the pod never starts, and is deleted after --start-timeout.
    let (code, _, err) = run(
        &ns,
        &[
            "ls",
            "s3",
            "latest",
            "--agent-image",
            "hort-agent:test",
            "--start-timeout",
            "2",
        ],
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("did not start within 2 s"), "{err}");
    assert!(browse_pods().await.is_empty(), "the pod was deleted");

    // Ctrl-C while it waits: the pod is deleted too.
    let child = plugin(&ns, &["snapshots", "s3", "--agent-image", "hort-agent:test"])
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = browse_pods().await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pod = seen.first().expect("the plugin created its agent pod");
    assert!(pod.name_any().starts_with("s3-browse-"));
    let owner = &pod.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("StorageGroup", None));
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(browse_pods().await.is_empty(), "the pod was deleted after Ctrl-C");
    drop_namespace(&client, &ns).await;
}
