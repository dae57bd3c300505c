//! TLS to backends (`https://` URLs): one rustls client configuration per pool, trusting the
//! pool's `tls_ca` bundle or, without one, the Mozilla roots (webpki-roots, so the trust does
//! not depend on the host's CA files). ALPN offers h2 or http/1.1 as the pool speaks.

use std::sync::Arc;

use kura_config::PoolSpec;
use rustls::RootCertStore;

/// The pool's client configuration, if any of its backends uses TLS.
pub fn client_config(spec: &PoolSpec) -> Option<Arc<rustls::ClientConfig>> {
    if !spec.backends.iter().any(|b| b.tls) {
        return None;
    }
    let mut roots = RootCertStore::empty();
    match &spec.tls_ca {
        Some(path) => match kura_config::read_certs(path) {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs);
                if ignored > 0 || added == 0 {
                    tracing::warn!(pool = %spec.name, ca = %path.display(), added, ignored, "some CA certificates were not usable");
                }
            }
            // Validation read this file; it changed since. Connections will fail verification.
            Err(e) => tracing::error!(pool = %spec.name, error = %e, "tls_ca unreadable"),
        },
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if spec.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Some(Arc::new(config))
}
