//! Versity Gateway (installed by `agent/scripts/install-versitygw.sh`) on a free loopback
//! port with its posix backend: an S3 server that enforces Object Lock (a locked object's
//! DELETE is refused until its retention date). A direct S3 client for what the tests
//! look at behind the agent's back.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::{ACCESS_KEY, SECRET_KEY};

fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-versitygw.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run install-versitygw.sh");
        assert!(out.status.success(), "install-versitygw.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// A running Versity Gateway; killed on drop.
pub struct Versity {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _root: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    /// A client with the root keys.
    pub client: Client,
}

impl Drop for Versity {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Versity {
    /// Starts the gateway on an empty directory.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts the gateway with bucket versioning (as on AWS, where an Object Lock bucket is
    /// always versioned: a DELETE without a version only adds a delete marker).
    pub fn start_versioned() -> Self {
        Self::start_with(true)
    }

    fn start_with(versioning: bool) -> Self {
        let root = tempfile::tempdir().unwrap();
        let versions = root.path().join("versions");
        let data = root.path().join("data");
        std::fs::create_dir_all(&versions).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary())
            .env_clear()
            .args(["--access", ACCESS_KEY, "--secret", SECRET_KEY])
            .args(["--port", &format!("127.0.0.1:{port}")])
            .arg("posix")
            .args(versioning.then(|| format!("--versioning-dir={}", versions.display())))
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start versitygw");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "versitygw did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build();
        Self {
            child,
            endpoint,
            _root: root,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: Client::from_conf(config),
        }
    }

    /// Runs a request of the test's client.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Creates `bucket`, with Object Lock enabled or not.
    pub fn create_bucket(&self, bucket: &str, object_lock: bool) {
        self.block_on(
            self.client
                .create_bucket()
                .bucket(bucket)
                .object_lock_enabled_for_bucket(object_lock)
                .send(),
        )
        .unwrap();
    }

    /// Turns versioning on for `bucket` (a server started with [`Versity::start_versioned`]).
    pub fn enable_versioning(&self, bucket: &str) {
        let enabled = aws_sdk_s3::types::VersioningConfiguration::builder()
            .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
            .build();
        self.block_on(
            self.client
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(enabled)
                .send(),
        )
        .unwrap();
    }

    /// Every stored version and delete marker under `prefix` in `bucket`, as `key@version`.
    pub fn versions(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self
            .block_on(self.client.list_object_versions().bucket(bucket).prefix(prefix).send())
            .unwrap();
        let versions = out
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(out.delete_markers().iter().map(|m| (m.key(), m.version_id())));
        let mut all: Vec<String> = versions
            .map(|(k, v)| format!("{}@{}", k.unwrap_or_default(), v.unwrap_or_default()))
            .collect();
        all.sort();
        all
    }

    /// Every key under `prefix` in `bucket`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self
            .block_on(self.client.list_objects_v2().bucket(bucket).prefix(prefix).send())
            .unwrap();
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }
}
