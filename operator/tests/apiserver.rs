//! The controllers against a real kube-apiserver: a StorageGroup reports exactly which
//! references are missing and recovers when they appear; a BackupJob waits for its group and
//! says why. Run through `scripts/test.sh`, which starts the API server.

use std::sync::Arc;
use std::time::Duration;

use hort_crds::{BackupJob, StorageGroup};
use hort_operator::context::Context;
use hort_operator::controllers::{self, Scope};
use hort_operator::metrics::Metrics;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn client() -> Client {
    Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no usable KUBECONFIG ({e}); run scripts/test.sh"))
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// Waits until `ready` holds for object `name`, or fails naming `what` and the last state.
async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, ready: impl Fn(&K) -> bool)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let cond = move |obj: Option<&K>| obj.is_some_and(&ready);
    if tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond))
        .await
        .is_err()
    {
        let last = api.get_opt(name).await.unwrap();
        panic!("timed out waiting for {what}; last state: {last:#?}");
    }
}

fn condition<'a>(
    conditions: Option<&'a Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.and_then(|c| c.iter().find(|c| c.type_ == type_))
}

fn group_ready(group: &StorageGroup) -> Option<(String, String, String)> {
    let c = condition(group.status.as_ref().map(|s| &s.conditions), "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn storage_group_and_backup_job_report_what_they_wait_for() {
    let client = client().await;
    hort_operator::crd_install::install(&client).await.unwrap();
    let ns = format!("hort-operator-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": ns}})).await;

    let metrics = Metrics::new();
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics: metrics.clone(),
    });
    let controllers = tokio::spawn(controllers::run(ctx, Scope::Namespace(ns.clone())));

    let groups: Api<StorageGroup> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<BackupJob> = Api::namespaced(client.clone(), &ns);

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
                "encryption": {"keySecretRef": {"name": "sg-key"}}
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

    // A Secret without one of the keys is named with the key; Secret values are never needed.
    create(
        &secrets,
        json!({"metadata": {"name": "sg-s3"}, "stringData": {"AWS_ACCESS_KEY_ID": "id"}}),
    )
    .await;
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
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sg-s3"},
                                 "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}}),
            ),
        )
        .await
        .unwrap();
    create(
        &secrets,
        json!({"metadata": {"name": "sg-key"}, "stringData": {"password": "pw"}}),
    )
    .await;
    create(
        &claims,
        json!({"metadata": {"name": "sg-disk"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    wait_for(&groups, "mirrored", "Ready=Unknown TargetsNotChecked", |g| {
        group_ready(g).is_some_and(|(status, reason, _)| status == "Unknown" && reason == "TargetsNotChecked")
    })
    .await;
    wait_for(&jobs, "waiting", "the job to follow the group's new state", |j| {
        condition(j.status.as_ref().map(|s| &s.conditions), "StorageGroupReady")
            .is_some_and(|c| c.message.contains("targets have not been checked yet"))
    })
    .await;

    let text = metrics.render();
    assert!(
        text.contains(&format!(
            r#"hort_storage_group_ready{{namespace="{ns}",storage_group="mirrored"}} 0"#
        )),
        "{text}"
    );
    assert!(
        text.contains(r#"hort_reconcile_total{kind="StorageGroup",result="success"}"#),
        "{text}"
    );
    assert!(
        !text.contains("pw") && !text.contains("secret\""),
        "metrics must not carry Secret values"
    );

    controllers.abort();
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}
