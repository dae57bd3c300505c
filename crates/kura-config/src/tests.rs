use std::path::Path;

use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("."))
}

fn fields(err: &ConfigError) -> Vec<&str> {
    err.errors.iter().map(|e| e.field.as_str()).collect()
}

const MINIMAL: &str = r#"
[[listeners]]
address = "127.0.0.1:8080"
[pools.app]
backends = ["http://127.0.0.1:3000"]
[[vhosts]]
hosts = ["*"]
pool = "app"
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.listeners[0].address.port(), 8080);
    assert_eq!(c.limits.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
    assert_eq!(c.limits.max_body_bytes, Some(DEFAULT_MAX_BODY_BYTES));
    assert_eq!(c.server.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    let pool = &c.routes.pools["app"];
    assert_eq!(pool.balance, Balance::RoundRobin);
    assert_eq!(pool.dead_backend_ttl, DEFAULT_DEAD_BACKEND_TTL);
    assert_eq!(pool.backends[0].authority, "127.0.0.1:3000");
    assert_eq!(c.routes.vhosts[0].name, "*");
    assert_eq!(c.routes.vhosts[0].rules.len(), 1);
    assert!(c.routes.vhosts[0].rules[0].path.is_match("/anything"));
    assert!(c.access_log.is_none());
}

#[test]
fn every_bad_field_is_named() {
    let err = load(
        r#"
[[listeners]]
address = "nowhere"
[limits]
max_header_bytes = 100
client_idle_timeout = "forever"
[pools.app]
backends = ["ftp://x", "http://ok:1"]
balance = "fastest"
dead_on_status = [404]
[[vhosts]]
hosts = ["a.com", "bad host"]
[[vhosts.rules]]
path = "(unclosed"
pool = "nope"
[[vhosts.rules]]
path = "^/(?P<x>.*)"
pool = "app"
rewrite = "/{y}"
[vhosts.rules.request_headers]
set = { "bad header" = "v" }
"#,
    )
    .unwrap_err();
    let f = fields(&err);
    for expected in [
        "listeners[0].address",
        "limits.max_header_bytes",
        "limits.client_idle_timeout",
        "pools.app.backends[0]",
        "pools.app.balance",
        "pools.app.dead_on_status[0]",
        "vhosts[0].hosts[1]",
        "vhosts[0].rules[0].path",
        "vhosts[0].rules[0].pool",
        "vhosts[0].rules[1].rewrite",
        "vhosts[0].rules[1].request_headers.set.bad header",
    ] {
        assert!(f.contains(&expected), "missing {expected} in {f:?}");
    }
    // The message says what is wrong, not just where.
    let text = err.to_string();
    assert!(text.contains("\"fastest\" is not one of"), "{text}");
    assert!(text.contains("no pool named \"nope\""), "{text}");
}

#[test]
fn unknown_keys_and_type_errors_name_the_line() {
    let err = load("[[listeners]]\naddress = \"127.0.0.1:1\"\n[limits]\nmax_conections = 5\n")
        .unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert!(err.errors[0].field.contains("line 4"), "{err}");
    assert!(err.errors[0].message.contains("max_conections"), "{err}");
    let err = load("[[listeners]]\naddress = 5\n").unwrap_err();
    assert!(err.errors[0].field.contains("line 2"), "{err}");
}

#[test]
fn duplicate_hosts_across_vhosts_are_refused() {
    let err = load(
        r#"
[[listeners]]
address = "127.0.0.1:8080"
[pools.app]
backends = ["http://127.0.0.1:3000"]
[[vhosts]]
hosts = ["A.com"]
pool = "app"
[[vhosts]]
hosts = ["a.com"]
pool = "app"
"#,
    )
    .unwrap_err();
    assert_eq!(fields(&err), vec!["vhosts[1].hosts[0]"]);
    assert!(err.to_string().contains("already served by vhosts[0]"));
}

#[test]
fn host_patterns() {
    assert_eq!(parse_host_pattern("*").unwrap(), HostPattern::Any);
    assert_eq!(
        parse_host_pattern("*.Example.com").unwrap(),
        HostPattern::Wildcard("example.com".into())
    );
    assert_eq!(
        parse_host_pattern("www.example.com").unwrap(),
        HostPattern::Exact("www.example.com".into())
    );
    for bad in [
        "",
        "a..b",
        "http://a.com",
        "a.com:80",
        "*.",
        "a*.com",
        ".a.com",
    ] {
        assert!(parse_host_pattern(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn backend_urls() {
    let b = parse_backend("http://10.0.0.1:8080/app/").unwrap();
    assert_eq!(b.authority, "10.0.0.1:8080");
    assert_eq!(b.base_path, "/app");
    let b = parse_backend("http://Origin.Local").unwrap();
    assert_eq!((b.host.as_str(), b.port), ("origin.local", 80));
    assert_eq!(b.base_path, "");
    let b = parse_backend("http://[::1]:9000").unwrap();
    assert_eq!(b.authority, "[::1]:9000");
    assert_eq!(b.host, "::1");
    assert!(parse_backend("http://a/?x=1").is_err());
}

/// Katana writes its nodes as bare `ip:port` (or a bare IP); those are `http://` backends.
/// Other schemes, and bare names, are still refused.
#[test]
fn bare_ip_port_backends_are_http() {
    let b = parse_backend("10.195.24.1:8079").unwrap();
    assert_eq!(b.url, "http://10.195.24.1:8079");
    assert_eq!(
        (b.authority.as_str(), b.port, b.tls),
        ("10.195.24.1:8079", 8079, false)
    );
    assert_eq!(b.base_path, "");
    let b = parse_backend("10.201.13.1").unwrap();
    assert_eq!((b.authority.as_str(), b.port), ("10.201.13.1:80", 80));
    let b = parse_backend("[::1]:9000").unwrap();
    assert_eq!(
        (b.authority.as_str(), b.host.as_str()),
        ("[::1]:9000", "::1")
    );
    for bad in [
        "localhost:9000",
        "filer-02.domain.com:8079",
        "ftp://10.0.0.1:21",
        "tcp://10.0.0.1:80",
        "10.0.0.1:99999",
        "10.0.0.1:80/app",
    ] {
        assert!(parse_backend(bad).is_err(), "{bad:?} accepted");
    }
    // In a pool and in a who-has cluster alike.
    let c = load(
        r#"
[[listeners]]
address = "127.0.0.1:8080"
[pools.app]
backends = ["10.195.24.1:8079", "http://10.195.24.2:8079"]
[pools.filers]
clusters = [{ nodes = ["10.195.25.1:8079", "10.195.25.2"] }]
[[vhosts]]
hosts = ["*"]
pool = "app"
"#,
    )
    .unwrap();
    let app = &c.routes.pools["app"].backends;
    assert_eq!(app[0].url, "http://10.195.24.1:8079");
    assert_eq!(app[1].authority, "10.195.24.2:8079");
    let nodes = &c.routes.pools["filers"].whohas[0].backends;
    assert_eq!(nodes[1].authority, "10.195.25.2:80");
    let err = load(&MINIMAL.replace("http://127.0.0.1:3000", "gopher://127.0.0.1:70")).unwrap_err();
    assert_eq!(fields(&err), vec!["pools.app.backends[0]"]);
}

/// Listener addresses: `name:port` is resolved at validation (`localhost` works), `:port` is
/// every IPv4 address, and a name that does not resolve is an error naming the field.
#[test]
fn listen_addresses_resolve_names() {
    let with = |addr: &str| load(&MINIMAL.replace("127.0.0.1:8080", addr));
    let c = with("localhost:8080").unwrap();
    assert!(
        c.listeners[0].address.ip().is_loopback(),
        "{:?}",
        c.listeners[0].address
    );
    assert_eq!(c.listeners[0].address.port(), 8080);
    // IPv4 first when the name has both (Go's and Casserole's choice for a listener).
    assert_eq!(c.listeners[0].address, "127.0.0.1:8080".parse().unwrap());
    let c = with(":8080").unwrap();
    assert_eq!(c.listeners[0].address, "0.0.0.0:8080".parse().unwrap());
    let c = with("[::1]:8080").unwrap();
    assert_eq!(c.listeners[0].address, "[::1]:8080".parse().unwrap());

    let err = with("no-such-host.invalid:8080").unwrap_err();
    assert_eq!(fields(&err), vec!["listeners[0].address"]);
    let msg = &err.errors[0].message;
    assert!(
        msg.contains("no-such-host.invalid") && msg.contains("does not resolve"),
        "{msg}"
    );
    for bad in [
        "localhost",
        "localhost:http",
        "local host:80",
        "8080",
        "http://localhost:80",
        "127.0.0:80",
        "2130706433:80",
        "localhost:65536",
    ] {
        let err = with(bad).unwrap_err();
        assert_eq!(fields(&err), vec!["listeners[0].address"], "{bad:?}");
    }
    // The admin listener and the cluster's peering address read addresses the same way.
    let c = load(&format!(
        "{MINIMAL}\n[admin]\naddress = \"localhost:9901\"\n[cluster]\npeering_address = \"localhost:7000\"\npeers = []\nsecret = \"0123456789abcdef\"\n"
    ))
    .unwrap();
    assert_eq!(c.admin.unwrap().address, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(
        c.cluster.unwrap().peering_address,
        "127.0.0.1:7000".parse().unwrap()
    );
    let err = load(&format!(
        "{MINIMAL}\n[admin]\naddress = \"nowhere.invalid:9901\"\n"
    ))
    .unwrap_err();
    assert_eq!(fields(&err), vec!["admin.address"]);
}

#[test]
fn error_pages_are_loaded_from_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("502.html"), "<h1>down</h1>").unwrap();
    std::fs::write(dir.path().join("default.html"), "<h1>oops</h1>").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let text = format!(
        "{MINIMAL}\n[error_pages]\ndir = {:?}\n",
        dir.path().to_str().unwrap()
    );
    let c = load(&text).unwrap();
    assert_eq!(c.error_pages.pages[&502], "<h1>down</h1>");
    assert_eq!(c.error_pages.default.as_deref(), Some("<h1>oops</h1>"));
    assert_eq!(c.error_pages.pages.len(), 1);

    let err = load(&format!(
        "{MINIMAL}\n[error_pages]\ndir = \"/no/such/dir\"\n"
    ))
    .unwrap_err();
    assert_eq!(fields(&err), vec!["error_pages.dir"]);
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("errors")).unwrap();
    std::fs::write(dir.path().join("errors/400.html"), "nope").unwrap();
    let path = dir.path().join("kura.toml");
    std::fs::write(
        &path,
        format!(
            "{MINIMAL}\n[error_pages]\ndir = \"errors\"\n[access_log]\npath = \"logs/a.log\"\n"
        ),
    )
    .unwrap();
    let c = Config::from_file(&path).unwrap();
    assert_eq!(c.error_pages.pages[&400], "nope");
    assert_eq!(
        c.access_log.unwrap().target,
        AccessLogTarget::File(dir.path().join("logs/a.log"))
    );
}

#[test]
fn log_filter_directives_are_checked() {
    let ok = load(&format!(
        "{MINIMAL}\n[logging]\nlevel = \"info,kura_proxy::upstream=debug\"\n"
    ))
    .unwrap();
    assert_eq!(ok.logging.level, "info,kura_proxy::upstream=debug");
    let err = load(&format!("{MINIMAL}\n[logging]\nlevel = \"info,x=loud\"\n")).unwrap_err();
    assert_eq!(fields(&err), vec!["logging.level"]);
}

#[test]
fn zero_body_limit_means_unlimited_and_sizes_accept_units() {
    let c = load(&format!(
        "{MINIMAL}\n[limits]\nmax_body_bytes = 0\nmax_header_bytes = \"32KiB\"\n"
    ))
    .unwrap();
    assert_eq!(c.limits.max_body_bytes, None);
    assert_eq!(c.limits.max_header_bytes, 32 * 1024);
}

#[test]
fn header_edits_apply_in_order() {
    let c = load(&format!(
        "{}\n[[vhosts.rules]]\npool = \"app\"\n[vhosts.rules.request_headers]\nremove = [\"cookie\"]\nset = {{ \"x-a\" = \"1\" }}\nadd = {{ \"x-b\" = \"2\" }}\n",
        MINIMAL
    ))
    .unwrap();
    let edits = &c.routes.vhosts[0].rules[0].request_headers;
    let mut h = http::HeaderMap::new();
    h.insert("cookie", "c".parse().unwrap());
    h.insert("x-a", "0".parse().unwrap());
    h.insert("x-b", "1".parse().unwrap());
    edits.apply(&mut h);
    assert!(h.get("cookie").is_none());
    assert_eq!(h.get("x-a").unwrap(), "1");
    assert_eq!(h.get_all("x-b").iter().count(), 2);
}

/// The defaults written in docs/configuration.md are the ones the code uses.
#[test]
fn documented_defaults_match_the_code() {
    let doc = include_str!("../../../docs/configuration.md");
    let mut rows = std::collections::HashMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 5 && cells[1].starts_with('`') {
            let field = cells[1].trim_matches('`');
            rows.insert(field.to_string(), cells[3].trim_matches('`').to_string());
        }
    }
    let dur = |f: &str| parse_duration(&rows[f]).unwrap_or_else(|e| panic!("{f}: {e}"));
    let size = |f: &str| parse_size(&rows[f]).unwrap_or_else(|e| panic!("{f}: {e}"));
    let int = |f: &str| {
        rows[f]
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{f}: {e}"))
    };

    assert_eq!(dur("server.shutdown_grace"), DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(dur("pools.<name>.whohas_ttl"), DEFAULT_WHOHAS_TTL);
    assert_eq!(int("pools.<name>.whohas_entries"), DEFAULT_WHOHAS_ENTRIES);
    assert_eq!(int("...resize.max_width"), DEFAULT_RESIZE_MAX_WIDTH as u64);
    assert_eq!(
        int("...resize.max_height"),
        DEFAULT_RESIZE_MAX_HEIGHT as u64
    );
    assert_eq!(
        int("...resize.max_quality"),
        DEFAULT_RESIZE_MAX_QUALITY as u64
    );
    assert_eq!(
        int("...resize.default_quality"),
        DEFAULT_RESIZE_DEFAULT_QUALITY as u64
    );
    assert_eq!(int("...resize.max_dpr"), DEFAULT_RESIZE_MAX_DPR as u64);
    assert_eq!(
        int("...resize.max_source_pixels"),
        DEFAULT_RESIZE_MAX_SOURCE_PIXELS
    );
    assert_eq!(
        size("...resize.max_source_bytes"),
        DEFAULT_RESIZE_MAX_SOURCE_BYTES
    );
    assert_eq!(dur("...resize.timeout"), DEFAULT_RESIZE_TIMEOUT);
    assert_eq!(
        rows["...resize.signature.capture"],
        DEFAULT_SIGNATURE_CAPTURE
    );
    assert_eq!(
        dur("limits.websocket_idle_timeout"),
        DEFAULT_WEBSOCKET_IDLE_TIMEOUT
    );
    assert_eq!(dur("limits.send_timeout"), DEFAULT_SEND_TIMEOUT);
    assert_eq!(int("limits.max_upgraded"), DEFAULT_MAX_UPGRADED as u64);
    assert_eq!(
        int("limits.http2_max_concurrent_streams"),
        DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS as u64
    );
    assert_eq!(
        size("limits.http2_stream_buffer"),
        DEFAULT_HTTP2_STREAM_BUFFER
    );
    assert_eq!(
        dur("listeners.tls.reload_interval"),
        DEFAULT_TLS_RELOAD_INTERVAL
    );
    assert_eq!(int("listeners.https_port"), DEFAULT_HTTPS_PORT as u64);
    assert_eq!(dur("redis.resync_interval"), DEFAULT_REDIS_RESYNC_INTERVAL);
    assert_eq!(
        dur("redis.dead_backend_ttl"),
        DEFAULT_REDIS_DEAD_BACKEND_TTL
    );
    assert_eq!(
        rows["redis.configure_notifications"],
        DEFAULT_REDIS_CONFIGURE_NOTIFICATIONS.to_string()
    );
    assert_eq!(rows["server.via"], DEFAULT_VIA);
    assert_eq!(
        rows["server.work_stealing"],
        DEFAULT_WORK_STEALING.to_string()
    );
    assert_eq!(
        int("limits.max_connections"),
        DEFAULT_MAX_CONNECTIONS as u64
    );
    assert_eq!(
        size("limits.max_header_bytes"),
        DEFAULT_MAX_HEADER_BYTES as u64
    );
    assert_eq!(int("limits.max_headers"), DEFAULT_MAX_HEADERS as u64);
    assert_eq!(size("limits.max_body_bytes"), DEFAULT_MAX_BODY_BYTES);
    assert_eq!(
        dur("limits.client_header_timeout"),
        DEFAULT_CLIENT_HEADER_TIMEOUT
    );
    assert_eq!(
        dur("limits.client_idle_timeout"),
        DEFAULT_CLIENT_IDLE_TIMEOUT
    );
    assert_eq!(rows["logging.level"], DEFAULT_LOG_LEVEL);
    assert_eq!(
        int("access_log.buffer_lines"),
        DEFAULT_ACCESS_LOG_BUFFER_LINES as u64
    );
    let p = |k: &str| format!("pools.<name>.{k}");
    assert_eq!(
        int(&p("max_connections_per_backend")),
        DEFAULT_MAX_CONNECTIONS_PER_BACKEND as u64
    );
    assert_eq!(
        int(&p("max_idle_per_backend")),
        DEFAULT_MAX_IDLE_PER_BACKEND as u64
    );
    assert_eq!(dur(&p("idle_timeout")), DEFAULT_UPSTREAM_IDLE_TIMEOUT);
    assert_eq!(dur(&p("connect_timeout")), DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(dur(&p("response_timeout")), DEFAULT_RESPONSE_TIMEOUT);
    assert_eq!(dur(&p("dead_backend_ttl")), DEFAULT_DEAD_BACKEND_TTL);
    assert_eq!(int(&p("max_fails")), DEFAULT_MAX_FAILS as u64);
    assert_eq!(int(&p("retries")), DEFAULT_RETRIES as u64);
    assert_eq!(rows[&p("health_check.path")], DEFAULT_HEALTH_PATH);
    assert_eq!(dur(&p("health_check.interval")), DEFAULT_HEALTH_INTERVAL);
    assert_eq!(dur(&p("health_check.timeout")), DEFAULT_HEALTH_TIMEOUT);
    assert_eq!(
        int(&p("health_check.healthy_threshold")),
        DEFAULT_HEALTHY_THRESHOLD as u64
    );
    assert_eq!(
        int(&p("health_check.unhealthy_threshold")),
        DEFAULT_UNHEALTHY_THRESHOLD as u64
    );

    assert_eq!(size("cache.memory"), DEFAULT_CACHE_MEMORY);
    assert_eq!(size("cache.max_disk"), DEFAULT_MAX_DISK);
    assert!(
        rows["cache.cleaned_disk"]
            .starts_with(&format!("{}%", (DEFAULT_CLEANED_DISK_RATIO * 100.0) as u32)),
        "{}",
        rows["cache.cleaned_disk"]
    );
    assert_eq!(size("cache.segment_size"), DEFAULT_SEGMENT_SIZE);
    assert_eq!(
        int("cache.prefetch_segments"),
        DEFAULT_PREFETCH_SEGMENTS as u64
    );
    assert_eq!(dur("cache.lock_timeout"), DEFAULT_LOCK_TIMEOUT);
    let rc = |k: &str| format!("vhosts.rules.cache.{k}");
    assert_eq!(rows[&rc("key")], DEFAULT_CACHE_KEY);
    for zero in ["min_ttl", "stale_while_revalidate", "stale_if_error"] {
        assert_eq!(dur(&rc(zero)), std::time::Duration::ZERO, "{zero}");
    }

    // Every field of the file format is documented (those without a checked default here).
    for field in [
        "listeners.address",
        "admin.address",
        "server.workers",
        "logging.format",
        "access_log.path",
        "access_log.format",
        "error_pages.dir",
        "pools.<name>.backends",
        "pools.<name>.balance",
        "pools.<name>.dead_on_status",
        "pools.<name>.preserve_host",
        "pools.<name>.health_check.host",
        "vhosts.name",
        "vhosts.hosts",
        "vhosts.pool",
        "vhosts.rules.path",
        "vhosts.rules.action",
        "vhosts.rules.pool",
        "vhosts.rules.rewrite",
        "vhosts.rules.request_headers.set",
        "vhosts.rules.request_headers.add",
        "vhosts.rules.request_headers.remove",
        "vhosts.rules.response_headers.set",
        "vhosts.rules.response_headers.add",
        "vhosts.rules.response_headers.remove",
        "vhosts.action",
        "cache.dir",
        "cache.purge_allow",
        "vhosts.rules.cache.default_ttl",
        "vhosts.rules.cache.force_ttl",
        "vhosts.rules.cache.client_max_age",
        "vhosts.rules.cache.accel_redirect",
    ] {
        assert!(rows.contains_key(field), "{field} is not documented");
    }
}

#[test]
fn cache_sections_validate_and_default() {
    let c = load(&format!(
        "{MINIMAL}action = \"cache\"\n[vhosts.cache]\nmin_ttl = \"60s\"\nkey = \"{{host}}{{path}}\"\n[cache]\nmemory = \"64MiB\"\ndir = \"data\"\nmax_disk = \"1G\"\npurge_allow = [\"127.0.0.1\", \"10.0.0.0/8\"]\n"
    ))
    .unwrap();
    assert_eq!(c.cache.memory_bytes, 64 * 1024 * 1024);
    let disk = c.cache.disk.as_ref().unwrap();
    assert_eq!(disk.max_bytes, 1_000_000_000);
    assert_eq!(
        disk.cleaned_bytes, 800_000_000,
        "cleaned defaults to 80% of max"
    );
    assert_eq!(c.cache.segment_size, DEFAULT_SEGMENT_SIZE);
    assert_eq!(c.cache.purge_allow.len(), 2);
    let rule = &c.routes.vhosts[0].rules[0];
    assert_eq!(rule.action.kind(), Action::Cache);
    let rc = rule.action.cache().unwrap();
    assert_eq!(rc.min_ttl, std::time::Duration::from_secs(60));
    assert_eq!(rc.key.as_ref().unwrap().source(), "{host}{path}");

    // Without a [cache] section, a cache rule uses the memory defaults.
    let c = load(&format!("{MINIMAL}action = \"cache\"\n")).unwrap();
    assert_eq!(c.cache.memory_bytes, DEFAULT_CACHE_MEMORY);
    assert!(c.cache.disk.is_none());
    assert!(c.routes.vhosts[0].rules[0].action.cache().is_some());
}

#[test]
fn cache_mistakes_are_named() {
    let err = load(&format!(
        "{MINIMAL}action = \"cache\"\n[vhosts.cache]\nkey = \"{{nope}}\"\naccel_redirect = \"internal\"\ndefault_ttl = \"a while\"\n[cache]\nmax_disk = \"1G\"\nsegment_size = 100\npurge_allow = [\"somewhere\"]\n"
    ))
    .unwrap_err();
    let f = fields(&err);
    for expected in [
        "vhosts[0].cache.key",
        "vhosts[0].cache.accel_redirect",
        "vhosts[0].cache.default_ttl",
        "cache.max_disk",
        "cache.segment_size",
        "cache.purge_allow[0]",
    ] {
        assert!(f.contains(&expected), "missing {expected} in {f:?}");
    }
    let err = load(&format!(
        "{MINIMAL}\n[cache]\ndir = \"d\"\nmax_disk = \"1G\"\ncleaned_disk = \"2G\"\n"
    ))
    .unwrap_err();
    assert_eq!(fields(&err), vec!["cache.cleaned_disk"]);
    // A cache table on a proxy rule is a mistake, not a silent no-op.
    let err = load(&format!(
        "{MINIMAL}\n[[vhosts.rules]]\npool = \"app\"\n[vhosts.rules.cache]\nmin_ttl = \"1s\"\n"
    ))
    .unwrap_err();
    assert_eq!(fields(&err), vec!["vhosts[0].rules[0].cache"]);
}

#[test]
fn tls_listener_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not pem").unwrap();
    let toml = r#"
[[listeners]]
address = "127.0.0.1:8443"
redirect_to_https = true
[[listeners.tls.certificates]]
cert = "missing.crt"
key = "bad.pem"
hosts = ["ok.test", "bad host"]
[[listeners]]
address = "127.0.0.1:8080"
https_port = 8443
[pools.app]
backends = ["https://127.0.0.1:3000", "wss://x"]
tls_ca = "bad.pem"
[[vhosts]]
hosts = ["*"]
pool = "app"
[redis]
url = "http://not-redis"
pool_template = "nope"
"#;
    let err = Config::from_toml(toml, dir.path()).unwrap_err();
    let f = fields(&err);
    for want in [
        "listeners[0].tls.certificates[0].cert",
        "listeners[0].tls.certificates[0].key",
        "listeners[0].tls.certificates[0].hosts[1]",
        "listeners[0].redirect_to_https",
        "listeners[1].https_port",
        "pools.app.backends[1]",
        "pools.app.tls_ca",
        "redis.url",
        "redis.pool_template",
    ] {
        assert!(f.contains(&want), "{want} missing from {f:?}");
    }
}

#[test]
fn listeners_default_http2_by_tls_and_redis_takes_its_pool_settings() {
    let toml = r#"
[[listeners]]
address = "127.0.0.1:8080"
[pools.tmpl]
backends = ["http://127.0.0.1:1"]
connect_timeout = "1s"
[[vhosts]]
hosts = ["*"]
pool = "tmpl"
[redis]
url = "redis://127.0.0.1:6379/2"
pool_template = "tmpl"
"#;
    let c = Config::from_toml(toml, Path::new(".")).unwrap();
    assert!(!c.listeners[0].http2);
    assert!(c.listeners[0].tls.is_none());
    let r = c.redis.unwrap();
    assert_eq!(r.pool_template.connect_timeout, Duration::from_secs(1));
    assert!(r.pool_template.backends.is_empty());
    assert_eq!(r.dead_backend_ttl, DEFAULT_REDIS_DEAD_BACKEND_TTL);
    assert_eq!(
        r.pool_template.dead_backend_ttl,
        DEFAULT_REDIS_DEAD_BACKEND_TTL
    );
    assert_eq!(r.resync_interval, DEFAULT_REDIS_RESYNC_INTERVAL);
    let b = parse_backend("https://api.test").unwrap();
    assert!(b.tls);
    assert_eq!(b.port, 443);
}

#[test]
fn resize_rules_and_clusters_name_their_bad_fields() {
    let toml = r#"
[[listeners]]
address = "127.0.0.1:8080"
[pools.both]
backends = ["http://127.0.0.1:1"]
clusters = [{ nodes = ["http://127.0.0.1:2"] }]
[pools.filers]
clusters = [{ nodes = ["nope"], headers = { "bad header" = "x" } }, { nodes = [] }]
[[vhosts]]
hosts = ["*"]
[[vhosts.rules]]
path = "^/(?P<w>[0-9]+)/(?P<src>.+)$"
action = "resize"
pool = "filers"
[vhosts.rules.resize]
source = "/{src}"
width = "{nope}"
default_quality = 95
default_format = "gif"
fit_aliases = { f = "stretch" }
not_found_source = "missing.jpg"
allowed_sources = ["bad host"]
signature = { keys = ["zz"], salts = ["00"], capture = "sig" }
[[vhosts.rules]]
path = "^/x"
action = "resize"
pool = "filers"
"#;
    let err = Config::from_toml(toml, Path::new(".")).unwrap_err();
    let f = fields(&err);
    for want in [
        "pools.both.clusters",
        "pools.filers.clusters[0].nodes[0]",
        "pools.filers.clusters[0].headers.bad header",
        "pools.filers.clusters[1].nodes",
        "vhosts[0].rules[0].resize.width",
        "vhosts[0].rules[0].resize.default_quality",
        "vhosts[0].rules[0].resize.default_format",
        "vhosts[0].rules[0].resize.fit_aliases.f",
        "vhosts[0].rules[0].resize.not_found_source",
        "vhosts[0].rules[0].resize.allowed_sources[0]",
        "vhosts[0].rules[0].resize.signature.capture",
        "vhosts[0].rules[0].resize.signature",
        "vhosts[0].rules[1].resize",
    ] {
        assert!(f.contains(&want), "{want} missing from {f:?}");
    }
}

#[test]
fn resize_defaults_are_katanas() {
    let toml = r#"
[[listeners]]
address = "127.0.0.1:8080"
[pools.p]
backends = ["http://127.0.0.1:1"]
[[vhosts]]
hosts = ["*"]
[[vhosts.rules]]
path = "^/(?P<w>[0-9]+)/(?P<src>.+)$"
action = "resize"
pool = "p"
[vhosts.rules.resize]
source = "/{src}"
width = "{w}"
"#;
    let c = Config::from_toml(toml, Path::new(".")).unwrap();
    let rule = &c.routes.vhosts[0].rules[0];
    assert_eq!(rule.action.kind(), Action::Resize);
    assert!(rule.action.cache().is_some(), "variants are cached");
    let r = rule.action.resize().unwrap();
    assert_eq!((r.max_width, r.max_height), (1920, 1080));
    assert_eq!((r.max_quality, r.default_quality), (90, 75));
    assert_eq!(r.default_format, "source");
    assert_eq!(r.timeout, DEFAULT_RESIZE_TIMEOUT);
    assert!(!r.allow_local_sources);
}
