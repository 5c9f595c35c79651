//! `hort-store` served in the test's own process on a free loopback port.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hort_engine::location::S3Defaults;
use hort_store::admission::Admission;
use hort_store::auth::{Authenticator, FixedTokens};
use hort_store::check::Namespace;
use hort_store::places::{GroupSettings, Places};
use hort_store::server::{Store, serve};
use hort_store::tls::{TlsListener, acceptor};

use super::{ACCESS_KEY, Repo, SECRET_KEY};

/// A proxy serving in a runtime of its own; it stops when this is dropped.
pub struct LoopbackProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    _runtime: tokio::runtime::Runtime,
    /// The store, dropped after the runtime (its S3 backends own runtimes, which must not be
    /// dropped inside another's task).
    _store: Arc<dyn Send + Sync>,
}

/// Serves `store` on 127.0.0.1: plain HTTP, or HTTPS with `tls` (certificate chain and key,
/// PEM files).
pub fn serve_on_loopback<A: Authenticator, N: Admission>(
    store: Store<A, N>,
    tls: Option<(&Path, &Path)>,
) -> LoopbackProxy {
    let tls = tls.map(|(cert, key)| acceptor(cert, key).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let store = Arc::new(store);
    let served = store.clone();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        match tls {
            Some(tls) => serve(TlsListener::new(listener, tls).unwrap(), served).await,
            None => serve(listener, served).await,
        }
    });
    LoopbackProxy {
        port,
        _runtime: runtime,
        _store: store,
    }
}

/// The proxy's settings for S3 targets on a test server at `endpoint` that name no keys of
/// their own: the test servers' keys (given, never read from the environment).
pub fn s3_settings(endpoint: &str) -> GroupSettings {
    GroupSettings {
        s3: S3Defaults {
            endpoint: Some(endpoint.to_owned()),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
        },
        ..GroupSettings::default()
    }
}

/// Serves group `shared` of `targets`, formed as `settings` say, to namespace `team-a` alone;
/// returns the proxy and team-a's repository through it (its token file is in `dir`).
pub fn team_a_through_proxy(targets: Vec<String>, settings: GroupSettings, dir: &Path) -> (LoopbackProxy, Repo) {
    const TOKEN: &str = "token-of-team-a";
    let token_file = dir.join("token-of-team-a");
    std::fs::write(&token_file, TOKEN).unwrap();
    let places = Places::new(targets, settings).unwrap();
    let auth = FixedTokens::default().with(TOKEN, Namespace::parse("team-a").unwrap());
    let store = Store::new(auth, HashMap::from([("shared".into(), places)]), std::env::temp_dir());
    let proxy = serve_on_loopback(store, None);
    let location = format!("hort+http://127.0.0.1:{}/shared", proxy.port);
    (proxy, Repo::through_proxy(location, token_file))
}
