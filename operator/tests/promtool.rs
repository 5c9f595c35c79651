//! The operator's metrics pass `promtool check metrics` (naming, help, units, histograms).

use std::io::Write;
use std::process::{Command, Stdio};

use hort_operator::metrics::Metrics;

#[test]
#[ignore = "needs promtool: run scripts/test.sh, which installs it"]
fn metrics_pass_promtool_check() {
    let metrics = Metrics::new();
    metrics.reconciles.with_label_values(&["BackupJob", "success"]).inc();
    metrics.reconciles.with_label_values(&["BackupJob", "kube_api"]).inc();
    metrics
        .reconcile_duration
        .with_label_values(&["BackupJob"])
        .observe(0.02);
    metrics.storage_group_ready.with_label_values(&["demo", "s3"]).set(1);
    metrics
        .backups
        .with_label_values(&["demo", "nightly", "succeeded"])
        .inc();
    metrics
        .backup_duration
        .with_label_values(&["demo", "nightly"])
        .observe(42.0);
    metrics
        .backup_bytes
        .with_label_values(&["demo", "nightly", "stored"])
        .set(1024);
    metrics
        .last_successful_backup
        .with_label_values(&["demo", "nightly"])
        .set(1.8e9);
    metrics.restores.with_label_values(&["demo", "succeeded"]).inc();
    let text = metrics.render();

    let promtool = std::env::var("HORT_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool} ({e}); install it with scripts/install-promtool.sh"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{text}"
    );
}
