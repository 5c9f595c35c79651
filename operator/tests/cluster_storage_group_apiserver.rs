//! A ClusterStorageGroup against a real API server: it shares a StorageGroup of the
//! operator's namespace with the labelled namespaces, creates each one's repository once
//! through a check pod in the operator's namespace (pods never run here: the test ends them
//! as the kubelet would), writes each one's password Secret, follows relabelled namespaces,
//! and names an unusable tenant root secret.

#[allow(
    dead_code,
    reason = "helpers shared by the API-server tests; this one needs only some"
)]
mod support;

use std::sync::Arc;

use hort_crds::ClusterStorageGroup;
use hort_operator::clock::Clock;
use hort_operator::context::Context;
use hort_operator::controllers;
use hort_protocol::report::encode;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{TestEnv, agent_settings, create, finish_pod, healthy_check, ready_s3_group, wait_for, wait_for_event};

const ROOT: &str = "a tenant root secret of 32+ bytes, for the test";

/// The tenant check pods of namespace `tenant` in the operator's namespace, newest first, once
/// there are `count`.
async fn tenant_pods(pods: &Api<Pod>, tenant: &str, count: usize) -> Vec<Pod> {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let mut found = pods
            .list(&ListParams::default().labels(&format!("hort.dev/tenant={tenant}")))
            .await
            .unwrap()
            .items;
        if found.len() == count {
            found.sort_by_key(|p| std::cmp::Reverse(p.name_any()));
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {count} check pods of {tenant}, found {:?}",
            found.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn env_value(pod: &Pod, name: &str) -> Option<String> {
    let env = pod.spec.as_ref()?.containers[0].env.as_ref()?;
    env.iter().find(|v| v.name == name)?.value.clone()
}

fn env_secret(pod: &Pod, name: &str) -> Option<(String, String)> {
    let env = pod.spec.as_ref()?.containers[0].env.as_ref()?;
    let key = env
        .iter()
        .find(|v| v.name == name)?
        .value_from
        .as_ref()?
        .secret_key_ref
        .as_ref()?;
    Some((key.name.clone(), key.key.clone()))
}

fn args(pod: &Pod) -> Vec<String> {
    pod.spec.as_ref().unwrap().containers[0].args.clone().unwrap()
}

fn ready(group: &ClusterStorageGroup) -> Option<(String, String, String)> {
    let c = group.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn tenants(group: &ClusterStorageGroup) -> Vec<(String, Option<String>)> {
    let tenants = group.status.as_ref().map(|s| s.tenants.clone()).unwrap_or_default();
    tenants.into_iter().map(|t| (t.namespace, t.repository_id)).collect()
}

/// The password in Secret `name` of `namespace`, if it exists.
async fn password_in(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap()?;
    Some(String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap())
}

async fn wait_for_password(client: &kube::Client, namespace: &str, name: &str, wanted: Option<&str>) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let found = password_in(client, namespace, name).await;
        if found.as_deref() == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Secret {namespace}/{name}: expected {wanted:?}, found {found:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Reconciles the group at once (Secrets are not watched: a changed one is seen at the next
/// reconcile, which a change of the group starts).
async fn touch(groups: &Api<ClusterStorageGroup>, name: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {"test/touch": value}}});
    groups
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn each_selected_namespace_gets_its_repository_once_and_its_password_secret() {
    let env = TestEnv::start("hort-csg", Clock::System).await;
    let (client, operator) = (&env.client, &env.ns);
    ready_s3_group(client, operator).await;
    let pid = std::process::id();
    let label = format!("hort-test-csg-{pid}");
    let [a, b, c] = ["a", "b", "c"].map(|n| format!("hort-csg-{n}-{pid}"));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (ns, selected) in [(&a, true), (&b, true), (&c, false)] {
        let labels = if selected { json!({&label: "yes"}) } else { json!({}) };
        create(&namespaces, json!({"metadata": {"name": ns, "labels": labels}})).await;
    }
    let secrets: Api<Secret> = env.api();
    create(
        &secrets,
        json!({"metadata": {"name": "tenant-root", "labels": {"hort.dev/usable": "true"}},
               "stringData": {"secret": ROOT}}),
    )
    .await;
    let name = format!("shared-{pid}");
    let secret_name = format!("hort-tenant-{name}");
    let groups: Api<ClusterStorageGroup> = Api::all(client.clone());
    create(
        &groups,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "ClusterStorageGroup", "metadata": {"name": name},
               "spec": {"storageGroupRef": {"name": "s3"},
                        "allowedNamespaces": {"matchLabels": {&label: "yes"},
                                              "matchExpressions": [{"key": label, "operator": "In", "values": ["yes"]}]},
                        "tenantKeySecretRef": {"name": "tenant-root", "key": "secret"}}}),
    )
    .await;
    let ctx = Context::new(
        client.clone(),
        env.metrics.clone(),
        Clock::System,
        agent_settings(),
        operator.clone(),
        None,
    );
    let controller = tokio::spawn(controllers::cluster_storage_groups(Arc::new(ctx), 4));
    let pods: Api<Pod> = env.api();

    // One check pod per selected namespace, in the operator's namespace, creating its
    // repository with the root secret by reference and without the group's password.
    for ns in [&a, &b] {
        let pod = &tenant_pods(&pods, ns, 1).await[0];
        assert_eq!(env_value(pod, "HORT_TENANT").as_deref(), Some(ns.as_str()));
        assert_eq!(
            env_secret(pod, "HORT_TENANT_ROOT_SECRET"),
            Some(("tenant-root".into(), "secret".into()))
        );
        assert_eq!(env_value(pod, "HORT_TENANT_ROOT_SECRET"), None);
        assert_eq!(
            env_secret(pod, "HORT_PASSWORD"),
            None,
            "the StorageGroup's own password is not passed"
        );
        assert_eq!(args(pod), ["check", "--init"]);
        assert_eq!(pod.owner_references()[0].name, name);
    }
    tenant_pods(&pods, &c, 0).await;
    for ns in [&a, &b] {
        let derived = hort_protocol::tenant::password(ROOT.as_bytes(), ns).unwrap();
        wait_for_password(client, ns, &secret_name, Some(&derived)).await;
    }
    assert_eq!(password_in(client, &c, &secret_name).await, None);
    wait_for(&groups, &name, "Ready False while the repositories are created", |g| {
        ready(g).is_some_and(|(s, r, _)| s == "False" && r == "TenantsPending")
    })
    .await;

    // Their reports record the repository ids; the group is Ready.
    for (ns, id) in [(&a, "ra"), (&b, "rb")] {
        let pod = &tenant_pods(&pods, ns, 1).await[0];
        finish_pod(&pods, &pod.name_any(), 0, &encode(&healthy_check(id))).await;
    }
    wait_for(&groups, &name, "both repositories recorded and Ready", |g| {
        tenants(g) == [(a.clone(), Some("ra".into())), (b.clone(), Some("rb".into()))]
            && g.status.as_ref().unwrap().tenant_count == Some(2)
            && ready(g).is_some_and(|(s, _, _)| s == "True")
    })
    .await;

    // The next check of a recorded repository names it and never creates one.
    let first = tenant_pods(&pods, &a, 1).await.remove(0);
    pods.delete(&first.name_any(), &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let again = loop {
        let found = tenant_pods(&pods, &a, 1).await.remove(0);
        // By uid: a check started within the same second has the same name.
        if found.uid() != first.uid() {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no second check of {a}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        args(&again).ends_with(&["--repository-id".into(), "ra".into()]),
        "{:?}",
        args(&again)
    );
    assert!(!args(&again).contains(&"--init".to_string()));
    finish_pod(&pods, &again.name_any(), 0, &encode(&healthy_check("ra"))).await;
    // Let the reconcile that check started pass: then only the Namespace watch can notice
    // the relabelling below before the next periodic reconcile (minutes away).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    // Relabelling: c joins (its Secret and a check appear), b leaves (its entry and Secret go).
    let join = json!({"metadata": {"labels": {&label: "yes"}}});
    namespaces
        .patch(&c, &PatchParams::default(), &Patch::Merge(&join))
        .await
        .unwrap();
    let leave = json!({"metadata": {"labels": {&label: null}}});
    namespaces
        .patch(&b, &PatchParams::default(), &Patch::Merge(&leave))
        .await
        .unwrap();
    wait_for(&groups, &name, "c pending, b gone", |g| {
        tenants(g) == [(a.clone(), Some("ra".into())), (c.clone(), None)]
            && ready(g).is_some_and(|(s, r, m)| s == "False" && r == "TenantsPending" && m.contains(c.as_str()))
    })
    .await;
    let derived = hort_protocol::tenant::password(ROOT.as_bytes(), &c).unwrap();
    wait_for_password(client, &c, &secret_name, Some(&derived)).await;
    wait_for_password(client, &b, &secret_name, None).await;
    tenant_pods(&pods, &c, 1).await;

    // A root secret too short, then one not marked usable: Ready False naming the field.
    let short = json!({"stringData": {"secret": "too short"}});
    secrets
        .patch("tenant-root", &PatchParams::default(), &Patch::Merge(&short))
        .await
        .unwrap();
    touch(&groups, &name, "short").await;
    wait_for(&groups, &name, "Ready False for the short key", |g| {
        ready(g).is_some_and(|(s, r, m)| {
            s == "False" && r == "TenantKeyInvalid" && m.contains("(spec.tenantKeySecretRef) holds 9 bytes")
        })
    })
    .await;
    assert_eq!(
        tenants(&groups.get(&name).await.unwrap())[0],
        (a.clone(), Some("ra".into())),
        "a recorded repository is kept through a passing problem"
    );
    let notes = wait_for_event(client, "default", &name, "TenantKeyInvalid").await;
    assert!(
        notes.iter().all(|n| !n.contains("too short")),
        "the value is never in an Event: {notes:?}"
    );
    let unmarked = json!({"metadata": {"labels": {"hort.dev/usable": null}}, "stringData": {"secret": ROOT}});
    secrets
        .patch("tenant-root", &PatchParams::default(), &Patch::Merge(&unmarked))
        .await
        .unwrap();
    touch(&groups, &name, "unmarked").await;
    wait_for(&groups, &name, "Ready False for the unmarked key", |g| {
        ready(g).is_some_and(|(s, r, m)| {
            s == "False" && r == "ReferenceNotUsable" && m.contains("\"tenant-root\" (spec.tenantKeySecretRef)")
        })
    })
    .await;

    // A StorageGroup that is not there is named.
    let elsewhere = json!({"spec": {"storageGroupRef": {"name": "missing"}}});
    groups
        .patch(&name, &PatchParams::default(), &Patch::Merge(&elsewhere))
        .await
        .unwrap();
    wait_for(&groups, &name, "Ready False for the missing StorageGroup", |g| {
        ready(g).is_some_and(|(s, r, m)| {
            s == "False"
                && r == "StorageGroupNotFound"
                && m.contains("StorageGroup \"missing\" (spec.storageGroupRef.name)")
        })
    })
    .await;

    controller.abort();
    groups.delete(&name, &DeleteParams::default()).await.unwrap();
    for ns in [&a, &b, &c] {
        namespaces.delete(ns, &DeleteParams::default()).await.unwrap();
    }
    env.stop().await;
}
