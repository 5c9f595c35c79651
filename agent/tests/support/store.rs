//! `hort-store` served in the test's own process on a free loopback port.

use std::path::Path;
use std::sync::Arc;

use hort_store::admission::Admission;
use hort_store::auth::Authenticator;
use hort_store::server::{Store, serve};
use hort_store::tls::{TlsListener, acceptor};

/// A proxy serving in a runtime of its own; it stops when this is dropped.
pub struct LoopbackProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    _runtime: tokio::runtime::Runtime,
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
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        match tls {
            Some(tls) => serve(TlsListener::new(listener, tls).unwrap(), Arc::new(store)).await,
            None => serve(listener, Arc::new(store)).await,
        }
    });
    LoopbackProxy {
        port,
        _runtime: runtime,
    }
}
