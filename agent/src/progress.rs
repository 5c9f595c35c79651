//! Progress of long operations: a reporter thread that prints the engine's
//! [`Counters`] once a second, as a status line on a terminal or as JSON lines otherwise.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hort_engine::progress::Counters;
use hort_protocol::ProgressLine;
use hort_protocol::report::LineKind;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No progress output.
    Quiet,
    /// A status line on stderr (interactive terminal).
    Terminal,
    /// One JSON object per line on stdout, for the operator.
    Json,
}

/// Prints progress until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    mode: Mode,
}

fn line(operation: &str, counters: &Counters, start: Instant) -> ProgressLine {
    let elapsed = start.elapsed().as_secs_f64();
    let bytes = counters.bytes.load(Ordering::Relaxed);
    ProgressLine {
        kind: LineKind::Progress,
        operation: operation.to_owned(),
        elapsed_secs: (elapsed * 10.0).round() / 10.0,
        files: counters.files.load(Ordering::Relaxed),
        bytes,
        bytes_total: counters.bytes_total.get().copied(),
        new_bytes: counters.new_bytes.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        bytes_per_sec: if elapsed > 0.0 {
            (bytes as f64 / elapsed).round()
        } else {
            0.0
        },
    }
}

impl Reporter {
    /// Starts reporting `counters` for `operation` every `interval`.
    pub fn start(mode: Mode, operation: &str, counters: Arc<Counters>, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (mode != Mode::Quiet).then(|| {
            let stop = stop.clone();
            let operation = operation.to_owned();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut next = start + interval;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if Instant::now() < next {
                        continue;
                    }
                    next += interval;
                    let l = line(&operation, &counters, start);
                    match mode {
                        Mode::Json => {
                            if let Ok(json) = serde_json::to_string(&l) {
                                let _ = writeln!(std::io::stdout().lock(), "{json}");
                            }
                        }
                        Mode::Terminal => {
                            let percent = match l.bytes_total {
                                Some(total) if total > 0 => {
                                    format!(" {:.0}%", (l.bytes as f64 / total as f64 * 100.0).min(100.0))
                                }
                                _ => String::new(),
                            };
                            let _ = write!(
                                std::io::stderr().lock(),
                                "\r{operation}:{percent} {} files, {:.1} MiB ({:.1} MiB new), {:.1} MiB/s, {} errors   ",
                                l.files,
                                l.bytes as f64 / 1048576.0,
                                l.new_bytes as f64 / 1048576.0,
                                l.bytes_per_sec / 1048576.0,
                                l.errors
                            );
                        }
                        Mode::Quiet => {}
                    }
                }
            })
        });
        Self { stop, thread, mode }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            if self.mode == Mode::Terminal {
                let _ = writeln!(std::io::stderr());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_reported_once_known() {
        let counters = Counters::default();
        Counters::add(&counters.bytes, 10);
        let start = Instant::now();
        let json = serde_json::to_value(line("backup", &counters, start)).unwrap();
        assert_eq!(json["type"], "progress");
        assert_eq!(json["bytes"], 10);
        assert!(json.get("bytes_total").is_none(), "{json}");
        counters.bytes_total.set(40).unwrap();
        let json = serde_json::to_value(line("backup", &counters, start)).unwrap();
        assert_eq!(json["bytes_total"], 40);
    }
}
