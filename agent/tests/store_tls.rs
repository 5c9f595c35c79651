//! The agent through `hort+https://`: the proxy runs in this process with a certificate for
//! `localhost` and `127.0.0.1` signed by a CA made here; the real `hort-agent` binary checks it
//! against `HORT_STORE_CA_FILE`. With another CA the handshake fails, naming the CA file and the
//! host, and the proxy is never asked about a token. Plain `hort+http://` to a host that is not
//! loopback is refused before anything is sent.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hort_store::auth::{AuthError, Authenticator, FixedTokens, Token};
use hort_store::check::Namespace;
use hort_store::places::{GroupSettings, Places};
use hort_store::server::Store;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use support::store::{LoopbackProxy, serve_on_loopback};

const TOKEN: &str = "token-of-team-a";
const PASSWORD: &str = "correct horse battery staple";

/// Tokens of team-a, counting how often the proxy was asked about one.
struct Counting {
    tokens: FixedTokens,
    asked: Arc<AtomicUsize>,
}

impl Authenticator for Counting {
    async fn namespace(&self, token: &Token) -> Result<Namespace, AuthError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.tokens.namespace(token).await
    }
}

/// A CA's certificate in PEM and the issuer that signs with it.
fn ca(name: &str) -> (String, CertifiedIssuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    (issuer.pem(), issuer)
}

struct TlsProxy {
    port: u16,
    _server: LoopbackProxy,
    files: tempfile::TempDir,
    asked: Arc<AtomicUsize>,
    root: tempfile::TempDir,
}

impl TlsProxy {
    fn start() -> Self {
        let files = tempfile::tempdir().unwrap();
        let (ca_pem, issuer) = ca("hort test CA");
        let (other_pem, _) = ca("another CA");
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let write = |name: &str, text: &str| std::fs::write(files.path().join(name), text).unwrap();
        write("ca.pem", &ca_pem);
        write("other-ca.pem", &other_pem);
        write("cert.pem", &cert.pem());
        write("key.pem", &key.serialize_pem());
        write("token", TOKEN);

        let root = tempfile::tempdir().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let auth = Counting {
            tokens: FixedTokens::default().with(TOKEN, Namespace::parse("team-a").unwrap()),
            asked: asked.clone(),
        };
        let places = Places::new(vec![root.path().display().to_string()], GroupSettings::default()).unwrap();
        let store = Store::new(auth, HashMap::from([("shared".into(), places)]), std::env::temp_dir());
        let tls = (files.path().join("cert.pem"), files.path().join("key.pem"));
        let server = serve_on_loopback(store, Some((tls.0.as_path(), tls.1.as_path())));
        Self {
            port: server.port,
            _server: server,
            files,
            asked,
            root,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// `hort-agent ARGS` on `location` with the CA bundle `ca`.
    fn agent(&self, location: &str, ca: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hort-agent"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HORT_REPOSITORY", location)
            .env("HORT_STORE_TOKEN_FILE", self.file("token"))
            .env("HORT_STORE_CA_FILE", ca)
            .env("HORT_PASSWORD", PASSWORD)
            .env("HORT_LOG", "warn")
            .args(args)
            .output()
            .expect("run hort-agent")
    }
}

#[test]
fn the_agent_reaches_the_proxy_over_https_only_with_the_ca_that_signed_it() {
    let proxy = TlsProxy::start();
    let https = format!("hort+https://localhost:{}/shared", proxy.port);
    // The repository is created at the target, as the operator's check pod does.
    let init = Command::new(env!("CARGO_BIN_EXE_hort-agent"))
        .env_clear()
        .env("HORT_REPOSITORY", proxy.root.path().join("tenants/team-a"))
        .env("HORT_PASSWORD", PASSWORD)
        .args(["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let listed = proxy.agent(&https, &proxy.file("ca.pem"), &["snapshots"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let by_ip = format!("hort+https://127.0.0.1:{}/shared", proxy.port);
    let listed = proxy.agent(&by_ip, &proxy.file("ca.pem"), &["snapshots"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let asked = proxy.asked.load(Ordering::SeqCst);
    assert!(asked > 0);

    // Another CA: the handshake fails, no request (and no token) reaches the proxy.
    let other = proxy.file("other-ca.pem");
    let refused = proxy.agent(&https, &other, &["snapshots"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("localhost:{}", proxy.port))
            && stderr.contains("HORT_STORE_CA_FILE")
            && stderr.contains(&other.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");
    assert_eq!(
        proxy.asked.load(Ordering::SeqCst),
        asked,
        "the proxy was asked about a token"
    );

    // Plain HTTP to a host that is not loopback is refused before anything is sent.
    let plain = proxy.agent("hort+http://hort-store.example:8080/shared", &other, &["snapshots"]);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success());
    assert!(
        stderr.contains("plain HTTP") && stderr.contains("hort+https://"),
        "{stderr}"
    );
}
