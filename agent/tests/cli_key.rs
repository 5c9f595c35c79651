//! Password rotation: add a key file for a new password, then remove the old one; the data is
//! untouched and only the new password opens the repository.

mod support;

use hort_protocol::CheckReport;
use hort_protocol::report::decode;
use support::{Kind, PASSWORD, Repo};

fn keys(repo: &Repo, password: &str) -> serde_json::Value {
    let out = repo
        .cmd(&["key", "list", "--json"])
        .env("HORT_PASSWORD", password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_password_is_rotated_by_adding_a_key_and_removing_the_old_one() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("f"), b"data").unwrap();
    repo.backup(work.path(), &[]);
    let new = "a new and much longer passphrase";

    let no_new = repo.run(&["key", "add"]);
    assert_eq!(no_new.status.code(), Some(2), "the new password must be given");
    let added = repo
        .cmd(&["key", "add", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .env("HORT_NEW_PASSWORD", new)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let listed = keys(&repo, PASSWORD);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let old_id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The old password may not remove its own key; the new one may.
    let refused = repo.run(&["key", "remove", &old_id[..8]]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the one your password opens"));
    let removed = repo
        .cmd(&["key", "remove", &old_id[..8]])
        .env("HORT_PASSWORD", new)
        .output()
        .unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));

    let old = repo.run(&["snapshots"]);
    assert_eq!(old.status.code(), Some(12), "the old password opens nothing now");
    let with_new = repo
        .cmd(&["snapshots", "--json"])
        .env("HORT_PASSWORD", new)
        .output()
        .unwrap();
    assert!(with_new.status.success());
    let snapshots: serde_json::Value = serde_json::from_slice(&with_new.stdout).unwrap();
    assert_eq!(
        snapshots["snapshots"].as_array().unwrap().len(),
        1,
        "the data is untouched"
    );
    assert_eq!(keys(&repo, new).as_array().unwrap().len(), 1);
}

#[test]
fn a_new_password_shorter_than_twelve_characters_is_refused() {
    let repo = Repo::new(Kind::Fs);
    let short = repo
        .cmd(&["init"])
        .env("HORT_PASSWORD", "hunter2-abc")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert_eq!(short.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("11 characters, fewer than 12"), "{stderr}");
    let none = repo.run(&["snapshots"]);
    assert!(!none.status.success(), "no repository was created");

    repo.init();
    let weak = repo
        .cmd(&["key", "add"])
        .env("HORT_NEW_PASSWORD", "short")
        .output()
        .unwrap();
    assert_eq!(weak.status.code(), Some(2), "{}", String::from_utf8_lossy(&weak.stderr));
    assert_eq!(keys(&repo, PASSWORD).as_array().unwrap().len(), 1, "no key was added");
    // Characters count, not bytes: twelve letters of any script are enough.
    let unicode = repo
        .cmd(&["key", "add", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .env("HORT_NEW_PASSWORD", "ÄÖÜäöüßéèêëï")
        .output()
        .unwrap();
    assert!(unicode.status.success(), "{}", String::from_utf8_lossy(&unicode.stderr));
}

/// Runs `check --rotate-key` with `password` as the repository password and `previous` as the
/// previous one; returns whether it succeeded and its report.
fn check_rotating(repo: &Repo, password: &str, previous: Option<&str>) -> (bool, CheckReport) {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("termination-log");
    let mut cmd = repo.cmd(&[
        "check",
        "--rotate-key",
        "--kdf-memory-kib",
        "64",
        "--kdf-iterations",
        "1",
    ]);
    cmd.env("HORT_TERMINATION_LOG", &log).env("HORT_PASSWORD", password);
    if let Some(previous) = previous {
        cmd.env("HORT_PREVIOUS_PASSWORD", previous);
    }
    let out = cmd.output().unwrap();
    let report = decode(&std::fs::read_to_string(&log).unwrap()).unwrap();
    (out.status.success(), report)
}

#[test]
fn a_check_with_rotate_key_makes_the_new_password_the_only_one_and_is_safe_to_repeat() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("f"), b"data").unwrap();
    repo.backup(work.path(), &[]);
    let new = "the password after the rotation";

    let (ok, report) = check_rotating(&repo, new, Some(PASSWORD));
    assert!(ok, "the check opens the repository with the new password: {report:?}");
    let rotation = report.key_rotation.unwrap();
    assert!(rotation.done, "{rotation:?}");
    let (added, removed) = (rotation.added.unwrap(), rotation.removed.unwrap());
    assert_ne!(added, removed);
    let listed = keys(&repo, new);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], added.as_str());
    assert_eq!(
        repo.run(&["snapshots"]).status.code(),
        Some(12),
        "the old password opens nothing"
    );

    // Repeated (the next check while the field is still set): nothing more to do.
    let (ok, again) = check_rotating(&repo, new, Some(PASSWORD));
    assert!(ok);
    let again = again.key_rotation.unwrap();
    assert!(
        again.done && again.added.is_none() && again.removed.is_none(),
        "{again:?}"
    );

    // The same password twice, or none given: not done, and says why.
    let (_, same) = check_rotating(&repo, new, Some(new));
    let same = same.key_rotation.unwrap();
    assert!(!same.done && same.error.unwrap().contains("the same"));
    let (_, none) = check_rotating(&repo, new, None);
    assert!(
        none.key_rotation
            .unwrap()
            .error
            .unwrap()
            .contains("HORT_PREVIOUS_PASSWORD")
    );
}

#[test]
fn a_rotation_to_a_password_that_is_too_short_writes_nothing_and_the_old_one_still_opens() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let (ok, report) = check_rotating(&repo, "short", Some(PASSWORD));
    assert!(!ok, "the short password opens nothing: {report:?}");
    let rotation = report.key_rotation.unwrap();
    assert!(!rotation.done && rotation.added.is_none(), "{rotation:?}");
    assert!(rotation.error.unwrap().contains("12"), "names the minimum");
    assert_eq!(keys(&repo, PASSWORD).as_array().unwrap().len(), 1);
}
