//! The generated CRDs, the examples and the invalid specs, submitted to a real kube-apiserver:
//! the CRDs install and become Established, every example is accepted (strict field
//! validation, dry run), and every invalid spec is rejected with a message that names the
//! field. Run through `scripts/test.sh`, which starts the API server.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};

const FIELD_MANAGER: &str = "hort-crd-tests";
const NEEDS_APISERVER: &str = "needs a kube-apiserver: run scripts/test.sh";

async fn client() -> Client {
    Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no usable KUBECONFIG ({e}); {NEEDS_APISERVER}"))
}

/// Applies every generated CRD and waits until the API server serves it.
async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in hort_crds::crds() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("the API server rejected CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established within 30 s"))
        .unwrap();
    }
}

/// A fresh namespace for one test, deleted by the caller.
async fn temp_namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", std::process::id());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    let api: Api<Namespace> = Api::all(client.clone());
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("cannot create namespace {name}: {e}"),
    }
    name
}

async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// The kinds the examples hold that have no namespace.
const CLUSTER_SCOPED: [&str; 1] = ["ClusterStorageGroup"];

/// Submits one document as `kubectl create` does (strict field validation), as a dry run.
async fn dry_run_create(client: &Client, namespace: &str, doc: &serde_json::Value) -> Result<(), kube::Error> {
    let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("a Kubernetes object");
    let types = obj.types.clone().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
    let resource = ApiResource::from_gvk(&gvk);
    let api: Api<DynamicObject> = if CLUSTER_SCOPED.contains(&types.kind.as_str()) {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, &resource)
    };
    let params = PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    let mut request = kube::core::Request::new(api.resource_url())
        .create(&params, serde_json::to_vec(doc).expect("JSON"))
        .expect("a valid request");
    let strict = format!("{}&fieldValidation=Strict", request.uri());
    *request.uri_mut() = strict.parse().expect("a valid URI");
    client.request::<DynamicObject>(request).await.map(|_| ())
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn examples_are_accepted_by_the_apiserver() {
    let client = client().await;
    install_crds(&client).await;
    let ns = temp_namespace(&client, "hort-examples").await;
    let mut failures = Vec::new();
    for example in support::examples() {
        for doc in &example.documents {
            if let Err(e) = dry_run_create(&client, &ns, doc).await {
                failures.push(format!("{} ({}): {e}", example.path.display(), doc["kind"]));
            }
        }
    }
    delete_namespace(&client, &ns).await;
    assert!(failures.is_empty(), "examples rejected:\n{}", failures.join("\n"));
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn invalid_specs_are_rejected_naming_the_field() {
    let client = client().await;
    install_crds(&client).await;
    let ns = temp_namespace(&client, "hort-invalid").await;
    let specs = support::invalid_specs();
    assert!(specs.len() >= 10, "crds/tests/invalid should hold at least 10 mistakes");
    let mut failures = Vec::new();
    for spec in specs {
        let text = std::fs::read_to_string(&spec.path).unwrap();
        let expected: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(
            !expected.is_empty(),
            "{}: needs `# expect: <message part>` lines",
            spec.path.display()
        );
        let name = spec.path.file_name().unwrap().to_string_lossy().into_owned();
        match dry_run_create(&client, &ns, &spec.documents[0]).await {
            Ok(()) => failures.push(format!("{name}: accepted, expected an error containing {expected:?}")),
            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => {
                for part in expected.iter().filter(|part| !e.message.contains(**part)) {
                    failures.push(format!("{name}: message {:?} lacks {part:?}", e.message));
                }
            }
            Err(e) => failures.push(format!("{name}: unexpected error {e}")),
        }
    }
    delete_namespace(&client, &ns).await;
    assert!(
        failures.is_empty(),
        "invalid specs not rejected as expected:\n{}",
        failures.join("\n")
    );
}
