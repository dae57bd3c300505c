//! TLS listeners: certificates picked by SNI, a default one, reloaded when their files change.
//!
//! rustls asks [`CertStore`] for a certificate on every handshake; the store answers from a
//! name map (exact names, then `*.` wildcards one label up, then the default) held in an
//! `ArcSwap`, so a reload swaps the whole set while handshakes go on. Names come from the
//! configuration's `hosts` or from the certificate's DNS names (x509-parser). A task polls the
//! files' modification times every `reload_interval`; a set that fails to load (a key that does
//! not match, a half-written file) is refused with the field named and the old one stays.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use kura_config::{CertificateConfig, PemError, TlsConfig};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a listener's certificates could not be loaded; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file was refused.
    #[error("{field}.cert: {cause}")]
    Cert {
        /// The certificate's configuration field.
        field: String,
        /// Why it was refused.
        cause: PemError,
    },
    /// The key file was refused.
    #[error("{field}.key: {cause}")]
    Key {
        /// The certificate's configuration field.
        field: String,
        /// Why it was refused.
        cause: PemError,
    },
    /// The certificate and key do not go together (or the chain is unusable).
    #[error("{field}: certificate and key do not go together: {cause}")]
    Mismatch {
        /// The certificate's configuration field.
        field: String,
        /// Why it was refused.
        cause: rustls::Error,
    },
    /// The crypto provider refused the protocol versions.
    #[error("TLS protocol versions: {0}")]
    Versions(rustls::Error),
}

/// The certificates of one listener, by name.
struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// Modification times of every file, to notice changes.
    stamps: Vec<(PathBuf, Option<SystemTime>)>,
}

#[derive(Debug)]
pub struct CertStore {
    set: ArcSwap<CertSetHandle>,
}

/// `CertSet` behind a `Debug` impl (rustls requires one of resolvers).
struct CertSetHandle(CertSet);

impl std::fmt::Debug for CertSetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CertSet({} names)",
            self.0.exact.len() + self.0.wildcard.len()
        )
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.set.load();
        let set = &set.0;
        let Some(name) = hello.server_name() else {
            return Some(set.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(c) = set.exact.get(&name) {
            return Some(c.clone());
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(c) = set.wildcard.get(parent)
        {
            return Some(c.clone());
        }
        Some(set.default.clone())
    }
}

impl CertStore {
    pub fn load(cfg: &TlsConfig) -> Result<Arc<CertStore>, TlsError> {
        Ok(Arc::new(CertStore {
            set: ArcSwap::from_pointee(CertSetHandle(load_set(cfg)?)),
        }))
    }

    /// Re-reads the files if any changed; returns whether a new set was swapped in.
    pub fn reload_if_changed(&self, cfg: &TlsConfig) -> Result<bool, TlsError> {
        let current = self.set.load();
        let changed = current.0.stamps.iter().any(|(p, t)| stamp(p) != *t);
        if !changed {
            return Ok(false);
        }
        self.set.store(Arc::new(CertSetHandle(load_set(cfg)?)));
        Ok(true)
    }
}

fn stamp(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load_set(cfg: &TlsConfig) -> Result<CertSet, TlsError> {
    let mut set = CertSet {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
        default: Arc::new(load_one(&cfg.certificates[cfg.default])?.0),
        stamps: Vec::new(),
    };
    for c in &cfg.certificates {
        set.stamps.push((c.cert.clone(), stamp(&c.cert)));
        set.stamps.push((c.key.clone(), stamp(&c.key)));
        let (key, names) = load_one(c)?;
        let key = Arc::new(key);
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => set.wildcard.entry(parent.to_string()),
                None => set.exact.entry(name),
            }
            .or_insert_with(|| key.clone());
        }
    }
    Ok(set)
}

/// One certificate with its key, and the names it serves.
fn load_one(c: &CertificateConfig) -> Result<(CertifiedKey, Vec<String>), TlsError> {
    let field = || c.field.clone();
    let chain = kura_config::read_certs(&c.cert).map_err(|source| TlsError::Cert {
        field: field(),
        cause: source,
    })?;
    let key = kura_config::read_key(&c.key).map_err(|source| TlsError::Key {
        field: field(),
        cause: source,
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified =
        CertifiedKey::from_der(chain, key, &provider).map_err(|source| TlsError::Mismatch {
            field: field(),
            cause: source,
        })?;
    let names = if c.hosts.is_empty() {
        dns_names(
            certified
                .end_entity_cert()
                .map_err(|source| TlsError::Mismatch {
                    field: field(),
                    cause: source,
                })?,
        )
    } else {
        c.hosts.clone()
    };
    Ok((certified, names))
}

/// The DNS names of a certificate (subjectAltName, else the subject's common name).
fn dns_names(der: &rustls::pki_types::CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    names
}

/// A listener's two rustls configurations, one chosen per ClientHello.
///
/// Cipher order: kura prefers AES-128-GCM, as BoringSSL and most CDNs do, where rustls and
/// OpenSSL clients put AES-256-GCM first. The difference is the hash: under
/// `TLS13_AES_256_GCM_SHA384` every step of the key schedule, the transcript and each ticket
/// is SHA-384, which aws-lc runs without vector instructions on AMD processors (its AVX path
/// is enabled on Intel only), while SHA-256 uses the SHA extensions everywhere: SHA-512 blocks
/// were 15 % of kura's CPU in a new-connection benchmark. A client that lists ChaCha20 first
/// (how a client without AES instructions says so) keeps its own order.
pub struct ServerConfigs {
    /// kura's order: AES-128-GCM, AES-256-GCM, then ChaCha20 (`ignore_client_order`).
    preferred: Arc<rustls::ServerConfig>,
    /// rustls's order, the client's choice first.
    client_order: Arc<rustls::ServerConfig>,
}

impl ServerConfigs {
    /// The configuration for this ClientHello: the client's order when the first suite it
    /// offers that kura has is a ChaCha20 one (unknown and GREASE values skipped).
    pub fn for_hello(&self, hello: &ClientHello<'_>) -> Arc<rustls::ServerConfig> {
        let offered = hello
            .cipher_suites()
            .iter()
            .find(|s| suite_rank(**s).is_some());
        match offered.and_then(|s| suite_rank(*s)) {
            Some(Rank::ChaCha) => self.client_order.clone(),
            _ => self.preferred.clone(),
        }
    }
}

/// Where a cipher suite stands in kura's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Aes128,
    Aes256,
    ChaCha,
}

/// The rank of a suite kura offers; `None` for one it does not.
fn suite_rank(suite: rustls::CipherSuite) -> Option<Rank> {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Some(Rank::Aes128),
        S::TLS13_AES_256_GCM_SHA384
        | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Some(Rank::Aes256),
        S::TLS13_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Some(Rank::ChaCha),
        _ => None,
    }
}

/// The rustls configurations of a listener: `store` for certificates, ALPN h2 when `http2`.
/// Both share one session cache and one ticket key, so a session made under one resumes
/// under the other when the same suite is chosen (rustls resumes only under its own suite:
/// a client that changes its order from ChaCha20 first to AES first gets a full handshake).
pub fn server_configs(store: Arc<CertStore>, http2: bool) -> Result<ServerConfigs, TlsError> {
    let default = rustls::crypto::aws_lc_rs::default_provider();
    let mut ours = default.clone();
    ours.cipher_suites
        .retain(|s| suite_rank(s.suite()).is_some());
    ours.cipher_suites.sort_by_key(|s| suite_rank(s.suite()));
    // Resumption: session IDs (a larger cache than rustls's 256) and TLS 1.3 tickets.
    let sessions = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().ok();
    let build = |provider: rustls::crypto::CryptoProvider, ignore_client_order: bool| {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Versions)?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        config.ignore_client_order = ignore_client_order;
        config.session_storage = sessions.clone();
        if let Some(t) = &ticketer {
            config.ticketer = t.clone();
        }
        Ok::<_, TlsError>(Arc::new(config))
    };
    Ok(ServerConfigs {
        preferred: build(ours, true)?,
        client_order: build(default, false)?,
    })
}

/// A TLS listener's certificates and their configuration.
pub struct TlsListener {
    pub cfg: TlsConfig,
    pub store: Arc<CertStore>,
    pub configs: ServerConfigs,
}

impl TlsListener {
    pub fn new(cfg: &TlsConfig, http2: bool) -> Result<TlsListener, TlsError> {
        let store = CertStore::load(cfg)?;
        let configs = server_configs(store.clone(), http2)?;
        Ok(TlsListener {
            cfg: cfg.clone(),
            store,
            configs,
        })
    }

    /// Reloads changed certificate files, logging the outcome; `Err` (the previous set kept)
    /// when the new files do not make a usable set.
    pub fn check_files(&self) -> Result<(), TlsError> {
        match self.store.reload_if_changed(&self.cfg) {
            Ok(true) => tracing::info!("TLS certificates reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "TLS certificates not reloaded; the previous ones stay");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Polls the files every `reload_interval` until `stop` is cancelled.
    pub fn watch(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        if self.cfg.reload_interval.is_zero() {
            return;
        }
        let me = Arc::downgrade(self);
        let every = self.cfg.reload_interval;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                let Some(l) = me.upgrade() else { return };
                let _ = l.check_files();
            }
        });
    }
}
