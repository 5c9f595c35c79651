//! The operator's metrics pass `promtool check metrics` (naming, help, units, histograms), and the
//! chart's alerts (charts/hort/files/alerts.yaml) pass `promtool check rules` and `promtool test rules`.

use std::process::Command;

use hort_operator::metrics::Metrics;

mod promtool_check;

/// Every metric with one sample.
fn sample_metrics() -> Metrics {
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
    metrics
        .schedule_created
        .with_label_values(&["demo", "nightly"])
        .set(1.7e9);
    metrics.restores.with_label_values(&["demo", "succeeded"]).inc();
    metrics.verifications.with_label_values(&["demo", "failed"]).inc();
    metrics
        .restore_duration
        .with_label_values(&["demo", "postgres"])
        .observe(42.0);
    metrics.record_verified("demo", "nightly", 1.8e9);
    metrics.record_repository_verified("demo", "s3", 1.8e9);
    metrics
}

#[test]
#[ignore = "needs promtool: run scripts/test.sh, which installs it"]
fn metrics_pass_promtool_check() {
    promtool_check::check_metrics(&sample_metrics().render());
}

/// Runs `promtool` with `args` from the repository root; panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let promtool = std::env::var("HORT_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {promtool} ({e}); install it with scripts/install-promtool.sh"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {report}");
    report
}

#[test]
#[ignore = "needs promtool: run scripts/test.sh, which installs it"]
fn alerts_are_valid_and_fire_when_they_should() {
    let checked = promtool(&["check", "rules", "charts/hort/files/alerts.yaml"]);
    assert!(checked.contains("8 rules found"), "{checked}");
    // The cases: no backup for 26 h fires only for the schedule that missed its night; a
    // failed backup and a StorageGroup not Ready for 15 min fire, with their labels; no
    // successful verification for 8 days fires only for the schedule not verified since (and
    // no repository verification for the group not verified since), and a failed
    // verification fires.
    promtool(&["test", "rules", "operator/tests/alerts.test.yaml"]);
}

#[test]
fn alerts_use_only_metrics_the_operator_exports() {
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/hort/files/alerts.yaml"))
        .expect("charts/hort/files/alerts.yaml");
    let exported = sample_metrics().render();
    let descriptions: Vec<&str> = exported.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("hort_"))
        .collect();
    assert!(used.len() >= 4, "{used:?}");
    for metric in used {
        assert!(
            descriptions.iter().any(|d| d.starts_with(&format!("# TYPE {metric} "))),
            "alerts.yaml uses {metric}, which the operator does not export"
        );
    }
}

/// The PromQL expressions of the chart's Grafana dashboard, with its variables filled in.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/hort/files/dashboard.json"
    ))
    .expect("charts/hort/files/dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("expr").replace("$namespace", ".*"))
        .collect()
}

#[test]
#[ignore = "needs promtool: run scripts/test.sh, which installs it"]
fn dashboard_queries_are_valid_promql_over_exported_metrics() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 8, "{queries:?}");
    let exported = sample_metrics().render();
    for query in &queries {
        let used = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|word| word.starts_with("hort_"))
            .unwrap_or_else(|| panic!("{query} uses no Hort metric"));
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| used.strip_suffix(suffix))
            .unwrap_or(used);
        assert!(
            exported.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {used}, which the operator does not export"
        );
    }
    // promtool parses every query as the expression of a recording rule.
    let rules = serde_json::json!({"groups": [{"name": "dashboard", "rules": queries.iter().enumerate()
        .map(|(i, q)| serde_json::json!({"record": format!("hort:dashboard_query_{i}"), "expr": q}))
        .collect::<Vec<_>>()}]});
    let file = std::env::temp_dir().join(format!("hort-dashboard-rules-{}.yaml", std::process::id()));
    std::fs::write(&file, serde_json::to_string(&rules).unwrap()).unwrap();
    let checked = promtool(&["check", "rules", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert!(checked.contains(&format!("{} rules found", queries.len())), "{checked}");
}
