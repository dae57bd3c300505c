//! Certificates for TLS tests: a throwaway CA (rcgen) issuing leaf certificates written as
//! PEM files, and rustls clients that trust it, with the SNI name and ALPN a test asks for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A throwaway certificate authority, with its own key, that issues [`Leaf`] certificates.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate written to disk.
pub struct Leaf {
    /// The certificate's PEM file, `<stem>.crt`.
    pub cert: PathBuf,
    /// The private key's PEM file, `<stem>.key`.
    pub key: PathBuf,
    /// The certificate, to compare with what a server presented ([`served_cert`]).
    pub der: CertificateDer<'static>,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A new self-signed CA with a fresh key.
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    /// The CA certificate as PEM (for `tls_ca`).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Issues a certificate for `names` and writes `<stem>.crt` / `<stem>.key` in `dir`.
    pub fn leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            der: cert.der().clone(),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }

    /// A client trusting this CA, offering `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        self.client_offering(alpn, provider.cipher_suites, rustls::DEFAULT_VERSIONS)
    }

    /// A client trusting this CA, offering `alpn`, the cipher `suites` in this order, and the
    /// protocol `versions`.
    pub fn client_offering(
        &self,
        alpn: &[&[u8]],
        suites: Vec<rustls::SupportedCipherSuite>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: suites,
            ..rustls::crypto::aws_lc_rs::default_provider()
        };
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Connects to `addr` and handshakes with SNI `name` (an IP address sends no SNI).
pub async fn connect(
    addr: std::net::SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name =
        ServerName::try_from(name.to_string()).map_err(|e| std::io::Error::other(e.to_string()))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The certificate the server presented.
pub fn served_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}
