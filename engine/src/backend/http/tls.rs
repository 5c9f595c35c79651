//! How the agent reaches `hort-store` safely. `hort+https://` verifies the proxy's
//! certificate against the CA bundle in the file [`env::STORE_CA_FILE`] names (and nothing
//! else: not the system's roots). `hort+http://` is accepted only for a loopback host (tests,
//! a proxy beside the agent): the bearer token never crosses a network in plain text.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hort_protocol::{StoreLocation, env};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

/// Why the agent will not talk to a proxy location.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// `hort+http://` to a host that is not loopback.
    #[error(
        "{location}: refusing to send the ServiceAccount token in plain HTTP to a host that is not loopback; use hort+https:// with {ca}",
        ca = env::STORE_CA_FILE
    )]
    PlainHttp {
        /// The location.
        location: String,
    },
    /// `hort+https://` without a CA bundle.
    #[error(
        "{location}: {ca} is not set; it names the PEM file of the CA that signed hort-store's certificate",
        ca = env::STORE_CA_FILE
    )]
    NoCaFile {
        /// The location.
        location: String,
    },
    /// The CA bundle cannot be read or holds no certificate.
    #[error("{ca} {path}: {problem}", ca = env::STORE_CA_FILE, path = path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Whether `host` (a name or an IP address, IPv6 in brackets) is this machine.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The TLS settings for `location`: `None` for loopback `hort+http://`, else the CA bundle
/// of `ca_file` as the only roots.
pub fn tls_config(location: &StoreLocation, ca_file: Option<&Path>) -> Result<Option<TlsConfig>, TransportError> {
    let text = hort_protocol::Location::Store(location.clone()).to_string();
    if !location.tls {
        return match is_loopback(&location.host) {
            true => Ok(None),
            false => Err(TransportError::PlainHttp { location: text }),
        };
    }
    let path = ca_file.ok_or(TransportError::NoCaFile { location: text })?;
    let problem = |problem: String| TransportError::CaFile {
        path: path.to_owned(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(cert) = item.map_err(|e| problem(e.to_string()))? {
            roots.push(cert);
        }
    }
    if roots.is_empty() {
        return Err(problem("no PEM certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Some(
        TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::new_with_certs(&roots))
            .unversioned_rustls_crypto_provider(provider)
            .build(),
    ))
}

/// Whether `error` is a failed TLS handshake (rustls reports a refused certificate inside an
/// I/O error), which trying again cannot mend.
pub fn is_handshake_failure(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => true,
        ureq::Error::Io(io) => io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(host: &str, tls: bool) -> StoreLocation {
        StoreLocation {
            host: host.into(),
            port: 8443,
            group: "shared".into(),
            tls,
        }
    }

    #[test]
    fn plain_http_only_to_loopback_and_https_only_with_a_ca_file() {
        for host in ["127.0.0.1", "127.9.9.9", "localhost", "[::1]"] {
            assert!(tls_config(&store(host, false), None).unwrap().is_none(), "{host}");
        }
        let far = tls_config(&store("hort-store.hort.svc", false), None)
            .unwrap_err()
            .to_string();
        assert!(
            far.contains("hort+http://hort-store.hort.svc:8443/shared") && far.contains("hort+https://"),
            "{far}"
        );
        let no_ca = tls_config(&store("hort-store.hort.svc", true), None)
            .unwrap_err()
            .to_string();
        assert!(no_ca.contains("HORT_STORE_CA_FILE is not set"), "{no_ca}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let bad = tls_config(&store("h", true), Some(&empty)).unwrap_err().to_string();
        assert!(
            bad.contains("HORT_STORE_CA_FILE") && bad.contains("ca.pem") && bad.contains("no PEM certificate"),
            "{bad}"
        );
    }
}
