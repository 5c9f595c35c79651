//! Following a BackupJob or RestoreRequest to its end: a progress bar on a terminal, plain
//! lines otherwise, and the outcome as the result.

use hort_protocol::units::Bytes;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use hort_crds::common::{Phase, Progress};
use hort_crds::{BackupJob, RestoreRequest};
use indicatif::{ProgressBar, ProgressStyle};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{PluginError, Result};

/// A run-once Hort object that can be followed.
pub trait Followed: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug {
    /// `BackupJob` or `RestoreRequest`.
    const KIND: &'static str;
    /// Its phase.
    fn phase(&self) -> Phase;
    /// Its live progress.
    fn progress(&self) -> Option<Progress>;
    /// Its status message.
    fn message(&self) -> Option<String>;
    /// What it achieved, once succeeded.
    fn outcome(&self) -> String;
}

/// Implements [`Followed`] for a kind whose status has `phase`, `progress`, `message`,
/// `snapshot_id` and `stats`; `$summary` says what `$stats` record.
macro_rules! followed {
    ($kind:ty, |$stats:ident| $summary:expr) => {
        impl Followed for $kind {
            const KIND: &'static str = stringify!($kind);
            fn phase(&self) -> Phase {
                self.status.as_ref().map(|s| s.phase).unwrap_or_default()
            }
            fn progress(&self) -> Option<Progress> {
                self.status.as_ref().and_then(|s| s.progress.clone())
            }
            fn message(&self) -> Option<String> {
                self.status.as_ref().and_then(|s| s.message.clone())
            }
            fn outcome(&self) -> String {
                let status = self.status.clone().unwrap_or_default();
                let mut text = format!("snapshot {}", status.snapshot_id.as_deref().unwrap_or("-"));
                if let Some($stats) = status.stats {
                    text.push_str(&$summary);
                }
                text
            }
        }
    };
}

followed!(BackupJob, |stats| format!(
    ", {} read, {} stored, {:.0} s",
    Bytes(stats.bytes_read),
    stats.stored_size,
    stats.duration_seconds
));

followed!(RestoreRequest, |stats| format!(
    ", {} files, {} written, {} kept, {:.0} s",
    stats.files,
    Bytes(stats.bytes_restored),
    stats.skipped,
    stats.duration_seconds
));

/// One plain progress line for `object` (what is printed when it changes).
pub fn plain_line<T: Followed>(object: &T) -> String {
    let mut line = format!(
        "{} {}/{}: {:?}",
        T::KIND,
        object.namespace().unwrap_or_default(),
        object.name_any(),
        object.phase()
    );
    if let Some(p) = object.progress() {
        match (p.percent, p.bytes_total) {
            (Some(percent), Some(total)) => {
                line.push_str(&format!(" {percent}% ({} of {})", Bytes(p.bytes_done), Bytes(total)))
            }
            _ => line.push_str(&format!(" {} done", Bytes(p.bytes_done))),
        }
    }
    if let Some(message) = object.message() {
        line.push_str(&format!(": {message}"));
    }
    line
}

/// Where progress goes: a bar on a terminal, changed lines otherwise (both on stderr).
enum Display {
    Bar(ProgressBar),
    Lines(String),
}

impl Display {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            Display::Bar(bar)
        } else {
            Display::Lines(String::new())
        }
    }

    fn show<T: Followed>(&mut self, object: &T) {
        match self {
            Display::Lines(last) => {
                let line = plain_line(object);
                if *last != line {
                    eprintln!("{line}");
                    *last = line;
                }
            }
            Display::Bar(bar) => {
                let progress = object.progress();
                match progress.as_ref().and_then(|p| p.bytes_total) {
                    Some(total) => {
                        if bar.length() != Some(total) {
                            bar.set_length(total);
                            bar.set_style(
                                ProgressStyle::with_template(
                                    "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
                                )
                                .expect("a valid template")
                                .progress_chars("=> "),
                            );
                        }
                    }
                    None => bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix} {bytes} {msg}").expect("a valid template"),
                    ),
                }
                bar.set_position(progress.map_or(0, |p| p.bytes_done));
                bar.set_prefix(format!("{}/{} {:?}", T::KIND, object.name_any(), object.phase()));
                bar.set_message(object.message().unwrap_or_default());
            }
        }
    }

    fn finish(self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Follows `name` until it succeeds (returns it), fails ([`PluginError::Failed`]), or
/// `timeout` passes; polls every `interval`.
pub async fn follow<T: Followed>(
    api: &Api<T>,
    namespace: &str,
    name: &str,
    timeout: Duration,
    interval: Duration,
) -> Result<T> {
    let started = Instant::now();
    let mut display = Display::new();
    let result = loop {
        let object = match api.get(name).await {
            Ok(object) => object,
            Err(e) if crate::error::is_not_found(&e) => {
                break Err(PluginError::NotFound {
                    kind: T::KIND,
                    namespace: namespace.into(),
                    name: name.into(),
                    hint: "it was deleted while it ran".into(),
                });
            }
            Err(e) => break Err(PluginError::api(format!("reading {} {namespace}/{name}", T::KIND), e)),
        };
        display.show(&object);
        match object.phase() {
            Phase::Succeeded => break Ok(object),
            Phase::Failed => {
                break Err(PluginError::Failed {
                    kind: T::KIND,
                    namespace: namespace.into(),
                    name: name.into(),
                    message: object.message().unwrap_or_else(|| "no message".into()),
                });
            }
            Phase::Pending | Phase::Running => {}
        }
        if started.elapsed() >= timeout {
            break Err(PluginError::Timeout(format!(
                "{} {namespace}/{name} has not finished after {} s; it goes on: follow it with `kubectl hort status -n {namespace}`",
                T::KIND,
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(interval).await;
    };
    display.finish();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_phase_progress_and_message() {
        let job: BackupJob = serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: BackupJob\nmetadata: {name: j, namespace: demo}\n\
             spec: {storageGroupRef: {name: s3}, source: {volume: {claimName: data}}}\n\
             status: {phase: Running, progress: {bytesDone: 1048576, bytesTotal: 4194304, percent: 25}, message: backing up}",
        )
        .unwrap();
        assert_eq!(
            plain_line(&job),
            "BackupJob demo/j: Running 25% (1.0 MiB of 4.0 MiB): backing up"
        );
        let dump: BackupJob = serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: BackupJob\nmetadata: {name: j, namespace: demo}\n\
             spec: {storageGroupRef: {name: s3}, source: {volume: {claimName: data}}}\n\
             status: {phase: Succeeded, snapshotId: ab12, progress: {bytesDone: 2048}}",
        )
        .unwrap();
        assert_eq!(plain_line(&dump), "BackupJob demo/j: Succeeded 2.0 KiB done");
        assert_eq!(dump.outcome(), "snapshot ab12");
    }

    #[test]
    fn outcomes_say_what_each_kind_achieved() {
        let job: BackupJob = serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: BackupJob\nmetadata: {name: j, namespace: demo}\n\
             spec: {storageGroupRef: {name: s3}, source: {volume: {claimName: data}}}\n\
             status: {phase: Succeeded, snapshotId: ab12, stats: {bytesRead: 4096, bytesNew: 1024, \
             bytesStored: 512, storedSize: 512 B, files: 2, dedupRatio: 8.0, durationSeconds: 3.2}}",
        )
        .unwrap();
        assert_eq!(job.outcome(), "snapshot ab12, 4.0 KiB read, 512 B stored, 3 s");
        let restore: RestoreRequest = serde_yaml::from_str(
            "apiVersion: hort.dev/v1alpha1\nkind: RestoreRequest\nmetadata: {name: r, namespace: demo}\n\
             spec: {storageGroupRef: {name: s3}, source: {snapshotId: cd34}, target: {volume: {claimName: data}}}\n\
             status: {phase: Failed, snapshotId: cd34, message: disk full, \
             stats: {bytesRestored: 2048, files: 3, skipped: 1, durationSeconds: 5.0}}",
        )
        .unwrap();
        assert_eq!(RestoreRequest::KIND, "RestoreRequest");
        assert_eq!(
            (restore.phase(), restore.message().as_deref()),
            (Phase::Failed, Some("disk full"))
        );
        assert_eq!(
            restore.outcome(),
            "snapshot cd34, 3 files, 2.0 KiB written, 1 kept, 5 s"
        );
        assert_eq!(plain_line(&restore), "RestoreRequest demo/r: Failed: disk full");
    }
}
