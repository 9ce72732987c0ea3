//! HTTPS for promcast's own endpoints with rustls, configured like
//! Prometheus's web configuration (`tls_server_config`).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion, version};

use crate::config::{ClientAuthType, TlsServerConfig, TlsVersion};

/// Why TLS could not be set up; each names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_server_config.{field} ({path}): {reason}")]
    File {
        field: &'static str,
        path: String,
        reason: String,
    },
    #[error("tls_server_config: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
    #[error("tls_server_config client authentication: {0}")]
    ClientVerifier(String),
}

/// A TLS acceptor for the configured certificate, key, client
/// authentication and protocol versions.
pub fn acceptor(config: &TlsServerConfig) -> Result<TlsAcceptor, TlsError> {
    // Named explicitly: a second provider compiled in by a dependency would
    // otherwise make rustls refuse to pick one at run time.
    let provider = Arc::new(ring::default_provider());
    let certs = certificates(&config.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| TlsError::File {
        field: "key_file",
        path: config.key_file.display().to_string(),
        reason: e.to_string(),
    })?;
    let min = config.min_version.unwrap_or(TlsVersion::TLS12);
    let max = config.max_version.unwrap_or(TlsVersion::TLS13);
    let versions: Vec<&'static SupportedProtocolVersion> = [
        (TlsVersion::TLS12, &version::TLS12),
        (TlsVersion::TLS13, &version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, supported)| supported)
    .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)?;
    let client_auth = config
        .client_auth()
        .map_err(|(_, reason)| TlsError::ClientVerifier(reason.to_owned()))?;
    let builder = match (&config.client_ca_file, client_auth) {
        (
            Some(ca),
            ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert,
        ) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "client_ca_file")? {
                roots.add(cert)?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if client_auth == ClientAuthType::VerifyClientCertIfGiven {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn certificates(
    path: &Path,
    field: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        field,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}
