//! `repair index`: the index comes back from the packs' trailers after index files were lost
//! or damaged, as FORMAT.md promises.

mod support;

use std::fs;

use support::{Kind, Repo, describe_tree, noise};

fn report(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "repair-index")
        .unwrap_or_else(|| panic!("no repair-index line in {stdout}"))["report"]
        .clone()
}

fn index_files(repo: &Repo) -> Vec<std::path::PathBuf> {
    fs::read_dir(repo.files.join("index"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn repair_index_rebuilds_lost_and_damaged_index_files_from_the_packs() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a"), noise(1, 3_000_000)).unwrap();
    let first = repo.backup(&src, &[])["snapshot"].as_str().unwrap().to_owned();
    let first_tree = describe_tree(&src);
    let before = repo.packs();
    fs::write(src.join("sub/b"), noise(2, 500_000)).unwrap();
    repo.backup(&src, &[]);
    // The pack holding only `sub/b`'s data, which the first snapshot does not need.
    let b_data = repo
        .packs()
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let packs = repo.packs().len();

    // Every index file is lost: restores fail.
    for f in index_files(&repo) {
        fs::remove_file(f).unwrap();
    }
    let lost = repo.run(&["restore", "latest", "--target", work.path().join("x").to_str().unwrap()]);
    assert!(!lost.status.success());
    assert!(String::from_utf8_lossy(&lost.stderr).contains("not in the index"));

    let dry = report(&repo.ok(&["repair", "index", "--dry-run"]));
    assert_eq!(dry["packs_from_trailers"].as_array().unwrap().len(), packs, "{dry}");
    assert!(index_files(&repo).is_empty(), "a dry run writes nothing");
    let repaired = report(&repo.ok(&["repair", "index"]));
    assert_eq!(
        repaired["packs_from_trailers"].as_array().unwrap().len(),
        packs,
        "{repaired}"
    );
    assert_eq!(repaired["index_files_written"], 1);
    for (spec, tree) in [("latest", describe_tree(&src)), (first.as_str(), first_tree)] {
        let target = work.path().join(format!("restored-{spec}"));
        repo.ok(&["restore", spec, "--target", target.to_str().unwrap()]);
        assert_eq!(describe_tree(&target), tree, "snapshot {spec}");
    }
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");

    // A damaged index file is replaced; a pack that is gone is dropped and named.
    let index = index_files(&repo).remove(0);
    let mut bytes = fs::read(&index).unwrap();
    bytes[40] ^= 0xff;
    fs::write(&index, bytes).unwrap();
    fs::remove_file(&b_data).unwrap();
    let again = report(&repo.ok(&["repair", "index"]));
    assert_eq!(again["damaged_index_files"].as_array().unwrap().len(), 1, "{again}");
    assert_eq!(
        again["packs_from_trailers"].as_array().unwrap().len(),
        packs - 1,
        "{again}"
    );
    assert!(!index.exists(), "the damaged file is replaced");
    let target = work.path().join("after-damage");
    repo.ok(&["restore", &first, "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("a")).unwrap(), noise(1, 3_000_000));
    let verify = repo.run(&["verify"]);
    assert!(
        !verify.status.success(),
        "the second snapshot lost sub/b's data, and verify says so"
    );
}

#[test]
fn repair_index_refuses_a_group_with_a_target_it_cannot_list() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let mut repo = Repo::new(Kind::Fs);
    repo.spec = format!("{},{}", a.display(), b.display());
    repo.strategy = Some("mirror");
    repo.init();
    fs::rename(&b, work.path().join("b-away")).unwrap();
    fs::write(&b, b"down").unwrap();
    let out = repo.run(&["repair", "index"]);
    assert!(!out.status.success(), "a target's packs would look missing");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Not a directory"));
}

#[test]
fn repair_snapshots_drops_what_lost_its_data_and_keeps_the_rest_restorable() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a"), noise(1, 2_000_000)).unwrap();
    fs::write(src.join("sub/c"), b"small").unwrap();
    let intact = repo.backup(&src, &[])["snapshot"].as_str().unwrap().to_owned();
    let before = repo.packs();
    fs::write(src.join("sub/b"), noise(2, 600_000)).unwrap();
    let damaged = repo.backup(&src, &[])["snapshot"].as_str().unwrap().to_owned();
    // The pack holding only `sub/b`'s data is lost.
    let b_data = repo
        .packs()
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(&b_data).unwrap();
    let broken = repo.run(&["restore", "latest", "--target", work.path().join("x").to_str().unwrap()]);
    assert!(!broken.status.success(), "the snapshot refers to lost data");
    repo.ok(&["repair", "index"]); // drops the lost pack from the index, as documented

    let repairs = |args: &[&str]| -> serde_json::Value {
        repo.ok(args)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "repair-snapshots")
            .unwrap()["snapshots"]
            .clone()
    };
    let dry = repairs(&["repair", "snapshots", "--dry-run"]);
    assert_eq!(
        dry.as_array().unwrap().len(),
        1,
        "only the second snapshot lost data: {dry}"
    );
    assert_eq!(dry[0]["snapshot"], damaged.as_str());
    assert_eq!(dry[0]["lost"], serde_json::json!(["sub/b"]), "{dry}");
    assert!(dry[0]["repaired"].is_null(), "a dry run writes nothing");
    let done = repairs(&["repair", "snapshots", "--forget"]);
    assert_eq!(done[0]["forgotten"], true, "{done}");

    let target = work.path().join("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::read(target.join("sub/c")).unwrap(),
        b"small",
        "what kept its data comes back"
    );
    assert_eq!(fs::read(target.join("a")).unwrap(), noise(1, 2_000_000));
    assert!(!target.join("sub/b").exists());
    let verify: serde_json::Value = serde_json::from_str(repo.ok(&["verify", "--read-data"]).trim()).unwrap();
    assert_eq!(verify["ok"], true, "the repaired repository verifies: {verify}");
    let snapshots: serde_json::Value = serde_json::from_str(repo.ok(&["snapshots", "--json"]).trim()).unwrap();
    let ids: Vec<&str> = snapshots["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&intact.as_str()) && !ids.contains(&damaged.as_str()),
        "{snapshots}"
    );
    assert!(snapshots.to_string().contains("repaired"), "{snapshots}");
}
