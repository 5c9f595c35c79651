//! Shared test setup: running `hort-agent`, temporary repositories on disk and on a real S3
//! server (s3s-fs, installed by `agent/scripts/install-s3s-fs.sh` and started on a free
//! loopback port), and comparing directory trees.

#![allow(dead_code)]

pub mod archive_server;
pub mod db;
pub mod object_lock;
pub mod store;
pub mod versity;

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";
/// The S3 test servers' access key id.
pub const ACCESS_KEY: &str = "hort-test-access";
/// The S3 test servers' secret key.
pub const SECRET_KEY: &str = "hort-test-secret-key";

/// Where a test repository lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fs,
    S3,
}

/// A running s3s-fs server; killed on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-s3s-fs.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run install-s3s-fs.sh");
        assert!(out.status.success(), "install-s3s-fs.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

impl S3Server {
    /// Stops the server at once, as a crash or a network cut would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts s3s-fs on a free loopback port with one bucket, `hort`.
    pub fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("hort")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        }
    }
}

/// A repository for one test.
pub struct Repo {
    pub kind: Kind,
    /// The `--repo` value.
    pub spec: String,
    /// Directory where this repository's files are, on disk (for s3s-fs: inside its root).
    pub files: PathBuf,
    pub strategy: Option<&'static str>,
    _dir: Option<tempfile::TempDir>,
    server: Option<S3Server>,
    endpoint: Option<String>,
    /// The bearer token file shown to `hort-store`, when `spec` is a `hort+http://` location.
    pub token_file: Option<PathBuf>,
}

impl Repo {
    pub fn new(kind: Kind) -> Self {
        match kind {
            Kind::Fs => {
                let dir = tempfile::tempdir().unwrap();
                let files = dir.path().join("repo");
                Self {
                    kind,
                    spec: files.display().to_string(),
                    files,
                    strategy: None,
                    _dir: Some(dir),
                    server: None,
                    endpoint: None,
                    token_file: None,
                }
            }
            Kind::S3 => {
                let server = S3Server::start();
                let files = server.root.path().join("hort/repo");
                Self {
                    kind,
                    spec: "s3://hort/repo?credentials=HORT_TARGET_0".into(),
                    files,
                    strategy: None,
                    endpoint: Some(server.endpoint.clone()),
                    _dir: None,
                    server: Some(server),
                    token_file: None,
                }
            }
        }
    }

    /// A repository at `spec` (with `credentials=HORT_TARGET_0`) on an S3 server the test
    /// started at `endpoint`.
    pub fn on_server(spec: String, endpoint: &str) -> Self {
        Self {
            kind: Kind::S3,
            spec,
            files: PathBuf::new(),
            strategy: None,
            endpoint: Some(endpoint.to_owned()),
            _dir: None,
            server: None,
            token_file: None,
        }
    }

    /// A repository reached through `hort-store` at `location` (`hort+http://…`), showing the
    /// token in `token_file`.
    pub fn through_proxy(location: String, token_file: PathBuf) -> Self {
        Self {
            token_file: Some(token_file),
            endpoint: None,
            ..Self::on_server(location, "")
        }
    }

    /// A mirror group of a filesystem target and an S3 target; `files` is the filesystem one.
    pub fn mirror() -> (Self, PathBuf) {
        let fs = Self::new(Kind::Fs);
        let s3 = Self::new(Kind::S3);
        let repo = Self {
            kind: Kind::Fs,
            spec: format!("{},{}", fs.spec, s3.spec),
            files: fs.files.clone(),
            strategy: Some("mirror"),
            endpoint: s3.endpoint.clone(),
            _dir: fs._dir,
            server: s3.server,
            token_file: None,
        };
        (repo, s3.files)
    }

    /// A `hort-agent` command for this repository.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hort-agent"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HORT_REPOSITORY", &self.spec)
            .env("HORT_PASSWORD", PASSWORD)
            // S3 locations name their credentials (`credentials=HORT_TARGET_0`), as the
            // operator writes them; the global keys are wrong on purpose.
            .env("HORT_TARGET_0_AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("HORT_TARGET_0_AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_ACCESS_KEY_ID", "wrong")
            .env("AWS_SECRET_ACCESS_KEY", "wrong")
            .env("HORT_LOG", "warn")
            .args(args);
        if let Some(endpoint) = &self.endpoint {
            cmd.env("HORT_S3_ENDPOINT", endpoint);
        }
        if let Some(strategy) = self.strategy {
            cmd.env("HORT_STRATEGY", strategy);
        }
        if let Some(token_file) = &self.token_file {
            cmd.env("HORT_STORE_TOKEN_FILE", token_file);
        }
        cmd
    }

    /// Runs a command and returns its output (whatever the exit code).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run hort-agent")
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hort-agent {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates the repository with cheap key derivation (tests run unoptimized).
    pub fn init(&self) {
        self.ok(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    }

    /// Backs up `dir`; returns the summary line.
    pub fn backup(&self, dir: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["backup", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        summary(&self.ok(&args))
    }

    /// Names of the pack files currently stored.
    pub fn packs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(dirs) = std::fs::read_dir(self.files.join("data")) {
            for d in dirs {
                for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
                    let p = f.unwrap().path();
                    if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                        out.push(p);
                    }
                }
            }
        }
        out.sort();
        out
    }
}

/// The `{"type":"summary"}` line of a command's JSON output.
pub fn summary(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"))
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible text resembling a database dump; a non-zero `variant` changes a few rows.
pub fn dump_text(rows: usize, variant: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..rows {
        let changed = if variant != 0 && (i as u64) % 100_003 == variant {
            variant
        } else {
            0
        };
        out.extend_from_slice(
            format!(
                "INSERT INTO accounts VALUES ({i}, 'user{i}@example.com', {}, 'x{changed}');\n",
                i * 7 % 1000
            )
            .as_bytes(),
        );
    }
    out
}

/// Every entry under `root`: relative path, kind, mode, content or link target, mtime for
/// files. Directory mtimes are left out (they change when entries are created).
pub fn describe_tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.push(format!("L {rel} -> {}", std::fs::read_link(&path).unwrap().display()));
            } else if meta.is_dir() {
                out.push(format!("D {rel} {mode:o}"));
                stack.push(path);
            } else {
                let hash = blake3::hash(&std::fs::read(&path).unwrap());
                out.push(format!(
                    "F {rel} {mode:o} {} {} {}",
                    meta.len(),
                    meta.mtime(),
                    hash.to_hex()
                ));
                for name in xattr::list(&path).unwrap() {
                    let value = xattr::get(&path, &name).unwrap().unwrap_or_default();
                    out.push(format!("X {rel} {} {}", name.to_string_lossy(), hex::encode(value)));
                }
            }
        }
    }
    out.sort();
    out
}
