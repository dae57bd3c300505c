//! Tests of the configuration builder: what it writes is what kura reads.

use std::time::Duration;

use kura_config::{Action, Config, HostPattern};

use super::*;

fn parse(config: &TestConfig) -> Config {
    let text = config.build();
    Config::from_toml(&text, Path::new("/tmp"))
        .unwrap_or_else(|e| panic!("built config invalid:\n{e}\n---\n{text}"))
}

fn hosts(patterns: &[&str]) -> Vec<HostPattern> {
    patterns
        .iter()
        .map(|h| kura_config::parse_host_pattern(h).unwrap())
        .collect()
}

#[test]
fn the_default_is_one_local_listener_and_nothing_else() {
    // Not valid on its own (no vhost), so read back as a file rather than validated.
    let file = kura_config::parse_toml(&TestConfig::new().build()).unwrap();
    assert_eq!(file.listeners.len(), 1);
    assert_eq!(file.listeners[0].address, "127.0.0.1:0");
    assert_eq!(file.listeners[0].http2, None);
    assert!(file.admin.is_none() && file.cache.is_none() && file.access_log.is_none());
    assert!(file.pools.is_empty() && file.vhosts.is_empty());
}

#[test]
fn pools_vhosts_and_rules_come_out_in_order() {
    let config = TestConfig::new()
        .admin()
        .http2()
        .cache_memory("64MiB")
        .pool("app", &["http://127.0.0.1:8080"])
        .pool_with("web", &["http://127.0.0.1:8081/base/".to_string()], |p| {
            p.preserve_host(false).max_connections_per_backend(1)
        })
        .vhost(&["v.test", "*.v.test"], |v| {
            v.name("site")
                .rule(
                    Rule::proxy("app")
                        .path("^/api/(?P<rest>.*)$")
                        .rewrite("/v2/{rest}"),
                )
                .rule(
                    Rule::cache("web")
                        .path("^/k/(?P<rest>.*)$")
                        .policy(CachePolicy::new().key("{host}/k/{rest}")),
                )
                .pool("app")
        })
        .vhost(&["*"], |v| {
            v.fallback(
                Rule::cache("web").policy(
                    CachePolicy::new()
                        .default_ttl("5m")
                        .cookies(CookiePolicy::Ignore),
                ),
            )
        });
    let c = parse(&config);

    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address, "127.0.0.1:0".parse().unwrap());
    assert!(c.listeners[0].http2);
    assert_eq!(
        c.admin.as_ref().map(|a| a.address),
        Some("127.0.0.1:0".parse().unwrap())
    );
    assert_eq!(c.cache.memory_bytes, 64 << 20);

    let pools: Vec<&str> = c.routes.pools.keys().map(String::as_str).collect();
    assert_eq!(pools, ["app", "web"]);
    let app = &c.routes.pools["app"];
    assert_eq!(app.backends[0].authority, "127.0.0.1:8080");
    assert!(app.preserve_host);
    let web = &c.routes.pools["web"];
    assert_eq!(web.backends[0].base_path, "/base");
    assert!(!web.preserve_host);
    assert_eq!(web.max_connections_per_backend, 1);

    assert_eq!(c.routes.vhosts.len(), 2);
    let site = &c.routes.vhosts[0];
    assert_eq!(site.name, "site");
    assert_eq!(site.hosts, hosts(&["v.test", "*.v.test"]));
    let rules: Vec<(&str, Action, &str)> = site
        .rules
        .iter()
        .map(|r| (r.path.as_str(), r.action.kind(), r.pool.as_str()))
        .collect();
    assert_eq!(
        rules,
        [
            ("^/api/(?P<rest>.*)$", Action::Proxy, "app"),
            ("^/k/(?P<rest>.*)$", Action::Cache, "web"),
            ("", Action::Proxy, "app"),
        ]
    );
    assert!(site.rules[0].rewrite.is_some());
    assert!(site.rules[1].action.cache().unwrap().key.is_some());

    let any = &c.routes.vhosts[1];
    assert_eq!(any.hosts, [HostPattern::Any]);
    assert_eq!(any.rules.len(), 1);
    let policy = any.rules[0].action.cache().expect("a cache fallback");
    assert_eq!(policy.default_ttl, Some(Duration::from_secs(300)));
    assert_eq!(policy.cookies, CookiePolicy::Ignore);
}

#[test]
fn header_edits_shadows_and_resize_rules() {
    let config = TestConfig::new()
        .pool("p", &["http://127.0.0.1:1"])
        .pool("s", &["http://127.0.0.1:2"])
        .vhost(&["a.test"], |v| {
            v.rule(
                Rule::proxy("p")
                    .request_set("x-team", "blue")
                    .request_add("x-tag", "added")
                    .request_remove("cookie")
                    .response_set("x-served-by", "kura")
                    .response_remove("x-origin"),
            )
            .rule(
                Rule::resize("p", Resize::new("/{src}").width("1"))
                    .path("^/r/(?P<src>.+)$")
                    .policy(CachePolicy::new().force_ttl("1h")),
            )
            .fallback(Rule::proxy("p").shadow(Shadow::to(&["s"]).sample_percent(50.0)))
        });
    let c = parse(&config);
    let rules = &c.routes.vhosts[0].rules;
    assert_eq!(rules.len(), 3);

    let edits = &rules[0].request_headers;
    assert_eq!(edits.set.len(), 1);
    assert_eq!(edits.set[0].0, "x-team");
    assert_eq!(edits.set[0].1, "blue");
    assert_eq!(edits.add[0].0, "x-tag");
    assert_eq!(edits.remove, ["cookie"]);
    let edits = &rules[0].response_headers;
    assert_eq!(edits.set[0].0, "x-served-by");
    assert_eq!(edits.remove, ["x-origin"]);

    assert_eq!(rules[1].action.kind(), Action::Resize);
    assert!(rules[1].action.resize().unwrap().width.is_some());
    assert_eq!(
        rules[1].action.cache().unwrap().force_ttl,
        Some(Duration::from_secs(3600))
    );

    let shadow = rules[2].action.shadow().expect("the fallback is shadowed");
    assert_eq!(shadow.targets.len(), 1);
    assert_eq!(shadow.targets[0].pool, "s");
    assert_eq!(shadow.sample_percent, 50.0);
}

#[test]
fn server_logging_and_pages_settings() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = TestConfig::new()
        .trusted_proxies(&["127.0.0.0/8"])
        .access_log(&log, AccessLogFormat::Json)
        .error_pages(dir.path())
        .pool("p", &["http://127.0.0.1:1"])
        .vhost(&["*"], |v| v.pool("p"));
    let c = parse(&config);
    let trusted: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(trusted, ["127.0.0.0/8"]);
    let access = c.access_log.expect("an access log");
    assert_eq!(access.target, kura_config::AccessLogTarget::File(log));
    assert_eq!(access.format, AccessLogFormat::Json);
    assert_eq!(c.error_pages.dir.as_deref(), Some(dir.path()));
}

#[test]
fn raw_fragments_merge_into_the_built_tables() {
    let config = TestConfig::new()
        .pool("app", &["http://127.0.0.1:1"])
        .vhost(&["a.test"], |v| v.pool("app"))
        .raw("[pools.app]\nretries = 7\nhealth_check = { path = \"/up\", interval = \"1s\" }")
        .raw("[limits]\nmax_headers = 20\n[[vhosts]]\nhosts = [\"b.test\"]\npool = \"app\"");
    let c = parse(&config);
    let app = &c.routes.pools["app"];
    assert_eq!(app.backends.len(), 1, "the built backends stay");
    assert_eq!(app.retries, 7);
    let check = app.health_check.as_ref().expect("a health check");
    assert_eq!(check.path, "/up");
    assert_eq!(check.interval, Duration::from_secs(1));
    assert_eq!(c.limits.max_headers, 20);
    let vhosts: Vec<&str> = c.routes.vhosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(vhosts, ["a.test", "b.test"], "[[vhosts]] is appended");
}

#[test]
fn typed_edits_reach_the_file_structs() {
    let config = TestConfig::new()
        .admin_with(|a| a.max_connections = Some(2))
        .admin_with(|a| {
            a.token = Some("0123456789abcdef-token".into());
            a.protect_reads = Some(true);
        })
        .limits(|l| l.client_header_timeout = Some("700ms".into()))
        .pool_with("p", &["http://127.0.0.1:1"], |p| {
            p.edit(|p| p.dead_on_status = Some(vec![503]))
        })
        .vhost(&["a.test"], |v| v.pool("p"))
        .edit(|f| f.server.via = Some("edge".into()));
    let c = parse(&config);
    assert_eq!(c.routes.pools["p"].dead_on_status, [503]);
    assert_eq!(c.server.via, "edge");
    let admin = c.admin.expect("an admin listener");
    assert_eq!(admin.address, "127.0.0.1:0".parse().unwrap());
    assert_eq!((admin.max_connections, admin.protect_reads), (2, true));
    assert_eq!(c.limits.client_header_timeout, Duration::from_millis(700));
}

#[test]
fn validation_errors_still_come_from_the_real_validation() {
    let text = TestConfig::new()
        .pool("app", &["http://127.0.0.1:1"])
        .vhost(&["a.test"], |v| {
            v.rule(
                Rule::cache("app")
                    .path("^/")
                    .policy(CachePolicy::new().force_ttl("1000000000y")),
            )
            .rule(Rule::proxy("missing"))
        })
        .build();
    let err = Config::from_toml(&text, Path::new("/tmp"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("vhosts[0].rules[0].cache.force_ttl"), "{err}");
    assert!(err.contains("vhosts[0].rules[1].pool"), "{err}");
}

#[test]
fn the_text_holds_only_what_was_set() {
    let text = TestConfig::new()
        .pool("p", &["http://127.0.0.1:1"])
        .vhost(&["a.test"], |v| {
            v.rule(
                Rule::proxy("p")
                    .path("^/ws")
                    .upgrades(&[])
                    .request_set("x-a", "1"),
            )
            .rule(Rule::cache("p").path("^/c").policy(CachePolicy::new()))
        })
        .build();
    for absent in [
        "[server]",
        "[limits]",
        "[logging]",
        "remove",
        "response_headers",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
    // What was set stays, empty or not.
    for present in ["upgrades = []", "x-a = \"1\"", "[vhosts.rules.cache]"] {
        assert!(text.contains(present), "{present} missing in\n{text}");
    }
    let c = Config::from_toml(&text, Path::new("/tmp")).unwrap();
    assert!(c.routes.vhosts[0].rules[0].upgrades.is_empty());
}

#[test]
#[should_panic(expected = "use VHost::rule")]
fn a_fallback_with_a_path_is_refused() {
    let _ = VHost(FileVHost::default()).fallback(Rule::proxy("p").path("^/x"));
}
