//! One directory target shared by agents that run as root (a volume backup's pod, which must
//! read every file) and agents that run as an unprivileged user (Pod Security "restricted":
//! database, check and prune pods): with `HORT_REPOSITORY_OWNER`, root hands everything it
//! creates in the repository to that user, who can then write and delete there. Commands that
//! only read never write to the repository (the operator mounts PVC targets read-only for them).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use support::{Kind, Repo};

/// The user the operator's restricted agent pods run as.
const USER: &str = "65532";

/// `cmd` run as [`USER`] (user and group, no supplementary groups), as a restricted pod runs it.
fn as_user(cmd: &Command) -> Output {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--reuid", USER, "--regid", USER, "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    wrapped.output().expect("run setpriv")
}

fn open_to_all(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A repository whose parent directory any user may enter, and a small tree to back up that
/// any user may read.
fn setup() -> (Repo, tempfile::TempDir) {
    let repo = Repo::new(Kind::Fs);
    open_to_all(repo.files.parent().unwrap());
    let source = tempfile::tempdir().unwrap();
    open_to_all(source.path());
    std::fs::write(source.path().join("a"), support::noise(1, 300_000)).unwrap();
    (repo, source)
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_repository_root_wrote_for_an_owner_is_backed_up_and_pruned_by_that_user() {
    let (repo, source) = setup();
    let owned = |args: &[&str]| {
        let mut cmd = repo.cmd(args);
        cmd.env("HORT_REPOSITORY_OWNER", format!("{USER}:{USER}"));
        cmd
    };
    assert_ok(
        &owned(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
            .output()
            .unwrap(),
        "init as root",
    );
    let src = source.path().to_str().unwrap();
    assert_ok(&owned(&["backup", src]).output().unwrap(), "backup as root");

    // The user adds a backup of changed data, then forgets and sweeps root's.
    std::fs::write(source.path().join("a"), support::noise(2, 300_000)).unwrap();
    assert_ok(&as_user(&repo.cmd(&["backup", src])), "backup as the user");
    assert_ok(
        &as_user(&repo.cmd(&["prune", "--keep-last", "1", "--grace", "0"])),
        "forget and mark as the user",
    );
    assert_ok(
        &as_user(&repo.cmd(&["prune", "--gc-only", "--grace", "0"])),
        "sweep as the user",
    );
    assert_ok(&as_user(&repo.cmd(&["check"])), "check as the user");
    let snapshots = repo.ok(&["snapshots", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&snapshots).unwrap();
    assert_eq!(listed["snapshots"].as_array().map(Vec::len), Some(1), "{snapshots}");
}

#[test]
fn without_an_owner_a_repository_root_wrote_refuses_the_user() {
    let (repo, source) = setup();
    repo.init();
    let src = source.path().to_str().unwrap();
    repo.backup(source.path(), &[]);
    let out = as_user(&repo.cmd(&["backup", src]));
    assert!(!out.status.success(), "the user wrote into root's repository");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

#[test]
fn commands_that_only_read_write_nothing_to_the_repository() {
    // Root's repository, which the user may read but not write: any write would fail.
    let (repo, source) = setup();
    repo.init();
    repo.backup(source.path(), &[]);
    let listed = as_user(&repo.cmd(&["snapshots", "--json"]));
    assert_ok(&listed, "snapshots");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"files\":1"));
    assert_ok(&as_user(&repo.cmd(&["ls", "latest"])), "ls");
    let cat = as_user(&repo.cmd(&["cat", "latest", "a"]));
    assert_ok(&cat, "cat");
    assert_eq!(cat.stdout, support::noise(1, 300_000));
    assert_ok(&as_user(&repo.cmd(&["verify", "--read-data"])), "verify");
    let scratch = tempfile::tempdir().unwrap();
    open_to_all(scratch.path());
    let user_dir = scratch.path().join("mine");
    std::fs::create_dir(&user_dir).unwrap();
    std::os::unix::fs::chown(&user_dir, Some(65532), Some(65532)).unwrap();
    let target = user_dir.join("restored");
    let target = target.to_str().unwrap();
    assert_ok(
        &as_user(&repo.cmd(&["restore", "latest", "--target", target])),
        "restore",
    );
    assert_eq!(
        std::fs::read(user_dir.join("restored/a")).unwrap(),
        support::noise(1, 300_000)
    );
    let verify_scratch = user_dir.join("scratch");
    assert_ok(
        &as_user(&repo.cmd(&[
            "verify-restore",
            "latest",
            "--scratch",
            verify_scratch.to_str().unwrap(),
        ])),
        "verify-restore",
    );
}
