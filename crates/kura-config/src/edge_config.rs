//! The edge of the configuration: listeners (TLS certificates, HTTP/2, the https redirect)
//! and the Redis route source. Certificate files are read here so that `kura check` and a
//! reload refuse a missing or unparsable file with its field named, before anything is swapped.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::defaults::*;
use crate::file::*;
use crate::pool_config::validate_pool;
use crate::validate::{Errors, parse_addr};
use crate::*;

/// Why a certificate or key file was refused; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        cause: rustls_pki_types::pem::Error,
    },
    /// A PEM section that is not a certificate, or broken.
    #[error("{}: not PEM certificates: {cause}", path.display())]
    NotCertificates {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        cause: rustls_pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("{}: no certificate in the file", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// No private key could be read from the file.
    #[error("{}: no usable private key: {cause}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        cause: rustls_pki_types::pem::Error,
    },
}

/// The certificates of a PEM file (leaf first), or why not.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|source| PemError::Read {
            path: path.to_path_buf(),
            cause: source,
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PemError::NotCertificates {
            path: path.to_path_buf(),
            cause: source,
        })?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file, or why not.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| PemError::NoKey {
        path: path.to_path_buf(),
        cause: source,
    })
}

pub(crate) fn validate_listeners(
    file: &FileConfig,
    base_dir: &Path,
    errs: &mut Errors,
) -> Vec<ListenerConfig> {
    if file.listeners.is_empty() {
        errs.push("listeners", "at least one listener is required");
    }
    let mut out: Vec<ListenerConfig> = Vec::new();
    for (i, l) in file.listeners.iter().enumerate() {
        let field = format!("listeners[{i}]");
        let address = match parse_addr(&l.address) {
            Ok(a) => a,
            Err(e) => {
                errs.push(format!("{field}.address"), e);
                continue;
            }
        };
        if address.port() != 0 && out.iter().any(|o| o.address == address) {
            errs.push(format!("{field}.address"), "listed twice");
        }
        let tls = l
            .tls
            .as_ref()
            .map(|t| validate_tls(t, &format!("{field}.tls"), base_dir, errs));
        let redirect = l.redirect_to_https.unwrap_or(false);
        if redirect && tls.is_some() {
            errs.push(
                format!("{field}.redirect_to_https"),
                "a TLS listener cannot redirect to https (it is https)",
            );
        }
        if l.https_port.is_some() && !redirect {
            errs.push(
                format!("{field}.https_port"),
                "only used with redirect_to_https = true",
            );
        }
        out.push(ListenerConfig {
            address,
            http2: l.http2.unwrap_or(tls.is_some()),
            tls,
            redirect_https: redirect.then(|| l.https_port.unwrap_or(DEFAULT_HTTPS_PORT)),
        });
    }
    out
}

fn validate_tls(t: &FileTls, field: &str, base_dir: &Path, errs: &mut Errors) -> TlsConfig {
    if t.certificates.is_empty() {
        errs.push(
            format!("{field}.certificates"),
            "a TLS listener needs at least one certificate",
        );
    }
    let mut certificates = Vec::new();
    let mut default = None;
    for (i, c) in t.certificates.iter().enumerate() {
        let f = format!("{field}.certificates[{i}]");
        let cert: PathBuf = base_dir.join(&c.cert);
        let key: PathBuf = base_dir.join(&c.key);
        if let Err(e) = read_certs(&cert) {
            errs.push(format!("{f}.cert"), e);
        }
        if let Err(e) = read_key(&key) {
            errs.push(format!("{f}.key"), e);
        }
        let mut hosts = Vec::new();
        for (j, h) in c.hosts.iter().flatten().enumerate() {
            let h = h.trim().to_ascii_lowercase();
            let name = h.strip_prefix("*.").unwrap_or(&h);
            if name.is_empty() || name.contains(['*', ':', '/', ' ']) {
                errs.push(
                    format!("{f}.hosts[{j}]"),
                    format!("{h:?} is not a host name"),
                );
            }
            hosts.push(h);
        }
        if c.default == Some(true) {
            if default.is_some() {
                errs.push(
                    format!("{f}.default"),
                    "only one certificate can be the default",
                );
            }
            default = Some(i);
        }
        certificates.push(CertificateConfig {
            cert,
            key,
            hosts,
            field: f,
        });
    }
    TlsConfig {
        certificates,
        default: default.unwrap_or(0),
        reload_interval: errs.duration(
            &format!("{field}.reload_interval"),
            &t.reload_interval,
            DEFAULT_TLS_RELOAD_INTERVAL,
        ),
    }
}

pub(crate) fn validate_redis(
    r: Option<&FileRedis>,
    routes: &Routes,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<RedisConfig> {
    let r = r?;
    match r.url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("redis" | "rediss")) && u.host().is_some() => {}
        _ => errs.push(
            "redis.url",
            format!("{:?} is not redis://[:password@]host:port[/db]", r.url),
        ),
    }
    let dead_backend_ttl = errs.duration(
        "redis.dead_backend_ttl",
        &r.dead_backend_ttl,
        DEFAULT_REDIS_DEAD_BACKEND_TTL,
    );
    let mut pool_template = match &r.pool_template {
        Some(name) => match routes.pools.get(name) {
            Some(p) => p.clone(),
            None => {
                errs.push("redis.pool_template", format!("no pool named {name:?}"));
                default_pool(base_dir)
            }
        },
        None => default_pool(base_dir),
    };
    pool_template.backends.clear();
    pool_template.dead_backend_ttl = dead_backend_ttl;
    let resync_interval = errs.period(
        "redis.resync_interval",
        &r.resync_interval,
        DEFAULT_REDIS_RESYNC_INTERVAL,
    );
    if resync_interval.is_zero() {
        errs.push("redis.resync_interval", "must be more than 0s");
    }
    Some(RedisConfig {
        url: r.url.clone(),
        resync_interval,
        dead_backend_ttl,
        pool_template,
        configure_notifications: r
            .configure_notifications
            .unwrap_or(DEFAULT_REDIS_CONFIGURE_NOTIFICATIONS),
    })
}

/// A pool with every default and no backends.
fn default_pool(base_dir: &Path) -> PoolSpec {
    let mut ignored = Errors(Vec::new());
    validate_pool("redis", &FilePool::default(), base_dir, &mut ignored)
}
