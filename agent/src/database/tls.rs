//! TLS of the connections to database servers, the same for the client tools and the agent's
//! own PostgreSQL session ([`hort_protocol::TlsMode`]):
//!
//! - `disable`: plain connections (`PGSSLMODE=disable`, `--skip-ssl`);
//! - `prefer`: TLS when the server offers it, its certificate unchecked (`PGSSLMODE=prefer`,
//!   `--ssl`, which falls back to plain with MariaDB's 10.11 client);
//! - `verify-full`: TLS or no connection, the certificate chaining to the CA file and naming
//!   the host (`PGSSLMODE=verify-full` + `PGSSLROOTCERT`, `--ssl-ca` +
//!   `--ssl-verify-server-cert`; rustls for the agent's session).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use hort_protocol::{DatabaseTls, TlsMode};
use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::DatabaseError;

/// Sets libpq's TLS variables in a PostgreSQL client tool's environment.
pub(super) fn postgres_env(tls: &DatabaseTls, cmd: &mut Command) {
    cmd.env("PGSSLMODE", tls.mode.as_str());
    match &tls.ca_file {
        Some(ca) => cmd.env("PGSSLROOTCERT", ca),
        None => cmd.env_remove("PGSSLROOTCERT"),
    };
}

/// The TLS arguments of a MariaDB client tool.
pub(super) fn mariadb_args(tls: &DatabaseTls) -> Vec<String> {
    match (tls.mode, &tls.ca_file) {
        (TlsMode::Disable, _) => vec!["--skip-ssl".into()],
        (TlsMode::Prefer, _) => vec!["--ssl".into()],
        (TlsMode::VerifyFull, ca) => {
            let mut args = vec!["--ssl".to_string(), "--ssl-verify-server-cert".to_string()];
            args.extend(ca.iter().map(|ca| format!("--ssl-ca={ca}")));
            args
        }
    }
}

/// How the agent's own PostgreSQL session connects: libpq's mode and a rustls connector.
pub(super) fn postgres_connector(tls: &DatabaseTls) -> Result<(SslMode, MakeRustlsConnect), DatabaseError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(tls, e.to_string()))?;
    let (mode, config) = match tls.mode {
        TlsMode::Disable => (SslMode::Disable, unchecked(builder, provider)),
        TlsMode::Prefer => (SslMode::Prefer, unchecked(builder, provider)),
        TlsMode::VerifyFull => {
            let Some(ca) = &tls.ca_file else {
                return Err(tls_error(tls, "verify-full needs a CA file".into()));
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(Path::new(ca)).map_err(|e| tls_error(tls, e.to_string()))? {
                let cert = cert.map_err(|e| tls_error(tls, e.to_string()))?;
                roots.add(cert).map_err(|e| tls_error(tls, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(tls_error(tls, "it holds no certificate".into()));
            }
            let config = builder.with_root_certificates(roots).with_no_client_auth();
            (SslMode::Require, config)
        }
    };
    Ok((mode, MakeRustlsConnect::new(config)))
}

fn tls_error(tls: &DatabaseTls, reason: String) -> DatabaseError {
    DatabaseError::Tls {
        ca_file: tls.ca_file.clone().unwrap_or_default(),
        reason,
    }
}

/// A client configuration that encrypts but takes any certificate (`prefer`).
fn unchecked(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
    provider: Arc<CryptoProvider>,
) -> ClientConfig {
    builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth()
}

/// Takes every certificate, but still checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_means_the_same_to_every_client() {
        let tls = |mode, ca: Option<&str>| DatabaseTls {
            mode,
            ca_file: ca.map(str::to_owned),
        };
        let env_of = |tls: &DatabaseTls| {
            let mut cmd = Command::new("pg_dump");
            postgres_env(tls, &mut cmd);
            cmd.get_envs()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.map(|v| v.to_string_lossy().into_owned()),
                    )
                })
                .collect::<Vec<_>>()
        };
        let verify = tls(TlsMode::VerifyFull, Some("/ca.crt"));
        assert_eq!(
            env_of(&verify),
            [
                ("PGSSLMODE".to_string(), Some("verify-full".to_string())),
                ("PGSSLROOTCERT".to_string(), Some("/ca.crt".to_string()))
            ]
        );
        assert_eq!(
            mariadb_args(&verify),
            ["--ssl", "--ssl-verify-server-cert", "--ssl-ca=/ca.crt"]
        );
        assert_eq!(env_of(&tls(TlsMode::Disable, None))[0].1.as_deref(), Some("disable"));
        assert_eq!(mariadb_args(&tls(TlsMode::Disable, None)), ["--skip-ssl"]);
        assert_eq!(env_of(&tls(TlsMode::Prefer, None))[0].1.as_deref(), Some("prefer"));
        assert_eq!(mariadb_args(&tls(TlsMode::Prefer, None)), ["--ssl"]);
    }

    #[test]
    fn a_ca_file_that_holds_no_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.crt");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let tls = DatabaseTls {
            mode: TlsMode::VerifyFull,
            ca_file: Some(empty.to_string_lossy().into_owned()),
        };
        let message = postgres_connector(&tls).err().unwrap().to_string();
        assert!(
            message.contains(&*empty.to_string_lossy()) && message.contains("no certificate"),
            "{message}"
        );
    }
}
