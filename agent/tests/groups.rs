//! Storage groups under outage: `Mirror` writes on with targets down, says which are behind,
//! and `resync` makes every target alone a complete repository again.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::{Kind, Repo, describe_tree, noise};

/// A group of directory targets `dirs` with `strategy`.
fn group(dirs: &[&Path], strategy: &'static str) -> Repo {
    let mut repo = Repo::new(Kind::Fs);
    repo.spec = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    repo.strategy = Some(strategy);
    repo
}

/// Makes `dir` unusable (a file where the directory should be) until the guard is dropped.
struct Down {
    dir: PathBuf,
    away: PathBuf,
}

fn take_down(dir: &Path) -> Down {
    let away = dir.with_extension("away");
    fs::rename(dir, &away).unwrap();
    fs::write(dir, b"down").unwrap();
    Down {
        dir: dir.to_owned(),
        away,
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        fs::remove_file(&self.dir).unwrap();
        fs::rename(&self.away, &self.dir).unwrap();
    }
}

#[test]
fn mirror_keeps_backing_up_with_a_target_down_and_resync_makes_each_target_complete() {
    let work = tempfile::tempdir().unwrap();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| work.path().join(n));
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("one"), noise(1, 300_000)).unwrap();
    let mirror = group(&[&a, &b, &c], "mirror");
    mirror.init();
    let first = mirror.backup(&src, &[]);
    assert_eq!(first["targets_behind"], serde_json::json!([]), "{first}");
    let mut expected = vec![(first["snapshot"].as_str().unwrap().to_owned(), describe_tree(&src))];

    // B is down: the backup succeeds on A and C and names B.
    fs::write(src.join("two"), noise(2, 300_000)).unwrap();
    let down = take_down(&b);
    let second = mirror.backup(&src, &[]);
    assert_eq!(
        second["targets_behind"],
        serde_json::json!([b.display().to_string()]),
        "{second}"
    );
    expected.push((second["snapshot"].as_str().unwrap().to_owned(), describe_tree(&src)));

    // With all three targets required, the same outage fails the backup and writes no snapshot.
    fs::write(src.join("three"), noise(3, 300_000)).unwrap();
    let strict = mirror
        .cmd(&["backup", src.to_str().unwrap()])
        .env("HORT_MIN_HEALTHY_TARGETS", "3")
        .output()
        .unwrap();
    assert!(!strict.status.success(), "needs three targets, has two");
    drop(down);
    let snapshots = |dir: &Path| fs::read_dir(dir.join("snapshots")).map_or(0, |d| d.count());
    assert_eq!((snapshots(&a), snapshots(&b), snapshots(&c)), (2, 1, 2));

    // B is back and D joins empty: a dry run counts what each lacks, resync copies it.
    let four = group(&[&a, &b, &c, &d], "mirror");
    let dry = summary_of(&four.ok(&["resync", "--dry-run"]));
    let missing = |report: &serde_json::Value, i: usize| report["targets"][i]["missing_files"].as_u64().unwrap();
    assert_eq!(missing(&dry, 0), 0, "{dry}");
    assert!(
        missing(&dry, 1) >= 3,
        "B lacks the second snapshot, its index and packs: {dry}"
    );
    assert!(missing(&dry, 3) > missing(&dry, 1), "D lacks everything: {dry}");
    let synced = summary_of(&four.ok(&["resync"]));
    for i in 0..4 {
        assert_eq!(missing(&synced, i), 0, "{synced}");
    }
    assert_eq!(
        synced["targets"][1]["copied_files"].as_u64(),
        Some(missing(&dry, 1)),
        "{synced}"
    );

    // Each target alone now restores every snapshot.
    for (n, dir) in [&a, &b, &c, &d].into_iter().enumerate() {
        let alone = group(&[dir], "mirror");
        let verify: serde_json::Value = serde_json::from_str(alone.ok(&["verify", "--read-data"]).trim()).unwrap();
        assert_eq!(verify["ok"], true, "target {n}: {verify}");
        for (id, tree) in &expected {
            let target = work.path().join(format!("restore-{n}-{id}"));
            alone.ok(&["restore", id, "--target", target.to_str().unwrap()]);
            assert_eq!(&describe_tree(&target), tree, "target {n}, snapshot {id}");
        }
    }
}

/// The resync command's JSON line.
fn summary_of(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "resync")
        .unwrap_or_else(|| panic!("no resync line in {stdout}"))
}

#[test]
fn resync_refuses_targets_that_hold_different_repositories() {
    let work = tempfile::tempdir().unwrap();
    let [a, b] = ["a", "b"].map(|n| work.path().join(n));
    group(&[&a], "mirror").init();
    group(&[&b], "mirror").init();
    let both = group(&[&a, &b], "mirror");
    let out = both.run(&["resync"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hold different repositories"), "{stderr}");
    assert_eq!(fs::read_dir(a.join("keys")).unwrap().count(), 1, "nothing copied");
}

#[test]
fn a_mirror_check_fills_a_new_target_and_reports_what_each_lacks() {
    let work = tempfile::tempdir().unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|n| work.path().join(n));
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("one"), noise(4, 200_000)).unwrap();
    let two = group(&[&a, &b], "mirror");
    two.init();
    two.backup(&src, &[]);
    let id = two
        .ok(&["check"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["repositoryId"].as_str().map(str::to_owned))
        .expect("the check report names the repository");

    // C joins empty while B is down: C is filled, B cannot be listed.
    let three = group(&[&a, &b, &c], "mirror");
    let down = take_down(&b);
    let log = work.path().join("termination-log");
    let out = three
        .cmd(&["check", "--repository-id", &id, "--resync"])
        .env("HORT_TERMINATION_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: hort_protocol::CheckReport = hort_protocol::report::decode(&fs::read_to_string(&log).unwrap()).unwrap();
    let missing: Vec<Option<u64>> = report.targets.iter().map(|t| t.missing_files).collect();
    assert_eq!(missing, [Some(0), None, Some(0)], "{report:?}");
    drop(down);
    let alone = group(&[&c], "mirror");
    let target = work.path().join("restored");
    alone.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));
}

#[test]
fn a_mirror_of_three_s3_servers_backs_up_through_one_killed_mid_backup() {
    use support::{ACCESS_KEY, S3Server, SECRET_KEY};
    let mut servers: Vec<S3Server> = (0..3).map(|_| S3Server::start()).collect();
    let spec = |indices: &[usize], servers: &[S3Server]| -> String {
        indices
            .iter()
            .map(|&i| {
                format!(
                    "s3://hort/repo?endpoint={}&credentials=HORT_TARGET_{i}",
                    servers[i].endpoint
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let with_keys = |mut cmd: std::process::Command| {
        for i in 0..3 {
            cmd.env(format!("HORT_TARGET_{i}_AWS_ACCESS_KEY_ID"), ACCESS_KEY)
                .env(format!("HORT_TARGET_{i}_AWS_SECRET_ACCESS_KEY"), SECRET_KEY);
        }
        cmd
    };
    let mut repo = Repo::new(Kind::Fs);
    repo.spec = spec(&[0, 1, 2], &servers);
    repo.strategy = Some("mirror");
    let run = |repo: &Repo, args: &[&str]| with_keys(repo.cmd(args)).output().unwrap();
    let init = run(&repo, &["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Two packs (they close at 16 MiB): the second server dies after the first.
    for i in 0..3 {
        fs::write(src.join(format!("f{i}")), noise(10 + i, 7 * 1024 * 1024)).unwrap();
    }
    let backup = with_keys(repo.cmd(&["backup", src.to_str().unwrap(), "--compression", "0"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the second server once it holds the first pack.
    let packs_on = |server: &S3Server| -> usize { walk(&server.root.path().join("hort/repo/data")) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while packs_on(&servers[1]) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no pack reached the second server"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    servers[1].kill();
    let out = backup.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = support::summary(&stdout);
    let behind = summary["targets_behind"].to_string();
    assert!(behind.contains(&servers[1].endpoint), "{summary}");
    assert!(packs_on(&servers[0]) >= 2 && packs_on(&servers[0]) == packs_on(&servers[2]));

    // Each surviving server alone restores the snapshot.
    for alone in [0, 2] {
        let mut single = Repo::new(Kind::Fs);
        single.spec = spec(&[alone], &servers);
        let target = work.path().join(format!("restored-{alone}"));
        let restored = run(&single, &["restore", "latest", "--target", target.to_str().unwrap()]);
        assert!(
            restored.status.success(),
            "{}",
            String::from_utf8_lossy(&restored.stderr)
        );
        assert_eq!(describe_tree(&target), describe_tree(&src), "server {alone} alone");
    }
}

/// Files below `dir`, at any depth (0 if it does not exist).
fn walk(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 })
        .sum()
}

#[test]
fn resync_is_refused_for_groups_that_spread_or_fail_over() {
    let work = tempfile::tempdir().unwrap();
    let [a, b] = ["a", "b"].map(|n| work.path().join(n));
    for strategy in ["spread", "failover"] {
        let out = group(&[&a, &b], strategy).run(&["resync"]);
        assert_eq!(out.status.code(), Some(2), "{strategy}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only --strategy mirror"),
            "{strategy}"
        );
    }
}
