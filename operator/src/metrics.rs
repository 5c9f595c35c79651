//! Prometheus metrics of the operator, all named `hort_*`.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The operator's metrics and the registry that exposes them.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by kind and result (`success` or an error category).
    pub reconciles: IntCounterVec,
    /// Reconcile duration by kind.
    pub reconcile_duration: HistogramVec,
    /// 1 when a StorageGroup's `Ready` condition is True, else 0.
    pub storage_group_ready: IntGaugeVec,
    /// Finished BackupJobs by namespace, schedule (empty for manual jobs) and result.
    pub backups: IntCounterVec,
    /// Duration of successful backups by namespace and schedule.
    pub backup_duration: HistogramVec,
    /// Bytes of the latest successful backup by namespace, schedule and kind (read, new, stored).
    pub backup_bytes: IntGaugeVec,
    /// Completion time of the latest successful backup by namespace and schedule; set through
    /// [`Metrics::record_success`].
    pub last_successful_backup: GaugeVec,
    /// Creation time of every Schedule: a series per Schedule from its first reconcile on, also
    /// before its first run, so that a Schedule that never succeeds can be alerted on.
    pub schedule_created: GaugeVec,
    /// Finished RestoreRequests by namespace and result.
    pub restores: IntCounterVec,
    /// Finished Verifications by namespace and result.
    pub verifications: IntCounterVec,
    /// Restore durations measured by the agent, of RestoreRequests and Verifications, by
    /// namespace and kind of data (`postgres`, `mariadb`, `volume`).
    pub restore_duration: HistogramVec,
    /// Completion time of the latest successful Verification by namespace and schedule (empty
    /// for Verifications created by hand); set through [`Metrics::record_verified`].
    pub last_verified: GaugeVec,
    /// Completion time of the latest successful repository Verification by namespace and
    /// StorageGroup; set through [`Metrics::record_repository_verified`].
    pub last_repository_verified: GaugeVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "hort_reconcile_total",
                "Reconciles by kind and result (success or error category).",
            ),
            &["kind", "result"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("hort_reconcile_duration_seconds", "Time one reconcile took, by kind.")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["kind"],
        )
        .expect("valid metric");
        let storage_group_ready = IntGaugeVec::new(
            Opts::new(
                "hort_storage_group_ready",
                "1 when the StorageGroup's Ready condition is True, else 0.",
            ),
            &["namespace", "storage_group"],
        )
        .expect("valid metric");
        let backups = IntCounterVec::new(
            Opts::new(
                "hort_backup_total",
                "Finished BackupJobs by namespace, schedule and result.",
            ),
            &["namespace", "schedule", "result"],
        )
        .expect("valid metric");
        let backup_duration = HistogramVec::new(
            HistogramOpts::new("hort_backup_duration_seconds", "Duration of successful backups.").buckets(vec![
                1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
            ]),
            &["namespace", "schedule"],
        )
        .expect("valid metric");
        let backup_bytes = IntGaugeVec::new(
            Opts::new(
                "hort_backup_bytes",
                "Bytes of the latest successful backup: read from the source, new to the repository, stored.",
            ),
            &["namespace", "schedule", "kind"],
        )
        .expect("valid metric");
        let last_successful_backup = GaugeVec::new(
            Opts::new(
                "hort_last_successful_backup_timestamp_seconds",
                "Unix time the latest successful backup finished, by namespace and schedule.",
            ),
            &["namespace", "schedule"],
        )
        .expect("valid metric");
        let schedule_created = GaugeVec::new(
            Opts::new(
                "hort_schedule_created_timestamp_seconds",
                "Unix time each Schedule was created, by namespace and schedule.",
            ),
            &["namespace", "schedule"],
        )
        .expect("valid metric");
        let restores = IntCounterVec::new(
            Opts::new(
                "hort_restore_total",
                "Finished RestoreRequests by namespace and result.",
            ),
            &["namespace", "result"],
        )
        .expect("valid metric");
        let verifications = IntCounterVec::new(
            Opts::new(
                "hort_verify_total",
                "Finished Verifications by namespace and result (succeeded: every check passed).",
            ),
            &["namespace", "result"],
        )
        .expect("valid metric");
        let restore_duration = HistogramVec::new(
            HistogramOpts::new(
                "hort_restore_duration_seconds",
                "Restore durations measured by the agent, of RestoreRequests and Verifications, by kind of data.",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
            ]),
            &["namespace", "kind"],
        )
        .expect("valid metric");
        let last_verified = GaugeVec::new(
            Opts::new(
                "hort_last_verified_timestamp_seconds",
                "Unix time the latest successful Verification finished, by namespace and schedule.",
            ),
            &["namespace", "schedule"],
        )
        .expect("valid metric");
        let last_repository_verified = GaugeVec::new(
            Opts::new(
                "hort_last_repository_verified_timestamp_seconds",
                "Unix time the latest successful repository Verification finished, by namespace and storage group.",
            ),
            &["namespace", "storage_group"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(storage_group_ready.clone()),
            Box::new(backups.clone()),
            Box::new(backup_duration.clone()),
            Box::new(backup_bytes.clone()),
            Box::new(last_successful_backup.clone()),
            Box::new(schedule_created.clone()),
            Box::new(restores.clone()),
            Box::new(verifications.clone()),
            Box::new(restore_duration.clone()),
            Box::new(last_verified.clone()),
            Box::new(last_repository_verified.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self {
            registry,
            reconciles,
            reconcile_duration,
            storage_group_ready,
            backups,
            backup_duration,
            backup_bytes,
            last_successful_backup,
            schedule_created,
            restores,
            verifications,
            restore_duration,
            last_verified,
            last_repository_verified,
        }
    }

    /// Records a successful Verification of `schedule` (empty for one made by hand) in
    /// `namespace` that finished at `seconds` (Unix time), unless a later one is recorded
    /// already. Called when a Verification succeeds, and from every Schedule's status, so the
    /// series survives an operator restart.
    pub fn record_verified(&self, namespace: &str, schedule: &str, seconds: f64) {
        let gauge = self.last_verified.with_label_values(&[namespace, schedule]);
        if gauge.get() < seconds {
            gauge.set(seconds);
        }
    }

    /// Records a successful repository Verification of StorageGroup `group` in `namespace`
    /// that finished at `seconds` (Unix time), unless a later one is recorded already. Called
    /// when one succeeds, and from every StorageGroup's status, so the series survives an
    /// operator restart.
    pub fn record_repository_verified(&self, namespace: &str, group: &str, seconds: f64) {
        let gauge = self.last_repository_verified.with_label_values(&[namespace, group]);
        if gauge.get() < seconds {
            gauge.set(seconds);
        }
    }

    /// Records a successful backup of `schedule` (empty for manual jobs) in `namespace` that
    /// finished at `seconds` (Unix time), unless a later one is recorded already. Called when a
    /// job succeeds, and from every Schedule's status when the operator starts, so the series
    /// survives a restart.
    pub fn record_success(&self, namespace: &str, schedule: &str, seconds: f64) {
        let gauge = self.last_successful_backup.with_label_values(&[namespace, schedule]);
        if gauge.get() < seconds {
            gauge.set(seconds);
        }
    }

    /// The registry, for metrics of optional parts (the overview page's) to join.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_metrics_carry_labels_and_help() {
        let metrics = Metrics::new();
        metrics.reconciles.with_label_values(&["StorageGroup", "success"]).inc();
        metrics.storage_group_ready.with_label_values(&["demo", "s3"]).set(1);
        let text = metrics.render();
        assert!(text.contains("# HELP hort_reconcile_total "));
        assert!(text.contains(r#"hort_reconcile_total{kind="StorageGroup",result="success"} 1"#));
        assert!(text.contains(r#"hort_storage_group_ready{namespace="demo",storage_group="s3"} 1"#));
    }

    #[test]
    fn an_older_success_does_not_replace_a_newer_one() {
        let metrics = Metrics::new();
        metrics.record_success("demo", "nightly", 2000.0);
        metrics.record_success("demo", "nightly", 1000.0);
        let text = metrics.render();
        assert!(
            text.contains(r#"hort_last_successful_backup_timestamp_seconds{namespace="demo",schedule="nightly"} 2000"#),
            "{text}"
        );
    }
}
