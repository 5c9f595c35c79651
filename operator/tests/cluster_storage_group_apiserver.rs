//! A ClusterStorageGroup against a real API server: it shares a StorageGroup of the
//! operator's namespace with the labelled namespaces, creates each one's repository once
//! through a check pod in the operator's namespace (pods never run here: the test ends them
//! as the kubelet would), writes each one's password Secret, follows relabelled namespaces,
//! and names an unusable tenant root secret. It runs one proxy: a Deployment and Service
//! `hort-store-<group>` with a certificate for the Service's name, signed by the CA each
//! tenant's Secret holds; with no kubelet the proxy never becomes available, so the group
//! stays Ready False with reason `ProxyNotReady`. A name too long for the Service gets nothing.
//! Deleting the group deletes its proxy.

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
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
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

/// Key `key` of Secret `name` in `namespace`, once it exists.
async fn secret_key(client: &kube::Client, namespace: &str, name: &str, key: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let found = secrets.get_opt(name).await.unwrap();
        if let Some(value) = found.as_ref().and_then(|s| s.data.as_ref()?.get(key)) {
            return String::from_utf8(value.0.clone()).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no key {key} in Secret {namespace}/{name}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Checks `cert` (PEM) as a tenant's agent does: signed by `ca` (PEM), for `dns`, valid now.
fn verify_server_cert(ca: &str, cert: &str, dns: &str) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let leaf = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let name = ServerName::try_from(dns.to_string()).unwrap();
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        .unwrap_or_else(|e| panic!("the proxy's certificate does not verify for {dns}: {e}"));
}

/// The group's proxy: its TLS Secret, Deployment and Service in the operator's namespace,
/// owned by the group, and its CA in every tenant Secret of `tenants`.
async fn check_proxy(client: &kube::Client, operator: &str, group: &ClusterStorageGroup, tenants: &[&String]) {
    let name = group.name_any();
    let owned_by_group = |owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        owners
            .iter()
            .any(|o| Some(&o.uid) == group.uid().as_ref() && o.controller == Some(true))
    };
    let service_name = format!("hort-store-{name}");
    let tls_name = format!("{service_name}-tls");
    let ca = secret_key(client, operator, &tls_name, "ca.crt").await;
    let cert = secret_key(client, operator, &tls_name, "tls.crt").await;
    let tls = Api::<Secret>::namespaced(client.clone(), operator)
        .get(&tls_name)
        .await
        .unwrap();
    assert!(owned_by_group(tls.owner_references()));
    let keys: Vec<&String> = tls.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    for dns in [
        format!("{service_name}.{operator}.svc"),
        format!("{service_name}.{operator}.svc.cluster.local"),
    ] {
        verify_server_cert(&ca, &cert, &dns);
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), operator);
    wait_for(&deployments, &service_name, "the proxy's Deployment", |_| true).await;
    let deployment = deployments.get(&service_name).await.unwrap();
    assert!(owned_by_group(deployment.owner_references()));
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(group.spec.replicas.unwrap_or(1)), "spec.replicas");
    let template = spec.template;
    let pod = template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("hort-store"));
    let container = &pod.containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["/usr/local/bin/hort-store".to_string()][..])
    );
    let env = container.env.clone().unwrap();
    let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
    assert_eq!(value("HORT_STORE_GROUP"), Some(name.clone()));
    assert_eq!(value("HORT_STORE_LISTEN").as_deref(), Some("0.0.0.0:8443"));
    assert!(
        env.iter().all(|e| e.name != "HORT_PASSWORD"),
        "the proxy gets no repository password"
    );
    let tls_volume = pod.volumes.iter().flatten().find(|v| v.name == "tls").unwrap();
    assert_eq!(
        tls_volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some(tls_name.as_str())
    );

    let services: Api<Service> = Api::namespaced(client.clone(), operator);
    let service = services.get(&service_name).await.unwrap();
    assert!(owned_by_group(service.owner_references()));
    let service_spec = service.spec.unwrap();
    let port = &service_spec.ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("https"), 8443));
    assert_eq!(service_spec.selector, template.metadata.unwrap().labels);

    for tenant in tenants {
        let tenant_ca = secret_key(client, tenant, &format!("hort-tenant-{name}"), "ca.crt").await;
        assert_eq!(tenant_ca, ca, "the tenant Secret of {tenant} holds the proxy's CA");
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
                        "tenantKeySecretRef": {"name": "tenant-root", "key": "secret"},
                        "replicas": 2}}),
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
        // The root secret as a file from its Secret, never in the environment.
        assert_eq!(env_secret(pod, "HORT_TENANT_ROOT_SECRET"), None);
        assert_eq!(env_value(pod, "HORT_TENANT_ROOT_SECRET"), None);
        assert_eq!(
            env_value(pod, "HORT_TENANT_ROOT_SECRET_FILE").as_deref(),
            Some("/etc/hort/tenant-root/secret")
        );
        let root = pod
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "tenant-root");
        let root = root.and_then(|v| v.secret.clone()).unwrap();
        assert_eq!(root.secret_name.as_deref(), Some("tenant-root"));
        assert_eq!(root.items.unwrap()[0].key, "secret");
        assert_eq!(
            env_secret(pod, "HORT_PASSWORD"),
            None,
            "the StorageGroup's own password is not passed"
        );
        assert_eq!(args(pod), ["check", "--init", "--snapshots"]);
        assert_eq!(pod.owner_references()[0].name, name);
    }
    tenant_pods(&pods, &c, 0).await;
    for ns in [&a, &b] {
        let derived = hort_protocol::tenant::password(ROOT.as_bytes(), ns).unwrap();
        wait_for_password(client, ns, &secret_name, Some(&derived)).await;
    }
    assert_eq!(password_in(client, &c, &secret_name).await, None);
    check_proxy(client, operator, &groups.get(&name).await.unwrap(), &[&a, &b]).await;
    wait_for(&groups, &name, "Ready False while the repositories are created", |g| {
        ready(g).is_some_and(|(s, r, _)| s == "False" && r == "TenantsPending")
    })
    .await;

    // Their reports record the repository ids; the group is Ready.
    for (ns, id) in [(&a, "ra"), (&b, "rb")] {
        let pod = &tenant_pods(&pods, ns, 1).await[0];
        finish_pod(&pods, &pod.name_any(), 0, &encode(&healthy_check(id))).await;
    }
    // Without a kubelet the proxy never has an available replica: all else is ready.
    let deployment = format!("\"hort-store-{name}\" in namespace \"{operator}\"");
    wait_for(&groups, &name, "both repositories recorded, the proxy not ready", |g| {
        tenants(g) == [(a.clone(), Some("ra".into())), (b.clone(), Some("rb".into()))]
            && g.status.as_ref().unwrap().tenant_count == Some(2)
            && ready(g).is_some_and(|(s, r, m)| s == "False" && r == "ProxyNotReady" && m.contains(&deployment))
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
    // Its report counts the namespace's snapshots and measures its files: the status shows
    // them.
    let mut counted = hort_protocol::CheckReport {
        snapshots: Some(hort_protocol::SnapshotCount {
            count: 2,
            newest_id: Some("ab12".into()),
            newest_time: Some("2026-12-01T02:00:00Z".into()),
        }),
        ..healthy_check("ra")
    };
    counted.targets[0].bytes_used = Some(7 << 20);
    finish_pod(&pods, &again.name_any(), 0, &encode(&counted)).await;
    wait_for(&groups, &name, "a's snapshots in its tenant status", |g| {
        let tenants = &g.status.as_ref().unwrap().tenants;
        tenants
            .iter()
            .find(|t| t.namespace == a)
            .and_then(|t| t.snapshots.as_ref())
            .is_some_and(|s| {
                s.count == 2
                    && s.last_snapshot_id.as_deref() == Some("ab12")
                    && s.last_backup_time.as_deref() == Some("2026-12-01T02:00:00Z")
                    && s.bytes_used == Some(7 << 20)
            })
    })
    .await;
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
    check_proxy(client, operator, &groups.get(&name).await.unwrap(), &[&a, &c]).await;

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

    // A name too long for the proxy's Service: Ready False naming the limit, nothing made.
    let long = format!("{}-{pid}", "x".repeat(52 - pid.to_string().len()));
    create(
        &groups,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "ClusterStorageGroup", "metadata": {"name": long},
               "spec": {"storageGroupRef": {"name": "s3"}, "allowedNamespaces": {"matchLabels": {&label: "yes"}},
                        "tenantKeySecretRef": {"name": "tenant-root", "key": "secret"}}}),
    )
    .await;
    wait_for(&groups, &long, "Ready False for the long name", |g| {
        ready(g).is_some_and(|(s, r, m)| s == "False" && r == "NameTooLong" && m.contains("at most 52"))
    })
    .await;
    let deployments: Api<Deployment> = env.api();
    assert!(
        deployments
            .get_opt(&format!("hort-store-{long}"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(password_in(client, &a, &format!("hort-tenant-{long}")).await, None);

    controller.abort();
    groups.delete(&long, &DeleteParams::default()).await.unwrap();
    groups.delete(&name, &DeleteParams::default()).await.unwrap();
    // The proxy goes with its group, by the garbage collector (kube-controller-manager).
    let services: Api<Service> = env.api();
    let tls: Api<Secret> = env.api();
    let proxy = format!("hort-store-{name}");
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let left = (
            deployments.get_opt(&proxy).await.unwrap().is_some(),
            services.get_opt(&proxy).await.unwrap().is_some(),
            tls.get_opt(&format!("{proxy}-tls")).await.unwrap().is_some(),
        );
        if left == (false, false, false) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy's (Deployment, Service, Secret) are left: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for ns in [&a, &b, &c] {
        namespaces.delete(ns, &DeleteParams::default()).await.unwrap();
    }
    env.stop().await;
}
