//! Waiting for the operator's metrics to show lines. A controller writes an object's status
//! before it counts the result, so a test that saw the status polls the metrics.

use std::time::Duration;

use hort_operator::metrics::Metrics;

/// How long the metrics may take to show a result the status already shows.
const WAIT: Duration = Duration::from_secs(30);

/// The rendered metrics once they contain every line of `expected`; fails naming the
/// missing lines and the last rendering.
pub async fn metrics_showing(metrics: &Metrics, expected: &[String]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics.render();
        let missing: Vec<&String> = expected.iter().filter(|line| !text.contains(line.as_str())).collect();
        if missing.is_empty() {
            return text;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("the metrics never showed {missing:?}; last:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
