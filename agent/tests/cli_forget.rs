//! `hort-agent forget --prune --tag …` as a Schedule's retention runs it: only the snapshots
//! carrying every tag are considered, and they are one series whichever pod (host) made them.

mod support;

use std::fs;

use hort_protocol::ForgetReport;
use hort_protocol::report::decode;
use serde_json::Value;
use support::{Kind, Repo};

fn snapshot_ids(repo: &Repo) -> Vec<String> {
    let list: Value = serde_json::from_str(&repo.ok(&["snapshots", "--json"])).unwrap();
    list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn forget_with_tags_keeps_the_newest_of_one_schedule_and_leaves_the_rest() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    let log = work.path().join("termination-log");

    let ns = "--tag=hort.dev/namespace=prod";
    let mut nightly = Vec::new();
    for run in 0..4 {
        fs::write(src.join("data"), format!("run {run}")).unwrap();
        // Every run is a new pod with its own host name.
        let host = format!("hort-backup-nightly-{run}");
        let summary = repo.backup(&src, &[ns, "--tag=hort.dev/schedule=nightly", "--host", &host]);
        nightly.push(summary["snapshot"].as_str().unwrap().to_owned());
    }
    let weekly = repo.backup(&src, &[ns, "--tag=hort.dev/schedule=weekly"])["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_ns = repo.backup(
        &src,
        &["--tag=hort.dev/namespace=dev", "--tag=hort.dev/schedule=nightly"],
    )["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();

    let forget = |extra: &[&str]| {
        let mut args = vec!["forget", "--prune", ns, "--tag", "hort.dev/schedule=nightly"];
        args.extend_from_slice(extra);
        let out = repo.cmd(&args).env("HORT_TERMINATION_LOG", &log).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        decode::<ForgetReport>(&fs::read_to_string(&log).unwrap()).unwrap()
    };

    // A dry run changes nothing and reports nothing.
    let out = repo
        .cmd(&["forget", ns, "--keep-last", "1", "--dry-run"])
        .env("HORT_TERMINATION_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!log.exists());
    assert_eq!(snapshot_ids(&repo).len(), 6);

    let report = forget(&["--keep-last", "2"]);
    assert_eq!(
        report,
        ForgetReport {
            snapshots_kept: 2,
            snapshots_removed: 2
        }
    );
    let mut left = snapshot_ids(&repo);
    left.sort();
    let mut expected = vec![nightly[2].clone(), nightly[3].clone(), weekly.clone(), other_ns.clone()];
    expected.sort();
    assert_eq!(
        left, expected,
        "the two newest nightly snapshots of prod and the others stay"
    );

    let report = forget(&["--keep-last", "2", "--keep-daily", "1"]);
    assert_eq!(
        report,
        ForgetReport {
            snapshots_kept: 2,
            snapshots_removed: 0
        }
    );

    // The data of what is left is still there after garbage collection.
    let target = work.path().join("restored");
    repo.ok(&[
        "restore",
        "latest",
        "--tag",
        "hort.dev/schedule=nightly",
        ns,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(target.join("data")).unwrap(), b"run 3");
    repo.ok(&["verify", "--read-data"]);

    // Without a --keep-* option nothing is forgotten.
    let out = repo.run(&["forget", "--prune", ns]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no --keep-* option"));
    assert_eq!(snapshot_ids(&repo).len(), 4);
}

#[test]
fn keep_within_counts_calendar_months_and_refuses_a_bare_m() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    // One backup at the end of each month, January to August 2026.
    let mut by_month = Vec::new();
    for (month, day) in [(1, 31), (2, 28), (3, 31), (4, 30), (5, 31), (6, 30), (7, 31), (8, 31)] {
        fs::write(src.join("data"), format!("month {month}")).unwrap();
        let time = format!("2026-{month:02}-{day}T02:30:00Z");
        let summary = repo.backup(&src, &["--tag=hort.dev/schedule=monthly", "--time", &time]);
        by_month.push(summary["snapshot"].as_str().unwrap().to_owned());
    }
    let tag = "--tag=hort.dev/schedule=monthly";

    // `6m` would have been six minutes, forgetting all but the newest: it is refused instead.
    let refused = repo.run(&["forget", tag, "--keep-within", "6m"]);
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("`m` is ambiguous"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(snapshot_ids(&repo).len(), 8);

    // Six calendar months before 31 August 02:30 is 28 February 02:30: February to August stay.
    repo.ok(&["forget", tag, "--keep-within", "6mo"]);
    let mut left = snapshot_ids(&repo);
    left.sort();
    let mut expected = by_month[1..].to_vec();
    expected.sort();
    assert_eq!(left, expected, "January is forgotten, February to August are kept");
}
