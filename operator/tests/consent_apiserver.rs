//! No confused deputy, against a real kube-apiserver: whoever may create BackupJobs and
//! RestoreRequests gets through the operator no Secret and no claim whose owner has not marked
//! it with `hort.dev/usable: "true"`. Each refusal fails the object before any agent pod
//! exists; a marked object is used. Run through `scripts/test.sh`, which starts the API server.

use hort_crds::common::Phase;
use hort_crds::{BackupJob, RestoreRequest};
use hort_operator::clock::Clock;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

mod support;
use support::{TestEnv, create, ready_s3_group, usable_claim, wait_for, wait_for_event};

const MARK: &str = "hort.dev/usable";

fn backup(name: &str, source: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name},
           "spec": {"storageGroupRef": {"name": "s3"}, "source": source}})
}

fn restore(name: &str, target: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "hort.dev/v1alpha1", "kind": "RestoreRequest", "metadata": {"name": name},
           "spec": {"storageGroupRef": {"name": "s3"}, "source": {"snapshotId": "0123abcd"}, "target": target}})
}

fn postgres(secret: &str) -> serde_json::Value {
    json!({"postgres": {"host": "db", "credentialsSecretRef": {"name": secret}}})
}

/// Waits until `name` failed with reason `InvalidReference` and a message that `says` why, and
/// checks that its agent pod `pod` was never made and that an Event says why too.
async fn assert_refused<K>(env: &TestEnv, api: &Api<K>, name: &str, pod: &str, says: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug + Send + 'static,
{
    wait_for(api, name, "the object to fail naming the unmarked object", |obj| {
        let status = &serde_json::to_value(obj).unwrap()["status"];
        let refused = status["conditions"].as_array().is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Failed" && c["reason"] == "InvalidReference")
        });
        refused && status["phase"] == "Failed" && status["message"].as_str().is_some_and(|m| m.contains(says))
    })
    .await;
    let pods: Api<Pod> = env.api();
    assert!(pods.get_opt(pod).await.unwrap().is_none(), "{name}: no agent pod");
    let events = wait_for_event(&env.client, &env.ns, name, "InvalidReference").await;
    assert!(
        events.iter().any(|e| e.contains(says)),
        "{name}: the Event says why: {events:?}"
    );
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn secrets_and_claims_are_used_only_when_their_owner_marked_them() {
    let env = TestEnv::start("hort-consent", Clock::System).await;
    let (client, ns) = (&env.client, &env.ns);
    ready_s3_group(client, ns).await;
    let secrets: Api<Secret> = env.api();
    let claims: Api<PersistentVolumeClaim> = env.api();
    let jobs: Api<BackupJob> = env.api();
    let restores: Api<RestoreRequest> = env.api();
    let pods: Api<Pod> = env.api();

    // An application's Secret and claim, not marked for Hort.
    create(
        &secrets,
        json!({"metadata": {"name": "app-db"}, "stringData": {"username": "app", "password": "pw"}}),
    )
    .await;
    create(
        &claims,
        json!({"metadata": {"name": "app-data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;

    // Reading them (backups) and writing them (restores) is refused before any pod exists.
    let (db, files) = (
        postgres("app-db"),
        json!({"volume": {"claimName": "app-data", "snapshot": "None"}}),
    );
    create(&jobs, backup("read-db", db.clone())).await;
    create(&jobs, backup("read-files", files.clone())).await;
    create(&restores, restore("write-db", db)).await;
    create(&restores, restore("write-files", files)).await;
    let secret = r#"Secret "app-db" (spec.source.postgres.credentialsSecretRef) is not marked for use by Hort"#;
    let claim = r#"PersistentVolumeClaim "app-data" (spec.source.volume.claimName) is not marked for use by Hort"#;
    assert_refused(&env, &jobs, "read-db", "read-db-1", secret).await;
    assert_refused(&env, &jobs, "read-files", "read-files-1", claim).await;
    let (secret, claim) = (secret.replace("source", "target"), claim.replace("source", "target"));
    assert_refused(&env, &restores, "write-db", "write-db-restore", &secret).await;
    assert_refused(&env, &restores, "write-files", "write-files-restore", &claim).await;

    // Refusals count as failures, so the alerts on failed backups and restores fire.
    let failed_backups = env
        .metrics
        .backups
        .with_label_values(&[ns.as_str(), "", "failed"])
        .get();
    let failed_restores = env.metrics.restores.with_label_values(&[ns.as_str(), "failed"]).get();
    assert_eq!((failed_backups, failed_restores), (2, 2));

    // A Secret that does not exist yet is waited for; once it exists, marked, the job runs.
    create(&jobs, backup("later", postgres("later-db"))).await;
    wait_for(&jobs, "later", "the job to wait for its Secret", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Pending
                && s.message.as_deref().is_some_and(|m| {
                    m.contains(r#"Secret "later-db" (spec.source.postgres.credentialsSecretRef) not found"#)
                })
        })
    })
    .await;
    create(
        &secrets,
        json!({"metadata": {"name": "later-db", "labels": {MARK: "true"}},
               "stringData": {"username": "app", "password": "pw"}}),
    )
    .await;
    wait_for(&pods, "later-1", "the agent pod once the Secret exists", |_| true).await;

    // Once the owner marks the claim, a new job reads it.
    claims
        .patch(
            "app-data",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {MARK: "true"}}})),
        )
        .await
        .unwrap();
    create(
        &jobs,
        backup(
            "read-files-again",
            json!({"volume": {"claimName": "app-data", "snapshot": "None"}}),
        ),
    )
    .await;
    wait_for(&pods, "read-files-again-1", "the agent pod of the marked claim", |_| {
        true
    })
    .await;

    // A claim the operator creates for a restore is marked by it, and written to.
    create(
        &restores,
        restore(
            "into-new",
            json!({"volume": {"claimName": "fresh", "storageClassName": "standard", "size": "1Gi"}}),
        ),
    )
    .await;
    wait_for(
        &pods,
        "into-new-restore",
        "the restore pod of the created claim",
        |_| true,
    )
    .await;
    let fresh = claims.get("fresh").await.unwrap();
    assert_eq!(
        fresh.metadata.labels.unwrap().get(MARK).map(String::as_str),
        Some("true")
    );

    // A marked claim of the tenant's own is written to as well.
    usable_claim(client, ns, "scratch").await;
    create(
        &restores,
        restore("into-scratch", json!({"volume": {"claimName": "scratch"}})),
    )
    .await;
    wait_for(
        &pods,
        "into-scratch-restore",
        "the restore pod of the marked claim",
        |_| true,
    )
    .await;
    env.stop().await;
}
