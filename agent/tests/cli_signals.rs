//! The agent ends promptly on SIGTERM (it is PID 1 in its pod, which ignores SIGTERM unless it
//! handles it) and leaves no snapshot of the interrupted run.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Kind, Repo};

#[test]
fn sigterm_stops_a_running_backup_without_a_snapshot() {
    let repo = Repo::new(Kind::Fs);
    repo.ok(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    let mut backup = repo
        .cmd(&["backup", "--stdin", "--stream-name", "endless"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Data keeps coming: the backup is running when the signal arrives.
    let mut input = backup.stdin.take().unwrap();
    input.write_all(&support::noise(1, 4 << 20)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &backup.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = backup.wait_with_output().unwrap();
    drop(input);
    assert!(sent.elapsed() < Duration::from_secs(5), "took {:?}", sent.elapsed());
    assert_eq!(out.status.code(), Some(143), "exit code 128 + SIGTERM");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    let listed = repo.ok(&["snapshots", "--json"]);
    assert!(
        !listed.contains("\"id\""),
        "no snapshot of the interrupted run: {listed}"
    );
}
