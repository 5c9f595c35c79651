//! `promtool check metrics`, for the test binaries that check what the operator exposes
//! (`promtool.rs`, `overview.rs`).

use std::io::Write;
use std::process::{Command, Stdio};

/// Asserts that `promtool check metrics` accepts `text` without a finding (`$HORT_PROMTOOL`,
/// or `promtool` on the PATH; scripts/install-promtool.sh installs it).
pub fn check_metrics(text: &str) {
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
