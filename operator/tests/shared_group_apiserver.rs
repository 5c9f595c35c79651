//! Jobs of tenant namespaces against a real API server: a BackupJob, a RestoreRequest and a
//! Verification with `storageGroupRef.kind: ClusterStorageGroup` get agent pods that reach only the group's
//! proxy, with the namespace's own password Secret and a projected token for the proxy, and no
//! storage credentials; a namespace the group does not select fails with reason
//! `NamespaceNotAllowed`, and so does the next job of a namespace taken off the selector. The
//! ClusterStorageGroup's status is written by the test as its controller would (pods never run
//! here).

#[allow(
    dead_code,
    reason = "helpers shared by the API-server tests; this one needs only some"
)]
mod support;

use hort_crds::{BackupJob, ClusterStorageGroup, RestoreRequest, Verification};
use hort_operator::clock::Clock;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{TestEnv, create, usable_claim, wait_for};

/// The reason of condition `type_` of a status's conditions, if set.
fn reason(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], type_: &str) -> Option<String> {
    conditions.iter().find(|c| c.type_ == type_).map(|c| c.reason.clone())
}

/// Labels namespace `ns` with `label` = `value` (`None` removes it).
async fn label(client: &kube::Client, ns: &str, label: &str, value: Option<&str>) {
    let patch = json!({"metadata": {"labels": {label: value}}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// The agent pod `name` of `pods`, once it exists.
async fn pod(pods: &Api<Pod>, name: &str) -> Pod {
    wait_for(pods, name, "the agent pod", |_| true).await;
    pods.get(name).await.unwrap()
}

/// Checks that `pod` reaches only the proxy of group `group` in `operator`, with the tenant
/// Secret's password and CA and a token for the proxy's audience.
fn assert_reaches_only_the_proxy(pod: &Pod, group: &str, operator: &str) {
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("hort-agent"));
    let env = spec.containers[0].env.clone().unwrap();
    let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
    assert_eq!(
        value("HORT_REPOSITORY"),
        Some(format!("hort+https://hort-store-{group}.{operator}.svc:8443/{group}"))
    );
    let tenant_secret = format!("hort-tenant-{group}");
    let secrets: Vec<(String, String, String)> = env
        .iter()
        .filter_map(|e| {
            let key = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((e.name.clone(), key.name.clone(), key.key.clone()))
        })
        .collect();
    assert_eq!(
        secrets,
        [("HORT_PASSWORD".into(), tenant_secret.clone(), "password".into())],
        "the only Secret the pod reads is the namespace's own password"
    );
    let volumes = spec.volumes.clone().unwrap_or_default();
    let sources: Vec<_> = volumes
        .iter()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.clone().unwrap_or_default())
        .collect();
    let token = sources.iter().find_map(|s| s.service_account_token.clone()).unwrap();
    assert_eq!(token.audience.as_deref(), Some("hort-store"));
    let ca = sources.iter().find_map(|s| s.secret.clone()).unwrap();
    assert_eq!(ca.name, tenant_secret);
    assert!(
        volumes.iter().all(|v| v.secret.is_none()),
        "no Secret volume: {volumes:?}"
    );
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_tenant_job_runs_through_the_proxy_and_a_namespace_not_allowed_fails() {
    let allowed = TestEnv::start("hort-tenant-a", Clock::System).await;
    let other = TestEnv::start("hort-tenant-b", Clock::System).await;
    let client = &allowed.client;
    let pid = std::process::id();
    let selector = format!("hort-test-shared-{pid}");
    label(client, &allowed.ns, &selector, Some("yes")).await;
    let name = format!("shared-{pid}");
    let groups: Api<ClusterStorageGroup> = Api::all(client.clone());
    create(
        &groups,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "ClusterStorageGroup", "metadata": {"name": name},
               "spec": {"storageGroupRef": {"name": "s3"},
                        "allowedNamespaces": {"matchLabels": {&selector: "yes"}},
                        "tenantKeySecretRef": {"name": "tenant-root", "key": "secret"}}}),
    )
    .await;
    // As the group's controller reports once the namespace's repository exists and its proxy
    // is available. The other namespace is neither selected nor taken in.
    let status = json!({"status": {
        "tenants": [{"namespace": allowed.ns, "repositoryId": "ra"}],
        "tenantCount": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "TenantsReady", "message": "ready",
                        "lastTransitionTime": "2026-12-01T00:00:00Z"}]}});
    groups
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let shared = json!({"kind": "ClusterStorageGroup", "name": name});
    for env in [&allowed, &other] {
        usable_claim(client, &env.ns, "data").await;
    }

    // The allowed namespace backs up and restores through the proxy only.
    let job = |job: &str| {
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": job},
               "spec": {"storageGroupRef": shared, "source": {"volume": {"claimName": "data", "snapshot": "None"}}}})
    };
    let jobs: Api<BackupJob> = allowed.api();
    create(&jobs, job("nightly")).await;
    let pods: Api<Pod> = allowed.api();
    assert_reaches_only_the_proxy(&pod(&pods, "nightly-1").await, &name, &allowed.ns);
    let restores: Api<RestoreRequest> = allowed.api();
    let restore = |request: &str| {
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "RestoreRequest", "metadata": {"name": request},
               "spec": {"storageGroupRef": shared, "source": {"snapshotId": "ab12cd34"},
                        "target": {"volume": {"claimName": "data", "overwrite": "Always"}}}})
    };
    create(&restores, restore("back")).await;
    assert_reaches_only_the_proxy(&pod(&pods, "back-restore").await, &name, &allowed.ns);
    let verifications: Api<Verification> = allowed.api();
    let verification = |v: &str| {
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "Verification", "metadata": {"name": v},
               "spec": {"storageGroupRef": shared, "repository": {"readDataPercent": 10}}})
    };
    create(&verifications, verification("packs")).await;
    assert_reaches_only_the_proxy(&pod(&pods, "packs-verify").await, &name, &allowed.ns);

    // The other namespace fails before any pod, naming the group and the field.
    let failed_with = |want: &'static str| {
        move |conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
            reason(conditions, "Failed").as_deref() == Some(want)
        }
    };
    let not_allowed = failed_with("NamespaceNotAllowed");
    let other_jobs: Api<BackupJob> = other.api();
    create(&other_jobs, job("nightly")).await;
    wait_for(&other_jobs, "nightly", "the job to fail: namespace not allowed", |j| {
        let status = j.status.clone().unwrap_or_default();
        let message = status.message.unwrap_or_default();
        status.phase == hort_crds::common::Phase::Failed
            && not_allowed(&status.conditions)
            && message.contains(&format!("namespace {:?} is not allowed", other.ns))
            && message.contains("spec.allowedNamespaces")
    })
    .await;
    let other_restores: Api<RestoreRequest> = other.api();
    create(&other_restores, restore("back")).await;
    wait_for(
        &other_restores,
        "back",
        "the restore to fail: namespace not allowed",
        |r| {
            let status = r.status.clone().unwrap_or_default();
            status.phase == hort_crds::common::Phase::Failed && not_allowed(&status.conditions)
        },
    )
    .await;
    let other_verifications: Api<Verification> = other.api();
    create(&other_verifications, verification("packs")).await;
    wait_for(
        &other_verifications,
        "packs",
        "the verification to fail: namespace not allowed",
        |v| {
            let status = v.status.clone().unwrap_or_default();
            status.phase == hort_crds::common::Phase::Failed && not_allowed(&status.conditions)
        },
    )
    .await;
    let other_pods: Api<Pod> = other.api();
    let started: Vec<String> = other_pods
        .list(&Default::default())
        .await
        .unwrap()
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert!(
        started.is_empty(),
        "no agent pod in the namespace not allowed: {started:?}"
    );

    // Taken off the selector, the allowed namespace's next job fails the same way.
    label(client, &allowed.ns, &selector, None).await;
    create(&jobs, job("after")).await;
    wait_for(
        &jobs,
        "after",
        "the job to fail once the namespace is off the selector",
        |j| {
            let status = j.status.clone().unwrap_or_default();
            status.phase == hort_crds::common::Phase::Failed && not_allowed(&status.conditions)
        },
    )
    .await;
    assert!(pods.get_opt("after-1").await.unwrap().is_none());

    groups.delete(&name, &Default::default()).await.unwrap();
    allowed.stop().await;
    other.stop().await;
}
