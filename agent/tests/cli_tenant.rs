//! `hort-agent` with `HORT_TENANT`: a namespace's own repository inside a shared group,
//! opened directly with the password derived from the group's tenant root secret. Every
//! wrong combination of variables is a usage error naming the variable and the fix, and the
//! root secret shows in no output.

use std::fs;
use std::process::{Command, Output};

use hort_protocol::{ExitCode, tenant};

const ROOT_SECRET: &str = "the root secret of the shared group, 32+ bytes";

/// `hort-agent ARGS` on the group target `repo` with only `vars` set.
fn agent(repo: &str, vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hort-agent"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HORT_REPOSITORY", repo)
        .env("HORT_LOG", "debug")
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("run hort-agent")
}

fn shows_no_secret(out: &Output) {
    for text in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(!text.contains(ROOT_SECRET), "the root secret in the output: {text}");
        let derived = tenant::password(ROOT_SECRET.as_bytes(), "team-a").unwrap();
        assert!(!text.contains(&derived), "the derived password in the output: {text}");
    }
}

/// A run's repository, variables, and what its error must say.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

const INIT: &[&str] = &["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"];

#[test]
fn a_tenant_repository_lives_below_tenants_namespace_and_opens_with_either_form_of_the_root_secret() {
    let dir = tempfile::tempdir().unwrap();
    let group = dir.path().join("group");
    let repo = group.to_str().unwrap();
    let secret_file = dir.path().join("root-secret");
    fs::write(&secret_file, ROOT_SECRET).unwrap();
    let by_value = [("HORT_TENANT", "team-a"), ("HORT_TENANT_ROOT_SECRET", ROOT_SECRET)];
    let by_file = [
        ("HORT_TENANT", "team-a"),
        ("HORT_TENANT_ROOT_SECRET_FILE", secret_file.to_str().unwrap()),
    ];

    let init = agent(repo, &by_value, INIT);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    shows_no_secret(&init);
    let top: Vec<_> = fs::read_dir(&group).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(top, ["tenants"], "nothing at the group's root");
    assert!(group.join("tenants/team-a/config").is_file());

    let listed = agent(repo, &by_file, &["snapshots"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    shows_no_secret(&listed);

    // The derived password opens it directly too; another namespace has no repository.
    let derived = tenant::password(ROOT_SECRET.as_bytes(), "team-a").unwrap();
    let tenant_repo = group.join("tenants/team-a");
    let plain = agent(
        tenant_repo.to_str().unwrap(),
        &[("HORT_PASSWORD", &derived)],
        &["snapshots"],
    );
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    let other = agent(
        repo,
        &[("HORT_TENANT", "team-b"), ("HORT_TENANT_ROOT_SECRET", ROOT_SECRET)],
        &["snapshots"],
    );
    assert_eq!(
        ExitCode::from_code(other.status.code().unwrap()),
        Some(ExitCode::NoRepository)
    );
    shows_no_secret(&other);
}

#[test]
fn each_wrong_combination_is_a_usage_error_naming_the_variable_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().to_str().unwrap();
    let password_file = dir.path().join("password");
    fs::write(&password_file, "a password").unwrap();
    let secret_file = dir.path().join("root-secret");
    fs::write(&secret_file, ROOT_SECRET).unwrap();
    let (tenant, secret) = (("HORT_TENANT", "team-a"), ("HORT_TENANT_ROOT_SECRET", ROOT_SECRET));
    let cases: &[Case] = &[
        (
            repo,
            &[tenant, secret, ("HORT_PASSWORD", "p")],
            "HORT_PASSWORD is set together with HORT_TENANT",
        ),
        (
            repo,
            &[tenant, secret, ("HORT_PASSWORD_FILE", password_file.to_str().unwrap())],
            "unset HORT_PASSWORD_FILE",
        ),
        (
            repo,
            &[tenant],
            "neither HORT_TENANT_ROOT_SECRET nor HORT_TENANT_ROOT_SECRET_FILE",
        ),
        (
            repo,
            &[
                tenant,
                secret,
                ("HORT_TENANT_ROOT_SECRET_FILE", secret_file.to_str().unwrap()),
            ],
            "set only one of them",
        ),
        (
            repo,
            &[("HORT_TENANT", "Team_A"), secret],
            "HORT_TENANT `Team_A` is not a namespace name",
        ),
        (
            repo,
            &[tenant, ("HORT_TENANT_ROOT_SECRET", "only 19 bytes here.")],
            "HORT_TENANT_ROOT_SECRET: the tenant root secret has 19 bytes; it needs at least 32",
        ),
        (
            repo,
            &[secret, ("HORT_PASSWORD", "p")],
            "HORT_TENANT_ROOT_SECRET is set without HORT_TENANT",
        ),
        (
            "hort+http://127.0.0.1:1/shared",
            &[tenant, secret],
            "`hort+http://127.0.0.1:1/shared` is a hort-store location",
        ),
    ];
    for (repo, vars, expected) in cases {
        let out = agent(repo, vars, &["snapshots"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            ExitCode::from_code(out.status.code().unwrap()),
            Some(ExitCode::Usage),
            "{vars:?}: {stderr}"
        );
        assert!(stderr.contains(expected), "{vars:?}: expected `{expected}` in {stderr}");
        shows_no_secret(&out);
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "nothing created");
}

#[test]
fn a_binary_root_secret_with_nul_bytes_is_read_byte_for_byte_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let group = dir.path().join("group");
    let secret: Vec<u8> = (0u8..40)
        .map(|i| if i % 7 == 0 { 0 } else { i.wrapping_mul(37) })
        .collect();
    let secret_file = dir.path().join("root-secret");
    fs::write(&secret_file, &secret).unwrap();
    let by_file = [
        ("HORT_TENANT", "team-a"),
        ("HORT_TENANT_ROOT_SECRET_FILE", secret_file.to_str().unwrap()),
    ];
    let init = agent(group.to_str().unwrap(), &by_file, INIT);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    // What the operator derives from the Secret's bytes opens it.
    let derived = tenant::password(&secret, "team-a").unwrap();
    let opened = agent(
        group.join("tenants/team-a").to_str().unwrap(),
        &[("HORT_PASSWORD", &derived)],
        &["snapshots"],
    );
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
}
