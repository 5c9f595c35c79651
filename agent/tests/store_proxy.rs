//! The agent through the repository proxy `hort-store`: the proxy runs in this process on a
//! loopback port over a temporary directory, with tokens for two namespaces; the real
//! `hort-agent` binary reaches it as `hort+http://127.0.0.1:PORT/shared`.

mod support;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hort_engine::backend::http::HttpBackend;
use hort_engine::backend::{Backend, BackendError, FileKind};
use hort_engine::id::Id;
use hort_protocol::StoreLocation;
use hort_store::auth::FixedTokens;
use hort_store::check::Namespace;
use hort_store::places::{GroupSettings, Places};
use hort_store::server::Store;
use support::store::{LoopbackProxy, serve_on_loopback};
use support::{PASSWORD, describe_tree, noise, summary};

const TOKEN_A: &str = "token-of-team-a";
const TOKEN_B: &str = "token-of-team-b";

/// A proxy serving group `shared` from `root`, and the token files of both namespaces.
struct Proxy {
    proxy: LoopbackProxy,
    root: tempfile::TempDir,
    tokens: tempfile::TempDir,
}

impl Proxy {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let tokens = tempfile::tempdir().unwrap();
        for (name, token) in [("a", TOKEN_A), ("b", TOKEN_B), ("wrong", "token-of-nobody")] {
            fs::write(tokens.path().join(name), format!("{token}\n")).unwrap();
        }
        let ns = |name| Namespace::parse(name).unwrap();
        let auth = FixedTokens::default()
            .with(TOKEN_A, ns("team-a"))
            .with(TOKEN_B, ns("team-b"));
        let places = Places::new(vec![root.path().display().to_string()], GroupSettings::default()).unwrap();
        let store = Store::new(auth, HashMap::from([("shared".into(), places)]), std::env::temp_dir());
        let proxy = serve_on_loopback(store, None);
        Self { proxy, root, tokens }
    }

    fn location(&self) -> String {
        format!("hort+http://127.0.0.1:{}/shared", self.proxy.port)
    }

    fn token_file(&self, who: &str) -> PathBuf {
        self.tokens.path().join(who)
    }

    /// `hort-agent ARGS` with `who`'s token.
    fn agent(&self, who: &str, args: &[&str]) -> Output {
        self.agent_with(who, PASSWORD, args)
    }

    /// `hort-agent ARGS` with `who`'s token and the repository password `password`.
    fn agent_with(&self, who: &str, password: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hort-agent"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HORT_REPOSITORY", self.location())
            .env("HORT_STORE_TOKEN_FILE", self.token_file(who))
            .env("HORT_PASSWORD", password)
            .env("HORT_LOG", "warn")
            .args(args)
            .output()
            .expect("run hort-agent")
    }

    /// Creates `namespace`'s repository at the group's target, as the operator's check pod
    /// does (no proxy: `config` is never written through it).
    fn init_directly(&self, namespace: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_hort-agent"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HORT_REPOSITORY", self.root.path().join("tenants").join(namespace))
            .env("HORT_PASSWORD", PASSWORD)
            .env("HORT_LOG", "warn")
            .args(["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
            .output()
            .expect("run hort-agent");
        assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn ok(&self, who: &str, args: &[&str]) -> String {
        let out = self.agent(who, args);
        assert!(
            out.status.success(),
            "hort-agent {args:?} as {who} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn snapshots(&self, who: &str) -> Vec<serde_json::Value> {
        let listing: serde_json::Value = serde_json::from_str(self.ok(who, &["snapshots"]).trim()).unwrap();
        listing["snapshots"].as_array().cloned().unwrap_or_default()
    }

    /// The engine's HTTP backend with `who`'s token, as a client of its own.
    fn client(&self, who: &str) -> HttpBackend {
        let location = StoreLocation {
            host: "127.0.0.1".into(),
            port: self.proxy.port,
            group: "shared".into(),
            tls: false,
        };
        HttpBackend::new(location, Some(self.token_file(who)), None).unwrap()
    }

    /// The status line of a raw request (for paths no client would send).
    fn status_of(&self, request_line: &str, token: Option<&str>) -> String {
        self.status_with_body(request_line, token, "")
    }

    /// The status line of a raw request with `body`.
    fn status_with_body(&self, request_line: &str, token: Option<&str>, body: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.proxy.port)).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let length = body.len();
        write!(
            stream,
            "{request_line} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {length}\r\nConnection: close\r\n\r\n{body}"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or_default().to_owned()
    }
}

fn packs_below(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for sub in fs::read_dir(dir.join("data")).unwrap() {
        for file in fs::read_dir(sub.unwrap().path()).unwrap() {
            names.push(file.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    names
}

#[test]
fn each_namespace_backs_up_and_restores_only_its_own_repository_through_the_proxy() {
    let proxy = Proxy::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(src.join("large.bin"), noise(7, 3 * 1024 * 1024 + 17)).unwrap();

    // A tenant cannot create its repository through the proxy; the operator creates it.
    let init = proxy.agent("a", &["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    assert!(!init.status.success(), "init through the proxy: {init:?}");
    let stderr = String::from_utf8_lossy(&init.stderr);
    assert!(
        stderr.contains("operator creates the namespace's repository"),
        "{stderr}"
    );
    assert!(
        !proxy.root.path().join("tenants/team-a/config").exists()
            && proxy.client("a").list(FileKind::Key).unwrap().is_empty(),
        "the refused init left no config and no key file"
    );
    proxy.init_directly("team-a");
    let backup = summary(&proxy.ok("a", &["backup", src.to_str().unwrap(), "--tag", "nightly"]));
    assert_eq!(backup["stats"]["files"], 2, "{backup}");
    let snapshots = proxy.snapshots("a");
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let target = work.path().join("restored");
    proxy.ok("a", &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(describe_tree(&target), describe_tree(&src));

    // Everything of team-a is below tenants/team-a/ of the group's target, nothing elsewhere.
    let tenants: Vec<_> = fs::read_dir(proxy.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(tenants, ["tenants"]);
    let team_a = proxy.root.path().join("tenants/team-a");
    assert!(team_a.join("config").is_file());
    let packs = packs_below(&team_a);
    assert!(!packs.is_empty());

    // team-b has no repository of its own yet, and cannot see or read team-a's.
    let listing = proxy.agent("b", &["snapshots"]);
    assert!(!listing.status.success(), "team-b has no repository: {listing:?}");
    let b = proxy.client("b");
    assert!(b.list(FileKind::Snapshot).unwrap().is_empty());
    assert!(b.list(FileKind::Pack).unwrap().is_empty());
    assert!(b.read(FileKind::Pack, &packs[0]).unwrap_err().is_not_found());
    assert!(b.read(FileKind::Config, "config").unwrap_err().is_not_found());
    b.delete(FileKind::Pack, &packs[0]).unwrap();
    assert!(
        team_a.join("data").join(&packs[0][..2]).join(&packs[0]).is_file(),
        "resolved in team-b's prefix"
    );

    // team-b's own repository is separate: its listing shows none of team-a's snapshots.
    proxy.init_directly("team-b");
    assert!(proxy.snapshots("b").is_empty());
    assert_eq!(proxy.snapshots("a").len(), 1);
}

#[test]
fn the_proxy_refuses_what_the_format_would_never_write_and_unknown_tokens() {
    let proxy = Proxy::start();
    let a = proxy.client("a");
    let bytes = b"an index file".as_slice();
    let name = Id::of_file(bytes).to_hex();
    a.write(FileKind::Index, &name, bytes).unwrap();
    assert_eq!(a.read(FileKind::Index, &name).unwrap(), bytes);
    assert_eq!(a.read_range(FileKind::Index, &name, 3, 5).unwrap(), &bytes[3..8]);
    assert_eq!(a.read_tail(FileKind::Index, &name, 4).unwrap(), b"file");
    assert!(matches!(
        a.read_range(FileKind::Index, &name, 10, 10),
        Err(BackendError::Truncated { size: 13, .. })
    ));

    let refused = |result: Result<(), BackendError>| match result {
        Err(BackendError::Refused { message, .. }) => message,
        other => panic!("not refused: {other:?}"),
    };
    let message = refused(a.write(FileKind::Index, &name, b"other bytes"));
    assert!(
        message.contains("team-a") && message.contains(&name) && message.contains("hash"),
        "{message}"
    );
    assert_eq!(a.read(FileKind::Index, &name).unwrap(), bytes, "the file is unchanged");
    refused(a.write(FileKind::Index, "not-an-id", b"x"));
    refused(a.write(FileKind::Probe, &name, bytes));
    let message = refused(a.write(FileKind::Config, "config", b"v1"));
    assert!(message.contains("never written through hort-store"), "{message}");
    assert!(a.read(FileKind::Config, "config").unwrap_err().is_not_found());
    proxy.init_directly("team-a");
    let config = a.read(FileKind::Config, "config").unwrap();
    refused(a.write(FileKind::Config, "config", &config));
    refused(a.delete(FileKind::Config, "config"));
    assert_eq!(
        a.read(FileKind::Config, "config").unwrap(),
        config,
        "the config is unchanged"
    );

    let nobody = refused(proxy.client("wrong").list(FileKind::Snapshot).map(drop));
    assert!(nobody.contains("does not accept the token"), "{nobody}");
    assert!(!nobody.contains("token-of-nobody"), "{nobody}");
    assert_eq!(
        proxy.status_of("GET /v1/shared/snapshot", None),
        "HTTP/1.1 401 Unauthorized"
    );
    let path = format!("GET /v1/shared/index/..%2F..%2Fteam-b%2Findex%2F{name}");
    assert_eq!(proxy.status_of(&path, Some(TOKEN_A)), "HTTP/1.1 400 Bad Request");
    assert_eq!(
        proxy.status_of("GET /v1/other/snapshot", Some(TOKEN_A)),
        "HTTP/1.1 404 Not Found"
    );
    // Restores from the archive name packs of the namespace only, a bounded number of them.
    let readable = |names: Vec<String>| {
        let body = serde_json::json!({ "names": names, "waitSeconds": 0 }).to_string();
        proxy.status_with_body("POST /v1/shared/readable", Some(TOKEN_A), &body)
    };
    assert_eq!(readable(vec![name.clone()]), "HTTP/1.1 200 OK");
    assert_eq!(
        readable(vec![format!("../../team-b/data/{name}")]),
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(readable(vec![name.clone(); 101]), "HTTP/1.1 400 Bad Request");
    assert_eq!(
        proxy.status_of(&format!("GET /v1/shared/index/{name}/retention"), Some(TOKEN_A)),
        "HTTP/1.1 200 OK"
    );
}

#[test]
fn a_tenant_repository_written_directly_is_the_one_the_proxy_serves_that_namespace() {
    const ROOT_SECRET: &str = "the root secret of the shared group, 32+ bytes";
    let proxy = Proxy::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data.bin"), noise(3, 200_000)).unwrap();

    // The CLI after a disaster: the group's target and the root secret, no proxy.
    let direct = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hort-agent"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HORT_REPOSITORY", proxy.root.path())
            .env("HORT_TENANT", "team-a")
            .env("HORT_TENANT_ROOT_SECRET", ROOT_SECRET)
            .env("HORT_LOG", "debug")
            .args(args)
            .output()
            .expect("run hort-agent");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "hort-agent {args:?}: {stderr}");
        assert!(!stdout.contains(ROOT_SECRET) && !stderr.contains(ROOT_SECRET));
    };
    direct(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    direct(&["backup", src.to_str().unwrap(), "--tag", "direct"]);
    assert!(proxy.root.path().join("tenants/team-a/config").is_file());

    // team-a's pods, through the proxy with the derived password, see that snapshot.
    let derived = hort_protocol::tenant::password(ROOT_SECRET.as_bytes(), "team-a").unwrap();
    let listing = proxy.agent_with("a", &derived, &["snapshots"]);
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let snapshots = listing["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 1, "{listing}");
    assert_eq!(snapshots[0]["tags"][0], "direct", "{listing}");
    let target = work.path().join("restored");
    let restored = proxy.agent_with(
        "a",
        &derived,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(describe_tree(&target), describe_tree(&src));

    // team-b sees none of it.
    let b = proxy.client("b");
    assert!(b.list(FileKind::Snapshot).unwrap().is_empty());
    assert!(b.read(FileKind::Config, "config").unwrap_err().is_not_found());
}
