//! `allowedNamespaces` against a real API server (KUBECONFIG, with the CRD
//! `crds/clusterstoragegroups.hort.dev.yaml` installed; run with `--include-ignored`): the
//! proxy serves a group to a namespace its ClusterStorageGroup selects, refuses another with
//! 403 naming the group, and refuses the first within [`DECISION_TTL`] of its label being
//! taken away.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hort_crds::ClusterStorageGroup;
use hort_crds::cluster_storage_group::{ClusterStorageGroupSpec, OperatorObjectRef, OperatorSecretKeyRef};
use hort_engine::backend::http::HttpBackend;
use hort_engine::backend::{Backend, BackendError, FileKind};
use hort_engine::id::Id;
use hort_protocol::StoreLocation;
use hort_store::admission::{ClusterStorageGroups, DECISION_TTL};
use hort_store::auth::FixedTokens;
use hort_store::check::Namespace;
use hort_store::places::{GroupSettings, Places};
use hort_store::server::{Store, serve};
use k8s_openapi::api::core::v1::Namespace as KubeNamespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

const LABEL: &str = "hort.dev/test-tenant";

fn labelled(name: &str, value: Option<&str>) -> KubeNamespace {
    KubeNamespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: value.map(|v| BTreeMap::from([(LABEL.to_owned(), v.to_owned())])),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn shared_group(name: &str) -> ClusterStorageGroup {
    let spec = ClusterStorageGroupSpec {
        storage_group_ref: OperatorObjectRef { name: "targets".into() },
        allowed_namespaces: LabelSelector {
            match_labels: Some(BTreeMap::from([(LABEL.to_owned(), "yes".to_owned())])),
            ..Default::default()
        },
        tenant_key_secret_ref: OperatorSecretKeyRef {
            name: "tenant-root".into(),
            key: "secret".into(),
        },
        bandwidth: None,
        replicas: None,
    };
    ClusterStorageGroup::new(name, spec)
}

/// The status line and body of a raw list request with `token`.
fn raw_list(port: u16, group: &str, token: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /v1/{group}/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
#[ignore = "needs a kube-apiserver: KUBECONFIG with the ClusterStorageGroup CRD installed"]
fn only_namespaces_the_group_selects_are_served_and_a_removed_one_within_the_ttl() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(Client::try_default())
        .unwrap_or_else(|e| panic!("no usable KUBECONFIG ({e})"));
    let nanos = std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos();
    let suffix = format!("{:x}", std::process::id() ^ nanos);
    let (a, b, group) = (
        format!("allowed-{suffix}"),
        format!("other-{suffix}"),
        format!("shared-{suffix}"),
    );
    let namespaces = Api::<KubeNamespace>::all(client.clone());
    let groups = Api::<ClusterStorageGroup>::all(client.clone());
    runtime.block_on(async {
        let post = PostParams::default();
        namespaces.create(&post, &labelled(&a, Some("yes"))).await.unwrap();
        namespaces.create(&post, &labelled(&b, None)).await.unwrap();
        groups
            .create(&post, &shared_group(&group))
            .await
            .unwrap_or_else(|e| panic!("create ClusterStorageGroup (is its CRD installed?): {e}"));
    });

    let root = tempfile::tempdir().unwrap();
    let tokens = tempfile::tempdir().unwrap();
    let ns = |n: &str| Namespace::parse(n).unwrap();
    let auth = FixedTokens::default().with("token-a", ns(&a)).with("token-b", ns(&b));
    let places = Places::new(vec![root.path().display().to_string()], GroupSettings::default()).unwrap();
    let store = Store::new(auth, HashMap::from([(group.clone(), places)]), std::env::temp_dir())
        .with_admission(ClusterStorageGroups::new(client.clone()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        serve(listener, Arc::new(store)).await
    });
    let client_of = |token: &str| {
        let file = tokens.path().join(token);
        std::fs::write(&file, token).unwrap();
        let location = StoreLocation {
            host: "127.0.0.1".into(),
            port,
            group: group.clone(),
            tls: false,
        };
        HttpBackend::new(location, Some(file), None).unwrap()
    };
    let (team_a, team_b) = (client_of("token-a"), client_of("token-b"));

    let bytes = b"an index of the allowed namespace".as_slice();
    let name = Id::of_file(bytes).to_hex();
    team_a.write(FileKind::Index, &name, bytes).unwrap();
    assert_eq!(team_a.list(FileKind::Index).unwrap(), [name]);

    let refused = match team_b.list(FileKind::Index) {
        Err(BackendError::Refused { message, .. }) => message,
        other => panic!("{b} was served: {other:?}"),
    };
    let expected = format!("namespace `{b}` is not allowed to use storage group `{group}`");
    assert!(refused.contains(&expected), "{refused}");
    let (status, body) = raw_list(port, &group, "token-b");
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = body.to_string();
    assert!(text.contains(&expected), "{text}");
    for secret in [a.as_str(), "tenants", &root.path().display().to_string()] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    // Off the selector: refused within the time a decision is remembered.
    let off = serde_json::json!({"metadata": {"labels": {LABEL: "no"}}});
    runtime
        .block_on(namespaces.patch(&a, &PatchParams::default(), &Patch::Merge(&off)))
        .unwrap();
    let taken_off = Instant::now();
    loop {
        match team_a.list(FileKind::Index) {
            Ok(_) => assert!(
                taken_off.elapsed() < DECISION_TTL + Duration::from_secs(2),
                "{a} still served {:?} after it left the selector",
                taken_off.elapsed()
            ),
            Err(BackendError::Refused { message, .. }) => {
                assert!(message.contains("is not allowed"), "{message}");
                break;
            }
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    runtime.block_on(async {
        let _ = groups.delete(&group, &DeleteParams::default()).await;
        for n in [&a, &b] {
            let _ = namespaces.delete(n, &DeleteParams::default()).await;
        }
    });
}
