//! The proxy forms each namespace's repository out of the group's targets exactly as the
//! agent would: two directory targets under `spread`, served in this process on loopback. A
//! repository created directly at the two targets (`HORT_TENANT`, `HORT_STRATEGY=spread`, as
//! the operator's check pod does) takes a backup through the proxy with each pack on one of
//! the targets below `tenants/team-a/`, and the agent opening the targets directly lists and
//! restores it.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::process::Command;

use hort_engine::backend::group::Strategy;
use hort_store::auth::FixedTokens;
use hort_store::check::Namespace;
use hort_store::places::{GroupSettings, Places};
use hort_store::server::Store;
use support::store::serve_on_loopback;
use support::{describe_tree, noise};

const TOKEN: &str = "token-of-team-a";
const ROOT_SECRET: &str = "the root secret of the shared group, 32+ bytes";

/// Names of the pack files below `repo`'s `data/`.
fn packs(repo: &Path) -> BTreeSet<String> {
    let Ok(dirs) = fs::read_dir(repo.join("data")) else {
        return BTreeSet::new();
    };
    let files = dirs.flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap());
    files
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_spread_group_through_the_proxy_is_the_group_the_agent_opens_directly() {
    let dir = tempfile::tempdir().unwrap();
    let targets = [dir.path().join("one"), dir.path().join("two")];
    let specs: Vec<String> = targets.iter().map(|t| t.display().to_string()).collect();
    fs::write(dir.path().join("token"), TOKEN).unwrap();

    let settings = GroupSettings {
        strategy: Strategy::Spread,
        ..GroupSettings::default()
    };
    let places = Places::new(specs.clone(), settings).unwrap();
    let auth = FixedTokens::default().with(TOKEN, Namespace::parse("team-a").unwrap());
    let store = Store::new(auth, HashMap::from([("shared".into(), places)]), std::env::temp_dir());
    let proxy = serve_on_loopback(store, None);

    let derived = hort_protocol::tenant::password(ROOT_SECRET.as_bytes(), "team-a").unwrap();
    let proxied = format!("hort+http://127.0.0.1:{}/shared", proxy.port);
    let through_proxy = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hort-agent"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HORT_REPOSITORY", &proxied)
            .env("HORT_STORE_TOKEN_FILE", dir.path().join("token"))
            .env("HORT_PASSWORD", &derived)
            .env("HORT_LOG", "warn")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let direct = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hort-agent"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HORT_REPOSITORY", specs.join(","))
            .env("HORT_STRATEGY", "spread")
            .env("HORT_TENANT", "team-a")
            .env("HORT_TENANT_ROOT_SECRET", ROOT_SECRET)
            .env("HORT_LOG", "warn")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        fs::write(src.join(format!("f{i}.bin")), noise(i, 6 * 1024 * 1024)).unwrap();
    }
    // The operator's check pod creates the repository at the targets; the proxy never does.
    direct(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    through_proxy(&["backup", src.to_str().unwrap(), "--tag", "spread"]);

    let inside: Vec<_> = targets.iter().map(|t| t.join("tenants/team-a")).collect();
    // Spread, not the mirror the proxy used to make of every group: each pack on one target.
    let (one, two) = (packs(&inside[0]), packs(&inside[1]));
    assert!(one.len() + two.len() > 1, "{one:?} {two:?}");
    assert!(one.is_disjoint(&two), "a pack on both targets: {one:?} {two:?}");
    for t in &inside {
        assert!(t.join("config").is_file(), "{}", t.display());
    }

    let listing: serde_json::Value = serde_json::from_str(direct(&["snapshots"]).trim()).unwrap();
    assert_eq!(listing["snapshots"].as_array().unwrap().len(), 1, "{listing}");
    let restored = dir.path().join("restored");
    direct(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    assert_eq!(describe_tree(&restored), describe_tree(&src));
}
