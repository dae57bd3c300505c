//! `kura import hipache config.json [--flavor X] [--output FILE]`: writes a kura TOML
//! configuration from a Hipache configuration file, so moving from Hipache is a command rather
//! than a reading of both manuals. kura already serves Hipache's Redis schema (`[redis]`), so
//! the routes stay where they are; this carries the server settings around them.
//!
//! Hipache's documentation (its README, "Configuring the server") is the source of truth for
//! field names and meaning: `server.accessLog`, `server.port`, `server.workers`,
//! `server.maxSockets`, `server.deadBackendTTL`, `server.https` (`port`, `key`, `cert`) and
//! `redis` (`host`, `port`). `--flavor X` reads `config_X.json` beside the given file, as
//! Hipache's `SETTINGS_FLAVOR=X` picks `config_X.json` over `config.json`. Settings of later
//! Hipache releases (`server.address`, `server.tcpTimeout`, `server.retryOnError`,
//! `server.deadBackendOn500`, `server.httpKeepAlive`, `redis.db`, `redis.password`, a top-level
//! `https`) are carried too where kura has the same thing.
//!
//! Nothing is dropped silently: every field that is not carried is named on stderr and in a
//! `#` comment at the top of the output, with the reason. The output is built from
//! kura-config's file structs and goes through kura's own parser and validation before it is
//! written; an invalid result is refused. The one exception is certificate files that cannot
//! be read here (the import often runs away from the Hipache host): they are a warning, since
//! `kura check` on the host where the files live will check them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use kura_config::{
    Config, FileAccessLog, FileCertificate, FileConfig, FileListener, FilePool, FileRedis, FileTls,
};
use serde_json::{Map, Value};

use crate::cli::{ImportArgs, ImportSource};

/// The pool whose settings Redis frontends use (`redis.pool_template`).
const TEMPLATE_POOL: &str = "hipache";
/// Its backend list is ignored by kura but a pool needs one: the discard port.
const TEMPLATE_BACKEND: &str = "http://127.0.0.1:9";
/// The 5xx statuses HTTP defines: what Hipache's `deadBackendOn500` counts as a dead backend.
const SERVER_ERRORS: [u16; 11] = [500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511];

pub fn run(args: ImportArgs) -> ExitCode {
    match args.source {
        ImportSource::Hipache {
            config,
            flavor,
            output,
        } => match hipache(&config, flavor.as_deref(), output.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kura import hipache: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

/// The file Hipache reads for `path` under `SETTINGS_FLAVOR=flavor`: `config_X.json` in the
/// same directory.
pub fn flavor_path(path: &Path, flavor: Option<&str>) -> PathBuf {
    match flavor {
        None => path.to_path_buf(),
        Some(f) => path
            .parent()
            .unwrap_or(Path::new(""))
            .join(format!("config_{f}.json")),
    }
}

fn hipache(path: &Path, flavor: Option<&str>, output: Option<&Path>) -> anyhow::Result<()> {
    let source = flavor_path(path, flavor);
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", source.display()))?;
    let imported = convert(&json).with_context(|| source.display().to_string())?;
    let toml = imported.render(&source)?;

    // Validate exactly as `kura check` would read the written file.
    let base = output
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Err(e) = Config::from_toml(&toml, base) {
        let (certs, other): (Vec<_>, Vec<_>) = e
            .errors
            .iter()
            .partition(|f| f.field.contains(".tls.certificates["));
        if !other.is_empty() {
            let list: Vec<String> = other
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            bail!(
                "the generated configuration is not valid, nothing written:\n  {}\n---\n{toml}",
                list.join("\n  ")
            );
        }
        for f in certs {
            eprintln!(
                "warning: {}: {} (run `kura check` where the certificate files are)",
                f.field, f.message
            );
        }
    }
    for (field, reason) in &imported.not_carried {
        eprintln!("not carried: {field}: {reason}");
    }
    match output {
        Some(out) => {
            std::fs::write(out, &toml).with_context(|| format!("cannot write {}", out.display()))?
        }
        None => print!("{toml}"),
    }
    Ok(())
}

/// The result of a conversion: kura's file structs and the fields left behind.
#[derive(Debug, Default)]
pub struct Imported {
    pub file: FileConfig,
    /// `(Hipache field, why kura does not carry it)`, in the order met.
    pub not_carried: Vec<(String, String)>,
}

impl Imported {
    fn skip(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.not_carried.push((field.into(), reason.into()));
    }

    fn template(&mut self) -> &mut FilePool {
        self.file
            .pools
            .entry(TEMPLATE_POOL.to_string())
            .or_insert_with(|| FilePool {
                backends: vec![TEMPLATE_BACKEND.to_string()],
                ..Default::default()
            })
    }

    /// The TOML text: a header naming the source and every field not carried, then the
    /// configuration.
    pub fn render(&self, source: &Path) -> anyhow::Result<String> {
        let mut table = toml::Table::try_from(&self.file).context("the file structs serialise")?;
        table.retain(|_, v| match v {
            toml::Value::Table(t) => !t.is_empty(),
            toml::Value::Array(a) => !a.is_empty(),
            _ => true,
        });
        let mut out = format!(
            "# Generated by `kura import hipache` from {}.\n",
            source.display()
        );
        if self.file.pools.contains_key(TEMPLATE_POOL) {
            out.push_str(&format!(
                "# [pools.{TEMPLATE_POOL}] holds the settings of every Redis frontend \
                 (redis.pool_template); its backend list is ignored.\n"
            ));
        }
        if !self.not_carried.is_empty() {
            out.push_str("# Not carried from the Hipache configuration:\n");
            for (field, reason) in &self.not_carried {
                out.push_str(&format!("#   {field}: {reason}\n"));
            }
        }
        out.push('\n');
        out.push_str(&toml::to_string(&table).context("a TOML table serialises")?);
        Ok(out)
    }
}

fn object<'a>(v: &'a Value, field: &str) -> anyhow::Result<&'a Map<String, Value>> {
    v.as_object()
        .with_context(|| format!("{field}: expected an object, found {v}"))
}

fn uint(v: &Value, field: &str) -> anyhow::Result<u64> {
    v.as_u64()
        .with_context(|| format!("{field}: expected a whole number, found {v}"))
}

fn port(v: &Value, field: &str) -> anyhow::Result<u16> {
    u16::try_from(uint(v, field)?).with_context(|| format!("{field}: {v} is not a port"))
}

fn string(v: &Value, field: &str) -> anyhow::Result<String> {
    v.as_str()
        .map(str::to_string)
        .with_context(|| format!("{field}: expected a string, found {v}"))
}

fn boolean(v: &Value, field: &str) -> anyhow::Result<bool> {
    v.as_bool()
        .with_context(|| format!("{field}: expected true or false, found {v}"))
}

/// `host:port`, bracketing IPv6 literals.
fn socket(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Bind addresses: Node listens on every address unless told one (or several).
fn addresses(v: Option<&Value>, field: &str) -> anyhow::Result<Vec<String>> {
    match v {
        None => Ok(vec!["0.0.0.0".to_string()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, a)| string(a, &format!("{field}[{i}]")))
            .collect(),
        Some(a) => Ok(vec![string(a, field)?]),
    }
}

/// Converts a Hipache configuration (the parsed `config.json`) into kura's file structs.
pub fn convert(json: &Value) -> anyhow::Result<Imported> {
    let mut out = Imported::default();
    let root = object(json, "(top level)")?;
    let empty = Map::new();
    let server = match root.get("server") {
        Some(s) => object(s, "server")?,
        None => &empty,
    };

    let port = match server.get("port") {
        Some(p) => crate::import::port(p, "server.port")?,
        None => 80,
    };
    for host in addresses(server.get("address"), "server.address")? {
        out.file.listeners.push(FileListener {
            address: socket(&host, port),
            ..Default::default()
        });
    }

    let workers = match server.get("workers") {
        Some(w) => Some(uint(w, "server.workers")?),
        None => None,
    };
    // An https section under `server` (the documented place) or at the top (later releases).
    let mut https = Vec::new();
    for (key, value) in server {
        let field = format!("server.{key}");
        match key.as_str() {
            "port" | "address" => {}
            "accessLog" => {
                out.file.access_log = Some(FileAccessLog {
                    path: string(value, &field)?,
                    // Hipache writes nginx's format; kura's combined is nginx combined plus
                    // vhost, upstream and timings.
                    format: Some("combined".to_string()),
                    buffer_lines: None,
                });
            }
            "workers" => {
                out.file.server.workers = workers.map(|w| w as usize);
            }
            "maxSockets" => {
                // Hipache's limit is per worker process; kura is one process, so the same
                // total is the limit times the workers.
                let per_worker = uint(value, &field)?;
                let total = per_worker.saturating_mul(workers.unwrap_or(1).max(1));
                out.template().max_connections_per_backend = Some(total as usize);
            }
            "deadBackendTTL" => {
                let ttl = format!("{}s", uint(value, &field)?);
                out.template().dead_backend_ttl = Some(ttl.clone());
                redis_section(&mut out.file).dead_backend_ttl = Some(ttl);
            }
            "tcpTimeout" => {
                let t = format!("{}s", uint(value, &field)?);
                let pool = out.template();
                pool.connect_timeout = Some(t.clone());
                pool.response_timeout = Some(t);
            }
            "retryOnError" => {
                let retries = u32::try_from(uint(value, &field)?)
                    .with_context(|| format!("{field}: {value} is too large"))?;
                out.template().retries = Some(retries);
            }
            "deadBackendOn500" => {
                if boolean(value, &field)? {
                    out.template().dead_on_status = Some(SERVER_ERRORS.to_vec());
                }
            }
            "httpKeepAlive" => {
                if !boolean(value, &field)? {
                    out.template().max_idle_per_backend = Some(0);
                }
            }
            "https" => https.push((field, value)),
            "debug" => out.skip(
                field,
                "kura's diagnostics are set by [logging] level (or RUST_LOG)",
            ),
            "staticDir" => out.skip(
                field,
                "kura's error pages are <status>.html files in [error_pages] dir; Hipache's \
                 page names differ, copy them over and set it by hand",
            ),
            _ => out.skip(
                field,
                "not a setting Hipache documents; kura has no equivalent",
            ),
        }
    }
    if let Some(h) = root.get("https") {
        https.push(("https".to_string(), h));
    }
    for (field, value) in https {
        https_listener(&mut out, &field, value)?;
    }

    for (key, value) in root {
        match key.as_str() {
            "server" | "https" | "driver" => {}
            "redis" => redis(&mut out, value)?,
            _ => out.skip(
                key.clone(),
                "not a setting Hipache documents; kura has no equivalent",
            ),
        }
    }
    if out.file.redis.is_none() {
        // Hipache always reads its routes from Redis: its default is the local server.
        redis_section(&mut out.file);
    }
    let url = match (root.get("redis"), root.get("driver")) {
        // Hipache 0.3: `driver`, one URL or a list (the first is where routes are read).
        (None, Some(d)) => driver_url(&mut out, d)?,
        (r, d) => {
            if d.is_some() {
                out.skip("driver", "the redis section is used (kura reads one Redis)");
            }
            redis_url(r)?
        }
    };
    let template = out.file.pools.contains_key(TEMPLATE_POOL);
    let r = redis_section(&mut out.file);
    r.url = url;
    if template {
        r.pool_template = Some(TEMPLATE_POOL.to_string());
    }
    Ok(out)
}

fn redis_section(file: &mut FileConfig) -> &mut FileRedis {
    file.redis.get_or_insert_with(FileRedis::default)
}

fn https_listener(out: &mut Imported, field: &str, value: &Value) -> anyhow::Result<()> {
    let h = object(value, field)?;
    let port = match h.get("port") {
        Some(p) => port(p, &format!("{field}.port"))?,
        None => 443,
    };
    let cert = h
        .get("cert")
        .map(|c| string(c, &format!("{field}.cert")))
        .transpose()?
        .with_context(|| format!("{field}: no cert"))?;
    let key = h
        .get("key")
        .map(|k| string(k, &format!("{field}.key")))
        .transpose()?
        .with_context(|| format!("{field}: no key"))?;
    let bind = h.get("address").or_else(|| h.get("bind"));
    for host in addresses(bind, &format!("{field}.address"))? {
        out.file.listeners.push(FileListener {
            address: socket(&host, port),
            tls: Some(FileTls {
                certificates: vec![FileCertificate {
                    cert: cert.clone(),
                    key: key.clone(),
                    ..Default::default()
                }],
                reload_interval: None,
            }),
            ..Default::default()
        });
    }
    for k in h.keys() {
        let f = format!("{field}.{k}");
        match k.as_str() {
            "port" | "cert" | "key" | "address" | "bind" => {}
            "ca" => out.skip(
                f,
                "kura sends the chain from the cert file: append the CA's intermediates to it",
            ),
            "passphrase" => out.skip(f, "kura reads unencrypted keys only: decrypt the key"),
            "ciphers" | "secureProtocol" | "honorCipherOrder" | "secureOptions" => out.skip(
                f,
                "kura (rustls) offers TLS 1.2 and 1.3 with its safe cipher suites only",
            ),
            _ => out.skip(f, "not a setting Hipache documents; kura has no equivalent"),
        }
    }
    Ok(())
}

/// Checks the `redis` section's fields and names the ones not carried (the URL is built by
/// [`redis_url`]).
fn redis(out: &mut Imported, value: &Value) -> anyhow::Result<()> {
    for k in object(value, "redis")?.keys() {
        let f = format!("redis.{k}");
        match k.as_str() {
            "host" | "port" | "db" | "password" => {}
            "master" => out.skip(
                f,
                "kura reads and writes (dead marks) one Redis: redis.url is the read host; \
                 point it at the master if writes must go there",
            ),
            _ => out.skip(f, "not a setting Hipache documents; kura has no equivalent"),
        }
    }
    Ok(())
}

/// `redis://[:password@]host:port/db` from Hipache's `redis` section (default the local
/// server, port 6379, database 0).
fn redis_url(v: Option<&Value>) -> anyhow::Result<String> {
    let empty = Map::new();
    let r = match v {
        Some(v) => object(v, "redis")?,
        None => &empty,
    };
    let host = match r.get("host") {
        Some(h) => string(h, "redis.host")?,
        None => "127.0.0.1".to_string(),
    };
    let port = match r.get("port") {
        Some(p) => port(p, "redis.port")?,
        None => 6379,
    };
    let db = match r.get("db") {
        Some(d) => uint(d, "redis.db")?,
        None => 0,
    };
    let auth = match r.get("password") {
        Some(Value::Null) | None => String::new(),
        Some(p) => format!(":{}@", userinfo_escape(&string(p, "redis.password")?)),
    };
    Ok(format!("redis://{auth}{}/{db}", socket(&host, port)))
}

/// The Redis URL of Hipache 0.3's `driver` (`redis://[:password@]host:port[/db][#prefix]`,
/// or a list of them): the first is used; a key prefix and further URLs are named as not
/// carried.
fn driver_url(out: &mut Imported, v: &Value) -> anyhow::Result<String> {
    let urls: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, u)| string(u, &format!("driver[{i}]")))
            .collect::<anyhow::Result<_>>()?,
        _ => anyhow::bail!("driver: expected a URL or a list of URLs"),
    };
    let Some(first) = urls.first() else {
        anyhow::bail!("driver: the list is empty");
    };
    if !first.starts_with("redis://") {
        anyhow::bail!("driver: {first:?} is not a redis:// URL (kura reads routes from Redis)");
    }
    let (url, prefix) = match first.split_once('#') {
        Some((u, p)) => (u.to_string(), Some(p)),
        None => (first.clone(), None),
    };
    if let Some(p) = prefix.filter(|p| !p.is_empty()) {
        out.skip(
            "driver#prefix".to_string(),
            format!("kura reads Hipache's keys without a prefix ({p:?} dropped)"),
        );
    }
    if urls.len() > 1 {
        out.skip(
            "driver[1..]".to_string(),
            "kura reads and writes one Redis; point the URL at the master",
        );
    }
    Ok(url)
}

/// Percent-encodes what may not stand in a URL's userinfo.
fn userinfo_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_urls_of_hipache_0_3_are_read() {
        let v: Value = serde_json::from_str(
            r#"{"server": {"port": 8080}, "driver": ["redis://:pw@10.0.0.1:6380/3#app", "redis://10.0.0.2:6380"]}"#,
        )
        .unwrap();
        let out = convert(&v).unwrap();
        assert_eq!(
            out.file.redis.as_ref().unwrap().url,
            "redis://:pw@10.0.0.1:6380/3"
        );
        let named: Vec<&str> = out.not_carried.iter().map(|(f, _)| f.as_str()).collect();
        assert!(named.contains(&"driver#prefix"), "{named:?}");
        assert!(named.contains(&"driver[1..]"), "{named:?}");
    }

    #[test]
    fn redis_url_carries_db_and_escaped_password() {
        let v = serde_json::json!({"host": "10.0.0.1", "port": 6380, "db": 2, "password": "p@ss"});
        assert_eq!(
            redis_url(Some(&v)).unwrap(),
            "redis://:p%40ss@10.0.0.1:6380/2"
        );
        assert_eq!(redis_url(None).unwrap(), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn flavor_picks_config_x_beside_the_file() {
        assert_eq!(
            flavor_path(Path::new("/etc/hipache/config.json"), Some("test")),
            Path::new("/etc/hipache/config_test.json")
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let v = serde_json::json!({"server": {"port": 80, "frobnicate": 1}, "extra": true});
        let imported = convert(&v).unwrap();
        let names: Vec<&str> = imported
            .not_carried
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(names, ["server.frobnicate", "extra"]);
    }
}
