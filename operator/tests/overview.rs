//! The overview page against a real kube-apiserver: no or a bad token gets 401 and nothing
//! else; a ServiceAccount with a RoleBinding in one namespace sees that namespace's jobs (a
//! succeeded, a running and a failed one, with their state texts), schedules and groups, and
//! nothing of another namespace; and a headless chromium logs in through the form, sees the
//! three jobs with their colours and texts, and filters them. Run through `scripts/test.sh`,
//! which starts the API server and installs chromium (scripts/install-chromium.sh).
//!
//! With `HORT_OVERVIEW_SCREENSHOTS=DIR` the browser test saves its screenshots of the main
//! views there (docs/images/ holds the committed ones).

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hort_crds::{BackupJob, Schedule, StorageGroup};
use hort_operator::agent::browse::AgentImage;
use hort_operator::overview::{self, Overview, Source};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use prometheus::Registry;
use serde_json::json;
use tower::ServiceExt;

mod cdp;
mod promtool_check;

/// Two namespaces with Hort objects, a ServiceAccount that may read only the first, and the
/// page's router.
struct Fixture {
    client: Client,
    /// The namespace the viewer may read.
    a: String,
    /// The namespace the viewer may not read.
    b: String,
    /// A token of ServiceAccount `viewer` in `a` (TokenRequest API).
    viewer: String,
    /// A token of ServiceAccount `nobody` in `a`, bound to no role.
    nobody: String,
    registry: Registry,
    router: Router,
}

impl Fixture {
    async fn start(prefix: &str) -> Self {
        let config = Config::infer()
            .await
            .unwrap_or_else(|e| panic!("no usable KUBECONFIG ({e}); run scripts/test.sh"));
        let client = Client::try_from(config.clone()).unwrap();
        hort_operator::crd_install::install(&client).await.unwrap();
        let a = format!("{prefix}-a-{}", std::process::id());
        let b = format!("{prefix}-b-{}", std::process::id());
        for ns in [&a, &b] {
            create(
                &Api::<Namespace>::all(client.clone()),
                json!({"metadata": {"name": ns}}),
            )
            .await;
            objects(&client, ns).await;
        }
        let b_job = format!("{b}-secret-job");
        job(
            &client,
            &b,
            &b_job,
            None,
            json!({"phase": "Succeeded", "snapshotId": "bbbbbbbbbbbbbbbb"}),
        )
        .await;
        let viewer = service_account_token(&client, &a, "viewer").await;
        let nobody = service_account_token(&client, &a, "nobody").await;
        create(
            &Api::<Role>::namespaced(client.clone(), &a),
            json!({"metadata": {"name": "hort-reader"}, "rules": [
                {"apiGroups": ["hort.dev"], "resources": ["backupjobs", "schedules", "storagegroups"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]}),
        )
        .await;
        create(
            &Api::<RoleBinding>::namespaced(client.clone(), &a),
            json!({"metadata": {"name": "viewer-reads-hort"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hort-reader"},
                   "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": a}]}),
        )
        .await;
        let registry = Registry::new();
        let source = Source {
            client: client.clone(),
            base_config: config,
            namespace: None,
            // No kubelet runs beside this API server: a browse pod never starts.
            browse: overview::BrowseSettings {
                image: AgentImage {
                    image: "hort.local/hort-agent:dev".into(),
                    pull_policy: "Never".into(),
                },
                start_timeout: std::time::Duration::from_secs(3),
            },
            reviews: Default::default(),
        };
        let router = overview::router(Overview::new(source, &registry).unwrap());
        Self {
            client,
            a,
            b,
            viewer,
            nobody,
            registry,
            router,
        }
    }

    /// `GET path` with `headers`: the status, the `Set-Cookie` header and the body.
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, String, String) {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let cookie = response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, cookie, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// `GET path` with `token` as bearer token.
    async fn get(&self, path: &str, token: &str) -> (StatusCode, String) {
        let auth = format!("Bearer {token}");
        let (status, _, body) = self.request("GET", path, &[("authorization", &auth)], "").await;
        (status, body)
    }

    async fn stop(self) {
        for ns in [&self.a, &self.b] {
            Api::<Namespace>::all(self.client.clone())
                .delete(ns, &DeleteParams::default())
                .await
                .unwrap();
        }
    }
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// Waits until the API server's authorizer lets ServiceAccount `name` of `ns` create pods
/// there (a new RoleBinding takes a moment to count).
async fn may_create_pods(client: &Client, ns: &str, name: &str) {
    let review: SubjectAccessReview = serde_json::from_value(json!({"spec": {
        "user": format!("system:serviceaccount:{ns}:{name}"),
        "resourceAttributes": {"namespace": ns, "verb": "create", "resource": "pods"}}}))
    .unwrap();
    let reviews = Api::<SubjectAccessReview>::all(client.clone());
    for _ in 0..100 {
        let answer = reviews.create(&PostParams::default(), &review).await.unwrap();
        if answer.status.is_some_and(|s| s.allowed) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{name} in {ns} was not allowed to create pods within 10 s");
}

/// A token of ServiceAccount `name` in `ns` (created here), from the TokenRequest API.
async fn service_account_token(client: &Client, ns: &str, name: &str) -> String {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    create(&accounts, json!({"metadata": {"name": name}})).await;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let issued = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap();
    issued.status.unwrap().token
}

/// BackupJob `name` in `ns` with `status` (patched: no controller runs here).
async fn job(client: &Client, ns: &str, name: &str, schedule: Option<&str>, status: serde_json::Value) {
    let jobs = Api::<BackupJob>::namespaced(client.clone(), ns);
    let labels = schedule.map(|s| json!({"hort.dev/schedule": s})).unwrap_or(json!({}));
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": name, "labels": labels},
               "spec": {"storageGroupRef": {"name": "s3"}, "tags": ["app-db"],
                        "source": {"postgres": {"host": "app-db", "credentialsSecretRef": {"name": "app-db"}}}}}),
    )
    .await;
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await
        .unwrap();
}

/// A group, a schedule and three jobs (succeeded, running, failed) in `ns`, and an Event.
async fn objects(client: &Client, ns: &str) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let earlier = (now - k8s_openapi::jiff::SignedDuration::from_mins(20)).to_string();
    let now = now.to_string();
    let groups = Api::<StorageGroup>::namespaced(client.clone(), ns);
    create(
        &groups,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup", "metadata": {"name": "s3"},
               "spec": {"strategy": "Mirror", "encryption": {"keySecretRef": {"name": "hort-repository-password"}},
                        "targets": [
                            {"name": "primary", "s3": {"endpoint": "http://s3.hort-system.svc:8014", "bucket": "hort-backups", "credentialsSecretRef": {"name": "s3"}}},
                            {"name": "offsite", "s3": {"endpoint": "http://s3.offsite.svc:8014", "bucket": "hort-copy", "credentialsSecretRef": {"name": "s3"}}}]}}),
    )
    .await;
    groups
        .patch_status("s3", &PatchParams::default(), &Patch::Merge(json!({"status": {
            "usedSize": "1.4 GiB",
            "targets": [
                {"name": "primary", "reachable": true, "writable": true, "bytesUsed": 1_503_238_553u64, "missingFiles": 0, "lastCheckTime": now},
                {"name": "offsite", "reachable": false, "writable": false, "lastCheckTime": now,
                 "message": "connection refused by s3.offsite.svc:8014"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "MinHealthyTargets",
                            "message": "1 of 2 targets healthy (minHealthyTargets 1)", "lastTransitionTime": now}]}})))
        .await
        .unwrap();
    let schedules = Api::<Schedule>::namespaced(client.clone(), ns);
    create(
        &schedules,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": "nightly"},
               "spec": {"schedule": "30 2 * * *", "timeZone": "Europe/Berlin",
                        "retention": {"keepDaily": 7, "keepWeekly": 4},
                        "jobTemplate": {"spec": {"storageGroupRef": {"name": "s3"},
                            "source": {"postgres": {"host": "app-db", "credentialsSecretRef": {"name": "app-db"}}}}}}}),
    )
    .await;
    schedules
        .patch_status("nightly", &PatchParams::default(), &Patch::Merge(json!({"status": {
            "nextScheduleTime": "2099-01-01T01:30:00Z", "lastScheduleTime": earlier,
            "lastVerification": {"name": "nightly-verify-1", "time": now, "result": "Succeeded", "snapshotId": "5e1f0c2ab33d9f70"}}})))
        .await
        .unwrap();
    job(
        client,
        ns,
        "nightly-ok",
        Some("nightly"),
        json!({
        "phase": "Succeeded", "startTime": now, "completionTime": now, "snapshotId": "5e1f0c2ab33d9f70",
        "attempts": 1, "agentPod": "nightly-ok-agent-1",
        "stats": {"bytesRead": 1_288_490_188u64, "bytesNew": 214_748_364u64, "bytesStored": 96_636_764u64,
                  "storedSize": "92.2 MiB", "files": 3, "dedupRatio": 6.0, "durationSeconds": 71.4},
        "conditions": [{"type": "Complete", "status": "True", "reason": "Succeeded",
                        "message": "snapshot 5e1f0c2a written", "lastTransitionTime": now}]}),
    )
    .await;
    job(
        client,
        ns,
        "nightly-running",
        Some("nightly"),
        json!({
        "phase": "Running", "startTime": now, "attempts": 1,
        "progress": {"bytesDone": 450_000_000u64, "bytesTotal": 1_000_000_000u64, "percent": 45}}),
    )
    .await;
    job(
        client,
        ns,
        "manual-failed",
        None,
        json!({
        "phase": "Failed", "startTime": now, "completionTime": now, "attempts": 3,
        "message": "agent pod exited with 4: password authentication failed for user \"app\"",
        "conditions": [{"type": "Failed", "status": "True", "reason": "AgentFailed",
                        "message": "agent pod exited with 4", "lastTransitionTime": now}]}),
    )
    .await;
    create(
        &Api::<Event>::namespaced(client.clone(), ns),
        json!({"metadata": {"name": "nightly-ok.created"}, "type": "Normal", "reason": "AgentPodCreated",
               "message": "agent pod nightly-ok-agent-1 created", "firstTimestamp": now, "lastTimestamp": now,
               "involvedObject": {"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "name": "nightly-ok", "namespace": ns},
               "source": {"component": "hort-operator"}}),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn without_a_valid_token_the_page_serves_nothing_but_the_login_form() {
    let f = Fixture::start("hort-ov-auth").await;
    let paths = [
        "/".to_string(),
        "/schedules".into(),
        "/groups".into(),
        format!("/jobs/{}/nightly-ok", f.a),
    ];
    for path in &paths {
        let (status, _, body) = f.request("GET", path, &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert!(
            body.contains(r#"<label for="token">Kubernetes token</label>"#),
            "{path}: {body}"
        );
        for secret in [f.a.as_str(), f.b.as_str(), "nightly", "s3"] {
            assert!(!body.contains(secret), "{path} without a token shows {secret}");
        }
        for bad in [
            vec![("authorization", "Bearer not.a.token")],
            vec![("cookie", "hort_token=eyJhbGciOiJSUzI1NiJ9.e30.c2ln")],
        ] {
            let (status, _, body) = f.request("GET", path, &bad, "").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {bad:?}");
            assert!(body.contains("did not accept this token"), "{body}");
            assert!(
                !body.contains(&f.a) && !body.contains("nightly"),
                "{path} with a bad token: {body}"
            );
        }
    }
    // A bad token in the form is refused and no cookie is set; a good one sets the cookie,
    // which then opens the page.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, cookie, _) = f.request("POST", "/login", &form, "token=not.a.token").await;
    assert_eq!((status, cookie.as_str()), (StatusCode::UNAUTHORIZED, ""));
    let (status, cookie, _) = f.request("POST", "/login", &form, &format!("token={}", f.viewer)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(cookie.ends_with("; HttpOnly; SameSite=Strict; Path=/"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let (status, _, body) = f.request("GET", "/", &[("cookie", pair)], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("nightly-ok"));
    // A login form posted from another site is refused.
    let cross = [form[0], ("origin", "https://evil.example"), ("host", "127.0.0.1:8090")];
    let (status, cookie, _) = f
        .request("POST", "/login", &cross, &format!("token={}", f.viewer))
        .await;
    assert_eq!((status, cookie.as_str()), (StatusCode::FORBIDDEN, ""));
    f.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_user_sees_the_jobs_of_the_namespaces_they_may_list_and_nothing_else() {
    let f = Fixture::start("hort-ov-rbac").await;
    let (a, b) = (&f.a, &f.b);
    let (status, body) = f.get("/", &f.viewer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(&format!(
        "Signed in as <strong>system:serviceaccount:{a}:viewer</strong>"
    )));
    for (job, state) in [
        ("nightly-ok", "succeeded"),
        ("nightly-running", "running"),
        ("manual-failed", "failed"),
    ] {
        let row = body
            .split("<tr class=")
            .find(|r| r.contains(&format!(">{job}</a>")))
            .unwrap_or_else(|| panic!("{job} is listed: {body}"));
        let label = format!("{}{}", &state[..1].to_uppercase(), &state[1..]);
        assert!(row.starts_with(&format!("\"row-{state}\"")), "{job}: {row}");
        assert!(
            row.contains(&format!(r#"<span class="state state-{state}">{label}</span>"#)),
            "{job}: {row}"
        );
    }
    assert!(
        body.contains("45 % (429.2 MiB of 953.7 MiB)"),
        "the running job's progress"
    );
    assert!(body.contains("password authentication failed for user &quot;app&quot;"));
    assert!(!body.contains(b.as_str()), "nothing of namespace {b}: {body}");

    // Filters: by state, and a namespace the user may not list is refused.
    let (_, failed) = f.get("/?state=failed", &f.viewer).await;
    assert!(
        failed.contains("manual-failed") && !failed.contains(">nightly-ok<"),
        "{failed}"
    );
    let (_, by_schedule) = f.get(&format!("/?namespace={a}&schedule=nightly"), &f.viewer).await;
    assert!(by_schedule.contains(">nightly-ok<") && !by_schedule.contains(">manual-failed<"));
    let (status, body) = f.get(&format!("/?namespace={b}"), &f.viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains(&format!("you may not list backupjobs.hort.dev in namespace {b}")),
        "{body}"
    );
    assert!(!body.contains("secret-job"));
    let (status, _) = f.get(&format!("/jobs/{b}/{b}-secret-job"), &f.viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = f.get("/?state=done", &f.viewer).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A job's detail: snapshot, statistics, conditions and Events.
    let (status, detail) = f.get(&format!("/jobs/{a}/nightly-ok"), &f.viewer).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert!(detail.contains("<code>5e1f0c2ab33d9f70</code>"));
    assert!(
        detail
            .contains("<td>1.2 GiB</td><td>204.8 MiB</td><td>92.2 MiB</td><td>3</td><td>6.00 : 1</td><td>71.4 s</td>")
    );
    assert!(
        detail.contains("Complete=True") && detail.contains("agent pod nightly-ok-agent-1 created"),
        "{detail}"
    );
    // Its agent pod's log, read with the viewer's token: the pod was deleted.
    assert!(
        detail.contains("Log not shown: agent pod nightly-ok-agent-1 no longer exists"),
        "{detail}"
    );
    let (status, _) = f.get(&format!("/jobs/{a}/gone"), &f.viewer).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Schedules and groups of the user's namespace only.
    let (_, schedules) = f.get("/schedules", &f.viewer).await;
    assert!(schedules.contains("<td>7 daily, 4 weekly</td>") && schedules.contains("nightly-verify-1"));
    assert!(schedules.contains(r#"<time datetime="2099-01-01T01:30:00Z">"#));
    assert!(!schedules.contains(b.as_str()));
    let (_, groups) = f.get("/groups", &f.viewer).await;
    assert!(groups.contains(r#"<span class="state state-failed">Unreachable</span>"#));
    assert!(groups.contains("connection refused by s3.offsite.svc:8014") && groups.contains("1.4 GiB"));
    assert!(
        groups.contains(r#"<td><span class="state state-succeeded">In step</span></td>"#),
        "target lag"
    );
    assert!(!groups.contains(b.as_str()));

    // A user bound to no role sees no namespace at all.
    let (status, body) = f.get("/", &f.nobody).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("You may list BackupJobs in no namespace"));
    assert!(!body.contains(a.as_str()) || body.contains(&format!("system:serviceaccount:{a}:nobody")));
    assert!(!body.contains("nightly"));

    // The request counter passes promtool.
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&f.registry.gather())
        .unwrap();
    assert!(
        text.contains(r#"hort_overview_requests_total{code="403",view="jobs"} 1"#),
        "{text}"
    );
    // Two users clicked through several pages: each token was reviewed once, and the
    // repeated questions were answered from memory.
    let count = |labels: &str| -> u64 {
        let prefix = format!("hort_overview_reviews_total{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.parse().unwrap())
    };
    assert_eq!(count(r#"answer="asked",review="token""#), 2, "{text}");
    assert!(count(r#"answer="remembered",review="token""#) >= 5, "{text}");
    assert!(count(r#"answer="remembered",review="access""#) >= 1, "{text}");
    promtool_check::check_metrics(&text);
    f.stop().await;
}

/// The snapshot browser runs its agent pod with the user's own token: a viewer (no pods
/// create) is refused naming the right to ask for; an editor's pod is created in their
/// namespace and deleted again when it does not start (no kubelet here); another namespace's
/// group is refused without any pod.
#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn the_snapshot_browser_starts_its_agent_pod_with_the_users_rights() {
    let f = Fixture::start("hort-ov-browse").await;
    let (a, b) = (&f.a, &f.b);
    let pods = Api::<Pod>::namespaced(f.client.clone(), a);
    let selector = ListParams::default().labels("app.kubernetes.io/created-by=hort-overview");

    let (status, body) = f.get(&format!("/groups/{a}/s3/snapshots"), &f.viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains(&format!(
            "you may not start the snapshot browser&#39;s agent pod in namespace {a} (creating agent pod {a}/s3-browse-"
        )),
        "{body}"
    );
    assert!(
        body.contains("ClusterRole edit there (create on pods and pods/exec)"),
        "{body}"
    );
    assert!(
        body.contains("cannot create resource &quot;pods&quot;"),
        "the API server's words: {body}"
    );
    assert!(pods.list(&selector).await.unwrap().items.is_empty());

    let (status, body) = f.get(&format!("/groups/{b}/s3/snapshots"), &f.viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains(&format!("you may not get storagegroups.hort.dev in namespace {b}")),
        "{body}"
    );

    let editor = service_account_token(&f.client, a, "editor").await;
    create(
        &Api::<Role>::namespaced(f.client.clone(), a),
        json!({"metadata": {"name": "browser"}, "rules": [
            {"apiGroups": ["hort.dev"], "resources": ["storagegroups"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "delete"]},
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}),
    )
    .await;
    create(
        &Api::<RoleBinding>::namespaced(f.client.clone(), a),
        json!({"metadata": {"name": "editor-browses"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "browser"},
               "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": a}]}),
    )
    .await;
    may_create_pods(&f.client, a, "editor").await;
    // Agent pods run as the ServiceAccount the operator makes in each namespace it works in.
    create(
        &Api::<ServiceAccount>::namespaced(f.client.clone(), a),
        json!({"metadata": {"name": "hort-agent"}}),
    )
    .await;
    let watcher = {
        let (pods, selector) = (pods.clone(), selector.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                if let Some(pod) = pods.list(&selector).await.unwrap().items.into_iter().next() {
                    return Some(pod);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            None
        })
    };
    let (status, body) = f
        .get(&format!("/groups/{a}/s3/snapshots/latest?path=media"), &editor)
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("did not start within 3 s"), "{body}");
    let pod = watcher.await.unwrap().expect("the browse pod was created");
    assert_eq!(
        pod.spec.unwrap().containers[0].image.as_deref(),
        Some("hort.local/hort-agent:dev")
    );
    assert_eq!(pod.metadata.labels.unwrap()["hort.dev/agent-role"], "browse");
    assert!(
        pods.list(&selector).await.unwrap().items.is_empty(),
        "the pod is deleted after it did not start"
    );
    f.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver and chromium: run scripts/test.sh"]
async fn a_browser_logs_in_sees_the_jobs_by_colour_and_text_and_filters_them() {
    let f = Fixture::start("hort-ov-browser").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, f.router.clone()).into_future());
    let shots = std::env::var_os("HORT_OVERVIEW_SCREENSHOTS").map(std::path::PathBuf::from);
    let mut browser = cdp::Browser::start().await;

    browser.goto(&base).await;
    let title = browser.eval("document.title").await;
    assert_eq!(title, "Log in · Hort");
    let login = format!(
        "document.getElementById('token').value = {}; document.querySelector('form.login').submit()",
        serde_json::to_string(&f.viewer).unwrap()
    );
    browser.eval_and_wait(&login).await;
    let page = browser.eval("document.body.innerText").await;
    assert_eq!(browser.eval("document.title").await, "Jobs · Hort", "{page}");
    assert_eq!(
        browser.eval("document.cookie").await,
        "",
        "scripts cannot read the token"
    );
    assert_eq!(
        browser.eval("location.href").await,
        format!("{base}/"),
        "no token in the URL"
    );

    // Each job's state: its text, its badge colour, and the row's marker colour.
    let states = browser
        .eval(
            "Array.from(document.querySelectorAll('tbody tr')).map(tr => { const s = tr.querySelector('.state'); \
             return [tr.querySelector('a').textContent, s.textContent, getComputedStyle(s).backgroundColor, \
                     getComputedStyle(s).color, getComputedStyle(tr.cells[0]).borderLeftColor]; })",
        )
        .await;
    let row = |job: &str| {
        states
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == job)
            .unwrap_or_else(|| panic!("{job} shown: {states}"))
            .clone()
    };
    assert_eq!(
        row("nightly-ok"),
        json!([
            "nightly-ok",
            "Succeeded",
            "rgb(226, 244, 229)",
            "rgb(26, 107, 45)",
            "rgb(26, 107, 45)"
        ])
    );
    assert_eq!(
        row("nightly-running"),
        json!([
            "nightly-running",
            "Running",
            "rgb(225, 238, 252)",
            "rgb(11, 79, 148)",
            "rgb(11, 79, 148)"
        ])
    );
    assert_eq!(
        row("manual-failed"),
        json!([
            "manual-failed",
            "Failed",
            "rgb(253, 228, 226)",
            "rgb(163, 20, 15)",
            "rgb(163, 20, 15)"
        ])
    );
    let text = browser.eval("document.body.innerText").await;
    assert!(!text.as_str().unwrap().contains(&f.b), "nothing of {}", f.b);
    save(&shots, "overview-jobs.png", browser.screenshot().await);

    // The filter form narrows to the failed job, and the URL says so.
    browser
        .eval_and_wait(
            "document.getElementById('f-state').value = 'failed'; document.querySelector('form.filter').submit()",
        )
        .await;
    let shown = browser
        .eval("Array.from(document.querySelectorAll('tbody tr a:first-child')).map(a => a.textContent)")
        .await;
    assert_eq!(shown, json!(["manual-failed"]));
    assert!(
        browser
            .eval("location.search")
            .await
            .as_str()
            .unwrap()
            .contains("state=failed")
    );

    // A job's detail, the schedules and the groups.
    browser.goto(&format!("{base}/jobs/{}/nightly-ok", f.a)).await;
    let detail = browser.eval("document.body.innerText").await;
    assert!(detail.as_str().unwrap().contains("5e1f0c2ab33d9f70"), "{detail}");
    save(&shots, "overview-job.png", browser.screenshot().await);
    browser.goto(&format!("{base}/schedules")).await;
    assert!(
        browser
            .eval("document.body.innerText")
            .await
            .as_str()
            .unwrap()
            .contains("7 daily, 4 weekly")
    );
    save(&shots, "overview-schedules.png", browser.screenshot().await);
    browser.goto(&format!("{base}/groups")).await;
    let groups = browser.eval("document.body.innerText").await;
    assert!(groups.as_str().unwrap().contains("Unreachable"), "{groups}");
    save(&shots, "overview-groups.png", browser.screenshot().await);

    // Logging out removes the cookie: the page asks for a token again.
    browser
        .eval_and_wait("document.querySelector('form.who').submit()")
        .await;
    assert_eq!(browser.eval("document.title").await, "Log in · Hort");
    browser.goto(&base).await;
    assert_eq!(browser.eval("document.title").await, "Log in · Hort");

    drop(browser);
    server.abort();
    f.stop().await;
}

/// Checks `png` is a PNG and saves it as `name` in `dir`, when a directory is given.
fn save(dir: &Option<std::path::PathBuf>, name: &str, png: Vec<u8>) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{name}: a screenshot"
    );
    if let Some(dir) = dir {
        std::fs::write(dir.join(name), png).unwrap();
    }
}
