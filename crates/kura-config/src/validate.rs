//! `FileConfig → Config`: fills defaults, parses units, compiles regexes and templates, checks
//! references between sections, and loads error pages. Collects every error with the dotted
//! path of its field rather than stopping at the first, so one `kura check` shows them all.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use regex::Regex;

use crate::cache_config::{validate_cache, validate_rule_cache};
use crate::cluster_config::validate_cluster;
use crate::defaults::*;
use crate::edge_config::{validate_listeners, validate_redis};
use crate::file::*;
use crate::pool_config::validate_pool;
use crate::shadow_config::{validate_rule_shadow, validate_shadow};
use crate::units::{parse_duration, size_value};
use crate::*;

pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl std::fmt::Display) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.to_string(),
        });
    }

    pub(crate) fn duration(
        &mut self,
        field: &str,
        v: &Option<String>,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(text) => parse_duration(text).unwrap_or_else(|e| {
                self.push(field, e);
                default
            }),
        }
    }

    /// A duration that must be more than zero (a timer period: zero would spin or panic).
    pub(crate) fn period(
        &mut self,
        field: &str,
        v: &Option<String>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(field, v, default);
        if d.is_zero() {
            self.push(field, "must be more than 0");
            return default;
        }
        d
    }
}

fn validate_admin(a: &FileAdmin, errs: &mut Errors) -> Option<AdminConfig> {
    let address = parse_addr(&a.address)
        .map_err(|e| errs.push("admin.address", e))
        .ok()?;
    let token = a
        .token
        .clone()
        .or_else(|| std::env::var("KURA_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty());
    if let Some(t) = &token
        && (t.len() < MIN_ADMIN_TOKEN || HeaderValue::from_str(t).is_err())
    {
        errs.push(
            "admin.token",
            format!("must be at least {MIN_ADMIN_TOKEN} printable characters"),
        );
    }
    let protect_reads = a.protect_reads.unwrap_or(false);
    if protect_reads && token.is_none() {
        errs.push(
            "admin.protect_reads",
            "needs admin.token (or KURA_ADMIN_TOKEN)",
        );
    }
    let mut hosts = Vec::new();
    for (i, h) in a.hosts.iter().flatten().enumerate() {
        match crate::target::Authority::parse(h) {
            Ok(auth) => hosts.push(auth.host),
            Err(_) => errs.push(
                format!("admin.hosts[{i}]"),
                format!("{h:?} is not a host name"),
            ),
        }
    }
    let max_connections = a.max_connections.unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS);
    if max_connections == 0 {
        errs.push("admin.max_connections", "must be at least 1");
    }
    Some(AdminConfig {
        address,
        token,
        protect_reads,
        hosts,
        max_connections: max_connections.max(1),
    })
}

/// Validates `file`; relative paths resolve against `base_dir`.
pub fn validate(file: &FileConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut errs = Errors(Vec::new());

    let listeners = validate_listeners(file, base_dir, &mut errs);
    let admin = file
        .admin
        .as_ref()
        .and_then(|a| validate_admin(a, &mut errs));
    let server = validate_server(&file.server, &mut errs);
    let limits = validate_limits(&file.limits, &mut errs);
    let logging = validate_logging(&file.logging, &mut errs);
    let access_log = file
        .access_log
        .as_ref()
        .map(|a| validate_access_log(a, base_dir, &mut errs));
    let error_pages = match &file.error_pages {
        None => ErrorPagesConfig::default(),
        Some(p) => load_error_pages(&base_dir.join(&p.dir), &mut errs),
    };
    let cache = validate_cache(file.cache.as_ref(), base_dir, &mut errs);
    let shadow = validate_shadow(file.shadow.as_ref(), base_dir, &mut errs);
    let cluster = validate_cluster(file.cluster.as_ref(), base_dir, &mut errs);
    let routes = validate_routes(
        &file.pools,
        &file.vhosts,
        cache.disk.is_some(),
        base_dir,
        &mut errs,
    );
    let redis = validate_redis(file.redis.as_ref(), &routes, base_dir, &mut errs);
    crate::no_effect::pools(file, &mut errs);

    // Every rule obeys the same targeted cache-control fields.
    let mut routes = routes;
    for rule in routes.vhosts.iter_mut().flat_map(|v| v.rules.iter_mut()) {
        if let Some(c) = rule.action.cache_mut() {
            c.targeted_cache_control = cache.targeted_cache_control.clone();
        }
    }
    if errs.0.is_empty() {
        Ok(Config {
            listeners,
            admin,
            server,
            limits,
            logging,
            access_log,
            error_pages,
            cache,
            shadow,
            cluster,
            redis,
            routes,
        })
    } else {
        Err(ConfigError { errors: errs.0 })
    }
}

/// A socket address as an operator writes it: `IP:port` (`[v6]:port`), `:port` for every
/// IPv4 address (`0.0.0.0:port`, as Go and Casserole read it), or `name:port` with a name
/// resolved now (`localhost:8080`; the first IPv4 address it has, else its first address).
/// A name that does not resolve is an error saying so.
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let not_an_address = || {
        format!(
            "{text:?} is not an address: write IP:port, name:port or :port (e.g. \"0.0.0.0:8080\", \"localhost:8080\")"
        )
    };
    let (host, port) = t.rsplit_once(':').ok_or_else(not_an_address)?;
    let port: u16 = port.parse().map_err(|_| not_an_address())?;
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    // A name, not a malformed IP (`127.0.0`, which the resolver would read as 127.0.0.0): a
    // top-level label is never all digits.
    let name_like = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !host.starts_with(['-', '.'])
        && !host.contains("..")
        && !host
            .trim_end_matches('.')
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    if !name_like {
        return Err(not_an_address());
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("{text:?}: the name {host:?} does not resolve ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{text:?}: the name {host:?} resolves to no address"))
}

fn validate_server(s: &FileServer, errs: &mut Errors) -> ServerConfig {
    if s.workers == Some(0) {
        errs.push("server.workers", "must be at least 1");
    }
    let via = s.via.clone().unwrap_or_else(|| DEFAULT_VIA.to_string());
    if via.is_empty() || HeaderValue::from_str(&via).is_err() || via.contains(',') {
        errs.push(
            "server.via",
            "must be a non-empty token usable in a Via header",
        );
    }
    ServerConfig {
        workers: s.workers,
        work_stealing: s.work_stealing.unwrap_or(DEFAULT_WORK_STEALING),
        shutdown_grace: errs.duration(
            "server.shutdown_grace",
            &s.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        ),
        via,
        trusted_proxies: parse_nets("server.trusted_proxies", &s.trusted_proxies, errs),
    }
}

/// A list of IP addresses and CIDR blocks; each bad entry is an error naming it.
pub(crate) fn parse_nets(
    field: &str,
    list: &Option<Vec<String>>,
    errs: &mut Errors,
) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, a) in list.iter().flatten().enumerate() {
        let parsed = a
            .trim()
            .parse::<ipnet::IpNet>()
            .or_else(|_| a.trim().parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => out.push(net),
            Err(_) => errs.push(
                format!("{field}[{i}]"),
                format!("{a:?} is not an IP address or CIDR block"),
            ),
        }
    }
    out
}

fn validate_limits(l: &FileLimits, errs: &mut Errors) -> Limits {
    let max_header_bytes = match &l.max_header_bytes {
        None => DEFAULT_MAX_HEADER_BYTES,
        Some(v) => match size_value(v) {
            Ok(n) if (n as usize) < MIN_MAX_HEADER_BYTES => {
                errs.push(
                    "limits.max_header_bytes",
                    format!("must be at least {MIN_MAX_HEADER_BYTES}"),
                );
                DEFAULT_MAX_HEADER_BYTES
            }
            Ok(n) => n as usize,
            Err(e) => {
                errs.push("limits.max_header_bytes", e);
                DEFAULT_MAX_HEADER_BYTES
            }
        },
    };
    let max_body_bytes = match &l.max_body_bytes {
        None => Some(DEFAULT_MAX_BODY_BYTES),
        Some(v) => match size_value(v) {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(e) => {
                errs.push("limits.max_body_bytes", e);
                None
            }
        },
    };
    let max_connections = l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        errs.push("limits.max_connections", "must be at least 1");
    }
    let max_headers = l.max_headers.unwrap_or(DEFAULT_MAX_HEADERS);
    if max_headers == 0 {
        errs.push("limits.max_headers", "must be at least 1");
    }
    Limits {
        max_connections,
        max_header_bytes,
        max_headers,
        max_body_bytes,
        client_header_timeout: errs.duration(
            "limits.client_header_timeout",
            &l.client_header_timeout,
            DEFAULT_CLIENT_HEADER_TIMEOUT,
        ),
        client_idle_timeout: errs.duration(
            "limits.client_idle_timeout",
            &l.client_idle_timeout,
            DEFAULT_CLIENT_IDLE_TIMEOUT,
        ),
        websocket_idle_timeout: errs.duration(
            "limits.websocket_idle_timeout",
            &l.websocket_idle_timeout,
            DEFAULT_WEBSOCKET_IDLE_TIMEOUT,
        ),
        send_timeout: errs.period("limits.send_timeout", &l.send_timeout, DEFAULT_SEND_TIMEOUT),
        max_upgraded: match l.max_upgraded {
            Some(0) => {
                errs.push("limits.max_upgraded", "must be at least 1");
                DEFAULT_MAX_UPGRADED
            }
            v => v.unwrap_or(DEFAULT_MAX_UPGRADED),
        },
        http2_max_concurrent_streams: match l.http2_max_concurrent_streams {
            Some(0) => {
                errs.push("limits.http2_max_concurrent_streams", "must be at least 1");
                DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS
            }
            v => v.unwrap_or(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS),
        },
        http2_stream_buffer: match &l.http2_stream_buffer {
            None => DEFAULT_HTTP2_STREAM_BUFFER,
            Some(v) => match size_value(v) {
                Ok(n) if n >= 16 * 1024 => n,
                Ok(_) => {
                    errs.push("limits.http2_stream_buffer", "must be at least 16KiB");
                    DEFAULT_HTTP2_STREAM_BUFFER
                }
                Err(e) => {
                    errs.push("limits.http2_stream_buffer", e);
                    DEFAULT_HTTP2_STREAM_BUFFER
                }
            },
        },
    }
}

fn validate_logging(l: &FileLogging, errs: &mut Errors) -> LoggingConfig {
    let level = l
        .level
        .clone()
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
        errs.push("logging.level", format!("{level:?}: {e}"));
    }
    let format = match l.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            errs.push(
                "logging.format",
                format!("{other:?} is not one of \"text\", \"json\""),
            );
            LogFormat::Text
        }
    };
    LoggingConfig { level, format }
}

fn validate_access_log(a: &FileAccessLog, base: &Path, errs: &mut Errors) -> AccessLogConfig {
    let target = match a.path.as_str() {
        "" => {
            errs.push("access_log.path", "must be a file path or \"-\"");
            AccessLogTarget::Stdout
        }
        "-" => AccessLogTarget::Stdout,
        p => AccessLogTarget::File(base.join(p)),
    };
    let format = match a.format.as_deref() {
        None | Some("combined") => AccessLogFormat::Combined,
        Some("json") => AccessLogFormat::Json,
        Some(other) => {
            errs.push(
                "access_log.format",
                format!("{other:?} is not one of \"combined\", \"json\""),
            );
            AccessLogFormat::Combined
        }
    };
    let buffer_lines = a.buffer_lines.unwrap_or(DEFAULT_ACCESS_LOG_BUFFER_LINES);
    if buffer_lines == 0 {
        errs.push("access_log.buffer_lines", "must be at least 1");
    }
    AccessLogConfig {
        target,
        format,
        buffer_lines: buffer_lines.max(1),
    }
}

fn load_error_pages(dir: &Path, errs: &mut Errors) -> ErrorPagesConfig {
    let mut out = ErrorPagesConfig {
        dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errs.push(
                "error_pages.dir",
                format!("cannot read {}: {e}", dir.display()),
            );
            return out;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".html"))
        else {
            continue;
        };
        let status = if stem == "default" {
            None
        } else {
            match stem.parse::<u16>() {
                Ok(s) if (400..=599).contains(&s) => Some(s),
                _ => continue,
            }
        };
        let field = format!("error_pages.dir ({})", path.display());
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_ERROR_PAGE_BYTES => {
                errs.push(field, format!("larger than {MAX_ERROR_PAGE_BYTES} bytes"));
                continue;
            }
            Err(e) => {
                errs.push(field, e.to_string());
                continue;
            }
            Ok(_) => {}
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => match status {
                Some(s) => {
                    out.pages.insert(s, text);
                }
                None => out.default = Some(text),
            },
            Err(e) => errs.push(field, e.to_string()),
        }
    }
    out
}

/// Parses a host pattern: `example.com`, `*.example.com` or `*`.
pub fn parse_host_pattern(text: &str) -> Result<HostPattern, String> {
    let t = text.trim().to_ascii_lowercase();
    if t == "*" {
        return Ok(HostPattern::Any);
    }
    let (wild, name) = match t.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, t.clone()),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if !valid {
        return Err(format!(
            "{text:?} is not a host name, `*.suffix` wildcard or `*` (no port, no scheme)"
        ));
    }
    Ok(if wild {
        HostPattern::Wildcard(name)
    } else {
        HostPattern::Exact(name)
    })
}

pub(crate) fn header_edits(field: &str, e: &FileHeaderEdits, errs: &mut Errors) -> HeaderEdits {
    let name = |n: &str, errs: &mut Errors, f: String| match HeaderName::from_bytes(n.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            errs.push(f, format!("{n:?} is not a header name"));
            None
        }
    };
    let mut out = HeaderEdits::default();
    for n in &e.remove {
        if let Some(h) = name(n, errs, format!("{field}.remove")) {
            out.remove.push(h);
        }
    }
    for (kind, map) in [("set", &e.set), ("add", &e.add)] {
        for (n, v) in map {
            let f = format!("{field}.{kind}.{n}");
            let Some(h) = name(n, errs, f.clone()) else {
                continue;
            };
            match HeaderValue::from_str(v) {
                Ok(v) => {
                    if kind == "set" {
                        out.set.push((h, v))
                    } else {
                        out.add.push((h, v))
                    }
                }
                Err(_) => errs.push(f, format!("{v:?} is not a valid header value")),
            }
        }
    }
    out
}

fn validate_rule(
    field: &str,
    r: &FileRule,
    pools: &BTreeMap<String, FilePool>,
    has_disk: bool,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<RuleSpec> {
    let source = r.path.as_deref().unwrap_or("");
    let path = match Regex::new(source) {
        Ok(re) => Some(re),
        Err(e) => {
            errs.push(format!("{field}.path"), format!("bad regex: {e}"));
            None
        }
    };
    let action = match r.action.as_deref() {
        None | Some("proxy") => Action::Proxy,
        Some("cache") => Action::Cache,
        Some("resize") => Action::Resize,
        Some(other) => {
            errs.push(
                format!("{field}.action"),
                format!("{other:?} is not a known action (\"proxy\", \"cache\", \"resize\")"),
            );
            Action::Proxy
        }
    };
    crate::no_effect::rule(field, r, action, errs);
    if let (Some(rr), Action::Resize) = (&r.resize, action) {
        crate::no_effect::resize(&format!("{field}.resize"), rr, errs);
    }
    if let Some(s) = &r.shadow {
        crate::no_effect::shadow(&format!("{field}.shadow"), s, errs);
    }
    if r.cache.is_some() && action == Action::Proxy {
        errs.push(
            format!("{field}.cache"),
            "only applies to rules with action = \"cache\" or \"resize\"",
        );
    }
    if r.resize.is_some() != (action == Action::Resize) {
        errs.push(
            format!("{field}.resize"),
            "a rule with action = \"resize\" needs a [resize] table, and only it",
        );
    }
    let resize = match (&r.resize, action) {
        (Some(rr), Action::Resize) => crate::image_config::validate_rule_resize(
            &format!("{field}.resize"),
            rr,
            path.as_ref(),
            base_dir,
            errs,
        ),
        _ => None,
    };
    let cache = (action != Action::Proxy).then(|| {
        validate_rule_cache(
            &format!("{field}.cache"),
            r.cache.as_ref().unwrap_or(&FileRuleCache::default()),
            path.as_ref(),
            has_disk,
            errs,
        )
    });
    if !pools.contains_key(&r.pool) {
        errs.push(
            format!("{field}.pool"),
            format!("no pool named {:?} in [pools]", r.pool),
        );
    }
    let rewrite = match (&r.rewrite, &path) {
        (Some(t), Some(re)) => {
            if !t.starts_with('/') {
                errs.push(format!("{field}.rewrite"), "must start with `/`");
            }
            match Template::compile(t, re) {
                Ok(t) => Some(t),
                Err(e) => {
                    errs.push(format!("{field}.rewrite"), e.0);
                    None
                }
            }
        }
        _ => None,
    };
    let request_headers = header_edits(
        &format!("{field}.request_headers"),
        &r.request_headers,
        errs,
    );
    let response_headers = header_edits(
        &format!("{field}.response_headers"),
        &r.response_headers,
        errs,
    );
    if r.shadow.is_some() && action != Action::Proxy {
        errs.push(
            format!("{field}.shadow"),
            "applies to rules with action = \"proxy\" (a cached answer is not the primary's)",
        );
    }
    let shadow = r
        .shadow
        .as_ref()
        .map(|s| validate_rule_shadow(&format!("{field}.shadow"), s, source, pools, errs));
    let mut upgrades = Vec::new();
    match &r.upgrades {
        None => upgrades.extend(DEFAULT_UPGRADES.iter().map(|s| s.to_string())),
        Some(list) => {
            for (i, u) in list.iter().enumerate() {
                let token = u.trim().to_ascii_lowercase();
                let valid = !token.is_empty()
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b));
                if !valid {
                    errs.push(
                        format!("{field}.upgrades[{i}]"),
                        format!("{u:?} is not a protocol token such as \"websocket\""),
                    );
                } else if token == "h2c" {
                    errs.push(
                        format!("{field}.upgrades[{i}]"),
                        "h2c would hand the client a raw HTTP/2 session behind kura's routing and header rules; use `http2 = true` on the listener",
                    );
                } else {
                    upgrades.push(token);
                }
            }
        }
    }
    // Validation above refused every other combination: the enum holds only these.
    let action = match (action, cache, resize) {
        (Action::Cache, Some(cache), _) => RuleAction::Cache(cache),
        (Action::Resize, Some(cache), Some(resize)) => RuleAction::Resize {
            cache,
            resize: Box::new(resize),
        },
        (Action::Proxy, _, _) => RuleAction::Proxy { shadow },
        _ => return None,
    };
    Some(RuleSpec {
        upgrades,
        path: path?,
        action,
        pool: r.pool.clone(),
        rewrite,
        request_headers,
        response_headers,
    })
}

fn validate_routes(
    pools: &BTreeMap<String, FilePool>,
    vhosts: &[FileVHost],
    has_disk: bool,
    base_dir: &Path,
    errs: &mut Errors,
) -> Routes {
    let mut out = Routes::default();
    for (name, p) in pools {
        if name.is_empty() {
            errs.push("pools", "a pool name cannot be empty");
        }
        out.pools
            .insert(name.clone(), validate_pool(name, p, base_dir, errs));
    }
    let mut seen: HashMap<HostPattern, usize> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, v) in vhosts.iter().enumerate() {
        let field = format!("vhosts[{i}]");
        if v.hosts.is_empty() {
            errs.push(format!("{field}.hosts"), "a vhost needs at least one host");
        }
        let mut hosts = Vec::new();
        for (j, h) in v.hosts.iter().enumerate() {
            match parse_host_pattern(h) {
                Ok(p) => {
                    if let Some(prev) = seen.insert(p.clone(), i) {
                        errs.push(
                            format!("{field}.hosts[{j}]"),
                            format!("{h:?} is already served by vhosts[{prev}]"),
                        );
                    }
                    hosts.push(p);
                }
                Err(e) => errs.push(format!("{field}.hosts[{j}]"), e),
            }
        }
        let name = v
            .name
            .clone()
            .or_else(|| v.hosts.first().cloned())
            .unwrap_or_default();
        if let Some(prev) = names.insert(name.clone(), i) {
            errs.push(
                format!("{field}.name"),
                format!("{name:?} is already the name of vhosts[{prev}]"),
            );
        }
        let mut rules = Vec::new();
        for (j, r) in v.rules.iter().enumerate() {
            if let Some(rule) = validate_rule(
                &format!("{field}.rules[{j}]"),
                r,
                pools,
                has_disk,
                base_dir,
                errs,
            ) {
                rules.push(rule);
            }
        }
        if v.pool.is_none()
            && (v.action.is_some()
                || v.cache.is_some()
                || v.shadow.is_some()
                || v.upgrades.is_some())
        {
            errs.push(
                format!("{field}.action"),
                "applies to the vhost's `pool` fallback: set `pool`",
            );
        }
        if let Some(pool) = &v.pool {
            let fallback = FileRule {
                pool: pool.clone(),
                action: v.action.clone(),
                cache: v.cache.clone(),
                shadow: v.shadow.clone(),
                upgrades: v.upgrades.clone(),
                ..Default::default()
            };
            if let Some(rule) = validate_rule(&field, &fallback, pools, has_disk, base_dir, errs) {
                rules.push(rule);
            }
        }
        if v.rules.is_empty() && v.pool.is_none() {
            errs.push(format!("{field}.rules"), "a vhost needs rules or a pool");
        }
        out.vhosts.push(VHostSpec { name, hosts, rules });
    }
    out
}
