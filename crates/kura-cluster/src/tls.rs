//! TLS between members (rustls, aws-lc-rs): the peer listener presents this node's
//! certificate and, with `tls_client_auth`, requires one from the cluster's CA; the peer client
//! checks the owner's certificate against the CA (by `tls_server_name`, or the member's IP) and
//! presents its own. The shared secret still travels in every request: TLS keeps it and the
//! segments private on the wire, and client certificates keep non-members from even asking.

use std::net::SocketAddr;
use std::sync::Arc;

use kura_config::{PeerTls, PemError, read_certs, read_key};
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why the cluster's TLS settings could not be used; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    /// A certificate or key file could not be read.
    #[error(transparent)]
    File(#[from] PemError),
    /// The CA certificate is unusable as a trust anchor.
    #[error("cluster.tls_ca: {0}")]
    Ca(rustls::Error),
    /// No client verifier can be made from the CA.
    #[error("cluster.tls_ca: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
    /// The certificate and key do not go together (or are unsupported).
    #[error("cluster.tls_cert / tls_key: {0}")]
    CertKey(rustls::Error),
    /// The crypto provider refused the protocol versions.
    #[error("TLS protocol versions: {0}")]
    Versions(rustls::Error),
}

fn roots(t: &PeerTls) -> Result<rustls::RootCertStore, PeerTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(&t.ca)? {
        roots.add(c).map_err(PeerTlsError::Ca)?;
    }
    Ok(roots)
}

/// The peer listener's TLS (HTTP/2 by ALPN).
pub fn server_config(t: &PeerTls) -> Result<Arc<rustls::ServerConfig>, PeerTlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(PeerTlsError::Versions)?;
    let builder = if t.client_auth {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(t)?), provider())
            .build()
            .map_err(PeerTlsError::Verifier)?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(read_certs(&t.cert)?, read_key(&t.key)?)
        .map_err(PeerTlsError::CertKey)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The peer client's TLS and the name it checks owners' certificates against.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<String>,
}

impl ClientTls {
    /// The client side of the cluster's `tls_*` settings: trusts `tls_ca` and, with
    /// `tls_client_auth`, presents `tls_cert`; fails when a file is unreadable or unusable.
    pub fn new(t: &PeerTls) -> Result<Self, PeerTlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(PeerTlsError::Versions)?
            .with_root_certificates(roots(t)?);
        let mut config = if t.client_auth {
            builder
                .with_client_auth_cert(read_certs(&t.cert)?, read_key(&t.key)?)
                .map_err(PeerTlsError::CertKey)?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: t.server_name.clone(),
        })
    }

    /// Wraps a connection to the member at `addr`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = match &self.server_name {
            Some(n) => {
                ServerName::try_from(n.clone()).map_err(|e| std::io::Error::other(e.to_string()))?
            }
            None => ServerName::IpAddress(addr.ip().into()),
        };
        self.connector.connect(name, stream).await
    }
}
