//! The `hort-operator` binary against a real kube-apiserver: it installs the CRDs, takes the
//! leader lease, serves /healthz, /readyz and /metrics, logs JSON when asked, and reconciles;
//! with `--overview-address` it serves the overview page on that port (401 without a token).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hort_crds::StorageGroup;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GETs `path` on the operator's endpoint with a plain HTTP/1.1 request.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn operator_binary_starts_leads_and_serves_metrics() {
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no usable KUBECONFIG ({e}); run scripts/test.sh"));
    let ns = format!("hort-binary-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();

    let port = free_port();
    let overview_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hort-operator"))
        .args([
            "--overview-address",
            &format!("127.0.0.1:{overview_port}"),
            "--metrics-address",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .args([
            "--watch-namespace",
            &ns,
            "--lease-namespace",
            &ns,
            "--identity",
            "test-replica",
        ])
        .env("HORT_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hort-operator");
    let stdout = child.stdout.take().unwrap();
    let operator = Operator(child);

    // Every log line is one JSON object; the controllers start once the lease is held.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("starting controllers")) {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                panic!(
                    "operator did not start its controllers; log so far:\n{}",
                    seen.join("\n")
                )
            });
        let parsed: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string() && parsed["fields"].is_object(), "{line}");
        seen.push(line);
    }

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = leases.get("hort-operator-leader").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("test-replica"));

    assert_eq!(get(port, "/healthz").map(|(c, _)| c), Some(200));
    assert_eq!(get(port, "/readyz").map(|(c, _)| c), Some(200));

    // The overview page, on its own port: the login form with 401 without a token; the
    // metrics stay on theirs and count the request.
    let (code, page) = get(overview_port, "/").unwrap();
    assert_eq!(code, 401, "{page}");
    assert!(page.contains("Kubernetes token") && !page.contains(&ns), "{page}");
    assert_eq!(get(overview_port, "/metrics").map(|(c, _)| c), Some(404));
    assert_eq!(get(port, "/").map(|(c, _)| c), Some(404));
    let (_, metrics) = get(port, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"hort_overview_requests_total{code="401",view="jobs"} 1"#),
        "{metrics}"
    );

    // It reconciles: a StorageGroup shows up in the metrics.
    let groups: Api<StorageGroup> = Api::namespaced(client.clone(), &ns);
    let group: StorageGroup = serde_json::from_value(serde_json::json!({
        "apiVersion": "hort.dev/v1alpha1", "kind": "StorageGroup",
        "metadata": {"name": "disk"},
        "spec": {"targets": [{"name": "disk", "pvc": {"claimName": "backups"}}],
                 "encryption": {"keySecretRef": {"name": "key"}}}
    }))
    .unwrap();
    groups.create(&PostParams::default(), &group).await.unwrap();
    let expected = format!(r#"hort_storage_group_ready{{namespace="{ns}",storage_group="disk"}} 0"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, metrics) = get(port, "/metrics").unwrap();
        assert_eq!(code, 200);
        if metrics.contains(&expected)
            && metrics.contains(r#"hort_reconcile_total{kind="StorageGroup",result="success"}"#)
        {
            break;
        }
        assert!(Instant::now() < deadline, "metrics never showed {expected}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    drop(operator);
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}

#[test]
fn agent_defaults_that_are_not_valid_are_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_hort-operator"))
        .env("HORT_AGENT_RESOURCES", "{\"requests\": 5}")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--agent-resources") && stderr.contains("not a ResourceRequirements"),
        "{stderr}"
    );
}
