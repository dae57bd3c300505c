//! Validation of `[cluster]`: the peer listener's address, where members come from (a static
//! list or etcd), the shared secret and the peer timeouts.

use std::path::{Path, PathBuf};

use crate::defaults::*;
use crate::file::FileCluster;
use crate::validate::Errors;
use crate::{ClusterConfig, EtcdTls, MemberSource, PeerTls, read_certs, read_key};

/// A PEM file field: resolved against `base`, and read now so a bad file is named.
fn pem(
    errs: &mut Errors,
    base: &Path,
    field: &str,
    value: &Option<String>,
    key: bool,
) -> Option<PathBuf> {
    let path = base.join(value.as_ref()?);
    let read = if key {
        read_key(&path).map(|_| ())
    } else {
        read_certs(&path).map(|_| ())
    };
    if let Err(e) = read {
        errs.push(field, e);
    }
    Some(path)
}

fn peer_tls(c: &FileCluster, base: &Path, errs: &mut Errors) -> Option<PeerTls> {
    let set = [&c.tls_cert, &c.tls_key, &c.tls_ca]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set == 0 {
        for (field, v) in [
            ("cluster.tls_client_auth", c.tls_client_auth.is_some()),
            ("cluster.tls_server_name", c.tls_server_name.is_some()),
        ] {
            if v {
                errs.push(field, "needs tls_cert, tls_key and tls_ca");
            }
        }
        return None;
    }
    if set != 3 {
        errs.push(
            "cluster.tls_cert",
            "TLS between members needs tls_cert, tls_key and tls_ca together",
        );
        return None;
    }
    Some(PeerTls {
        cert: pem(errs, base, "cluster.tls_cert", &c.tls_cert, false)?,
        key: pem(errs, base, "cluster.tls_key", &c.tls_key, true)?,
        ca: pem(errs, base, "cluster.tls_ca", &c.tls_ca, false)?,
        client_auth: c.tls_client_auth.unwrap_or(true),
        server_name: c.tls_server_name.clone(),
    })
}

fn etcd_tls(c: &FileCluster, base: &Path, errs: &mut Errors) -> Option<EtcdTls> {
    let ca = pem(errs, base, "cluster.etcd_ca", &c.etcd_ca, false);
    let identity = match (&c.etcd_cert, &c.etcd_key) {
        (Some(_), Some(_)) => Some((
            pem(errs, base, "cluster.etcd_cert", &c.etcd_cert, false)?,
            pem(errs, base, "cluster.etcd_key", &c.etcd_key, true)?,
        )),
        (None, None) => None,
        _ => {
            errs.push("cluster.etcd_cert", "etcd_cert and etcd_key go together");
            None
        }
    };
    match ca {
        Some(ca) => Some(EtcdTls { ca, identity }),
        None if identity.is_some() => {
            errs.push(
                "cluster.etcd_ca",
                "a client certificate for etcd needs etcd_ca",
            );
            None
        }
        None => None,
    }
}

pub(crate) fn validate_cluster(
    c: Option<&FileCluster>,
    base: &Path,
    errs: &mut Errors,
) -> Option<ClusterConfig> {
    let c = c?;
    // A name (`cache-1:8000`, as Casserole's `--peering-address` often has) is resolved once
    // here: members know each other by address.
    let peering_address = match crate::validate::parse_addr(&c.peering_address) {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => Some(a),
        Ok(_) => {
            errs.push(
                "cluster.peering_address",
                "must be a concrete IP:port (other members connect to it; it is this node's identity)",
            );
            None
        }
        Err(e) => {
            errs.push("cluster.peering_address", e);
            None
        }
    };
    if c.secret.len() < MIN_CLUSTER_SECRET_LEN {
        errs.push(
            "cluster.secret",
            format!("must be at least {MIN_CLUSTER_SECRET_LEN} characters"),
        );
    }
    if c.secret.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        errs.push("cluster.secret", "must be printable ASCII without spaces");
    }
    let members = match (&c.peers, &c.etcd) {
        (Some(_), Some(_)) => {
            errs.push("cluster.etcd", "use either `peers` or `etcd`, not both");
            None
        }
        (None, None) => {
            errs.push("cluster.peers", "a cluster needs `peers` or `etcd`");
            None
        }
        (Some(peers), None) => {
            let mut list = Vec::new();
            for (i, p) in peers.iter().enumerate() {
                match p.trim().parse::<std::net::SocketAddr>() {
                    Ok(a) => list.push(a),
                    Err(_) => errs.push(
                        format!("cluster.peers[{i}]"),
                        format!("{p:?} is not an IP:port address"),
                    ),
                }
            }
            if let Some(me) = peering_address
                && !list.contains(&me)
            {
                list.push(me);
            }
            list.sort();
            list.dedup();
            Some(MemberSource::Static(list))
        }
        (None, Some(endpoints)) => {
            if endpoints.is_empty() {
                errs.push("cluster.etcd", "needs at least one endpoint");
            }
            for (i, e) in endpoints.iter().enumerate() {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    errs.push(
                        format!("cluster.etcd[{i}]"),
                        format!("{e:?} is not an http:// or https:// URL"),
                    );
                }
            }
            let prefix = c
                .etcd_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_ETCD_PREFIX.to_string());
            if prefix.is_empty() {
                errs.push("cluster.etcd_prefix", "must not be empty");
            }
            let lease_ttl = errs.period("cluster.lease_ttl", &c.lease_ttl, DEFAULT_LEASE_TTL);
            if lease_ttl.as_secs() < 2 {
                errs.push("cluster.lease_ttl", "must be at least 2s");
            }
            let tls = etcd_tls(c, base, errs);
            if tls.is_some() && endpoints.iter().any(|e| e.starts_with("http://")) {
                errs.push("cluster.etcd", "with etcd_ca, endpoints must be https://");
            }
            let password = c
                .etcd_password
                .clone()
                .or_else(|| std::env::var("KURA_ETCD_PASSWORD").ok());
            let auth = match (&c.etcd_user, password) {
                (Some(u), Some(p)) => Some((u.clone(), p)),
                (None, None) => None,
                (Some(_), None) => {
                    errs.push(
                        "cluster.etcd_password",
                        "etcd_user needs a password (or KURA_ETCD_PASSWORD)",
                    );
                    None
                }
                (None, Some(_)) => {
                    errs.push("cluster.etcd_user", "an etcd password needs etcd_user");
                    None
                }
            };
            Some(MemberSource::Etcd {
                endpoints: endpoints.clone(),
                prefix,
                lease_ttl,
                tls,
                auth,
            })
        }
    };
    let peer_timeout = errs.duration(
        "cluster.peer_timeout",
        &c.peer_timeout,
        DEFAULT_PEER_TIMEOUT,
    );
    let peer_down_ttl = errs.duration(
        "cluster.peer_down_ttl",
        &c.peer_down_ttl,
        DEFAULT_PEER_DOWN_TTL,
    );
    if c.peers.is_some() {
        for (field, set) in [
            ("cluster.etcd_prefix", c.etcd_prefix.is_some()),
            ("cluster.lease_ttl", c.lease_ttl.is_some()),
            ("cluster.etcd_ca", c.etcd_ca.is_some()),
            ("cluster.etcd_cert", c.etcd_cert.is_some()),
            ("cluster.etcd_key", c.etcd_key.is_some()),
            ("cluster.etcd_user", c.etcd_user.is_some()),
            ("cluster.etcd_password", c.etcd_password.is_some()),
        ] {
            if set {
                errs.push(field, "has no effect without `etcd`");
            }
        }
    }
    let tls = peer_tls(c, base, errs);
    Some(ClusterConfig {
        tls,
        peering_address: peering_address?,
        members: members?,
        secret: c.secret.clone(),
        peer_timeout,
        peer_down_ttl,
        max_connections: match c.max_connections {
            Some(0) => {
                errs.push("cluster.max_connections", "must be at least 1");
                DEFAULT_PEER_MAX_CONNECTIONS
            }
            n => n.unwrap_or(DEFAULT_PEER_MAX_CONNECTIONS),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::defaults::*;
    use crate::{Config, ConfigError, MemberSource};

    fn load(cluster: &str) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
[[listeners]]
address = "127.0.0.1:8080"
[pools.o]
backends = ["http://127.0.0.1:3000"]
[[vhosts]]
hosts = ["*"]
pool = "o"
action = "cache"
[cluster]
{cluster}
"#
        );
        Config::from_toml(&text, Path::new("."))
    }

    fn fields(e: &ConfigError) -> Vec<&str> {
        e.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn static_and_etcd_members() {
        let c = load(
            "peering_address = \"10.0.0.1:7000\"\npeers = [\"10.0.0.2:7000\"]\nsecret = \"0123456789abcdef\"",
        )
        .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(
            cl.members,
            MemberSource::Static(vec![
                "10.0.0.1:7000".parse().unwrap(),
                "10.0.0.2:7000".parse().unwrap()
            ]),
            "this node joins the static list"
        );
        assert_eq!(cl.peer_timeout, DEFAULT_PEER_TIMEOUT);
        let c = load(
            "peering_address = \"10.0.0.1:7000\"\netcd = [\"http://10.0.0.9:2379\"]\nsecret = \"0123456789abcdef\"\nlease_ttl = \"5s\"",
        )
        .unwrap();
        assert_eq!(
            c.cluster.unwrap().members,
            MemberSource::Etcd {
                endpoints: vec!["http://10.0.0.9:2379".into()],
                prefix: DEFAULT_ETCD_PREFIX.into(),
                lease_ttl: Duration::from_secs(5),
                tls: None,
                auth: None,
            }
        );
        assert!(load("").is_err(), "peering_address and secret are required");
    }

    #[test]
    fn tls_settings_go_together_and_name_their_field() {
        let base = "peering_address = \"10.0.0.1:7000\"\npeers = [\"10.0.0.2:7000\"]\nsecret = \"0123456789abcdef\"";
        let err = load(&format!("{base}\ntls_cert = \"a.pem\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.tls_cert"), "{err}");
        let err = load(&format!(
            "{base}\ntls_cert = \"a.pem\"\ntls_key = \"a.key\"\ntls_ca = \"ca.pem\""
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot read"), "{err}");
        let err = load(&format!("{base}\ntls_client_auth = false"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.tls_client_auth"), "{err}");
        let etcd = "peering_address = \"10.0.0.1:7000\"\netcd = [\"http://10.0.0.9:2379\"]\nsecret = \"0123456789abcdef\"";
        let err = load(&format!("{etcd}\netcd_user = \"root\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.etcd_password"), "{err}");
    }

    #[test]
    fn mistakes_are_named() {
        let e = load(
            "peering_address = \"0.0.0.0:7000\"\nsecret = \"short\"\npeers = [\"nowhere\"]\netcd = [\"10.0.0.9:2379\"]",
        )
        .unwrap_err();
        assert_eq!(
            fields(&e),
            ["cluster.peering_address", "cluster.secret", "cluster.etcd"]
        );
        let e = load(
            "peering_address = \"10.0.0.1:7000\"\nsecret = \"0123456789abcdef\"\netcd = [\"10.0.0.9:2379\"]\nlease_ttl = \"1s\"\npeer_timeout = \"soon\"",
        )
        .unwrap_err();
        assert_eq!(
            fields(&e),
            [
                "cluster.etcd[0]",
                "cluster.lease_ttl",
                "cluster.peer_timeout"
            ]
        );
        let e =
            load("peering_address = \"10.0.0.1:7000\"\nsecret = \"0123456789abcdef\"").unwrap_err();
        assert_eq!(fields(&e), ["cluster.peers"]);
        let e = load(
            "peering_address = \"10.0.0.1:7000\"\nsecret = \"0123456789abcdef\"\npeers = [\"x\"]",
        )
        .unwrap_err();
        assert_eq!(fields(&e), ["cluster.peers[0]"]);
    }

    #[test]
    fn documented_defaults_match_the_code() {
        let doc = include_str!("../../../docs/configuration.md");
        let row = |f: &str| -> String {
            doc.lines()
                .find_map(|line| {
                    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                    (cells.len() >= 5 && cells[1].trim_matches('`') == f)
                        .then(|| cells[3].trim_matches('`').to_string())
                })
                .unwrap_or_else(|| panic!("{f} is not documented"))
        };
        let dur = |f: &str| crate::parse_duration(&row(f)).unwrap();
        assert_eq!(row("cluster.etcd_prefix"), DEFAULT_ETCD_PREFIX);
        assert_eq!(dur("cluster.lease_ttl"), DEFAULT_LEASE_TTL);
        assert_eq!(dur("cluster.peer_timeout"), DEFAULT_PEER_TIMEOUT);
        assert_eq!(dur("cluster.peer_down_ttl"), DEFAULT_PEER_DOWN_TTL);
        for f in [
            "cluster.peering_address",
            "cluster.peers",
            "cluster.etcd",
            "cluster.secret",
        ] {
            row(f);
        }
    }
}
