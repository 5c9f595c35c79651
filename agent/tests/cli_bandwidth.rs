//! `HORT_LIMIT_UPLOAD` and `HORT_LIMIT_DOWNLOAD` (as the operator sets them from a
//! StorageGroup's `spec.bandwidth`) hold the agent's transfers back. The rate itself is
//! proven on an injected clock (`engine/src/backend/throttle.rs`) and measured in `bench/`;
//! here the agent's own account of what it counted and waited shows the limits were applied.

mod support;

use support::{Kind, Repo};

/// The `bytes` and `waited_seconds` of the agent's log line about a limit in `direction`.
fn throttled(stderr: &[u8], direction: &str) -> Option<(u64, f64)> {
    String::from_utf8_lossy(stderr).lines().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = &entry["fields"];
        (fields["direction"] == direction).then(|| {
            (
                fields["bytes"].as_u64().unwrap(),
                fields["waited_seconds"].as_f64().unwrap(),
            )
        })
    })
}

#[test]
fn limits_from_the_environment_hold_uploads_and_downloads_back() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("noise"), support::noise(3, 3 << 20)).unwrap();
    let limited = |args: &[&str], variable: &str, rate: &str| {
        let out = repo
            .cmd(args)
            .env(variable, rate)
            .env("HORT_LOG", "info")
            .env("HORT_LOG_FORMAT", "json")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stderr
    };
    let backup = limited(&["backup", src.to_str().unwrap()], "HORT_LIMIT_UPLOAD", "2Mi");
    let (bytes, waited) = throttled(&backup, "upload").expect("the upload limit was applied");
    assert!(bytes > 3 << 20, "incompressible 3 MiB and metadata, counted: {bytes}");
    assert!(waited > 0.0, "an empty bucket makes the first write wait");
    assert!(throttled(&backup, "download").is_none(), "no download limit was set");

    let target = work.path().join("restored");
    let restore = limited(
        &["restore", "latest", "--target", target.to_str().unwrap()],
        "HORT_LIMIT_DOWNLOAD",
        "4Mi",
    );
    let (bytes, waited) = throttled(&restore, "download").expect("the download limit was applied");
    assert!(bytes > 3 << 20, "{bytes}");
    assert!(waited > 0.0);
    assert_eq!(std::fs::read(target.join("noise")).unwrap(), support::noise(3, 3 << 20));

    let refused = repo.cmd(&["snapshots"]).env("HORT_LIMIT_UPLOAD", "0").output().unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("--limit-upload") && message.contains("at least 1k"),
        "{message}"
    );
}
