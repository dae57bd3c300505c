//! A builder for the kura configurations integration tests start.
//!
//! Tests used to each carry a `format!` template of TOML text, with `{{` escapes for every
//! brace and a helper per file splicing fragments in. [`TestConfig`] says the same things in
//! code: pools, vhosts and their [`Rule`]s, cache storage, the admin listener, the access log.
//! It fills kura-config's own file structs ([`FileConfig`] and friends), so a misspelt key is
//! a compile error, and [`TestConfig::build`] writes them out as TOML *text*: a test's
//! configuration still goes through the real parser and validation, exactly as an operator's
//! file does ([`TestConfig::start`] hands that text to [`TestKura::start`]).
//!
//! Listeners always bind `127.0.0.1:0` (as does the admin listener), so tests run in parallel
//! without picking ports.
//!
//! The builder covers what tests commonly need; for the rest there are two escape hatches:
//! [`TestConfig::edit`] (and `edit` on [`Pool`], [`VHost`], [`Rule`], [`CachePolicy`],
//! [`Resize`], [`Shadow`]) gives typed access to the underlying file struct, and
//! [`TestConfig::raw`] merges a fragment of TOML text, e.g.
//! `.raw("[pools.app]\nhealth_check = { interval = \"0s\" }")`.
//!
//! ```no_run
//! # async fn demo(origin: kura_testkit::TestOrigin) {
//! use kura_testkit::config::{CachePolicy, Rule, TestConfig};
//!
//! let kura = TestConfig::new()
//!     .admin()
//!     .cache_memory("64MiB")
//!     .pool("app", &[origin.url()])
//!     .vhost(&["a.test"], |v| {
//!         v.rule(Rule::proxy("app").path("^/api/").rewrite("/v2/"))
//!             .fallback(Rule::cache("app").policy(CachePolicy::new().default_ttl("5m")))
//!     })
//!     .start()
//!     .await;
//! # }
//! ```

use std::path::Path;

use kura_config::{
    AccessLogFormat, Balance, CookiePolicy, FileAccessLog, FileAdmin, FileCache, FileConfig,
    FileErrorPages, FileLimits, FileListener, FilePool, FileRule, FileRuleCache, FileRuleResize,
    FileRuleShadow, FileShadowTarget, FileVHost, SizeValue,
};

use crate::TestKura;

/// The address every listener of a test configuration binds: loopback, a free port.
pub const LOCAL_ANY_PORT: &str = "127.0.0.1:0";

/// A kura configuration under construction; [`TestConfig::build`] gives its TOML text.
///
/// Starts with one plain HTTP listener on `127.0.0.1:0` and nothing else; a configuration
/// that validation would refuse (a rule naming a missing pool, say) builds fine, so tests of
/// validation errors can use the builder too.
#[derive(Debug, Clone)]
pub struct TestConfig {
    file: FileConfig,
    raw: Vec<String>,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TestConfig {
    /// One cleartext listener on `127.0.0.1:0`; no admin, cache storage, pools or vhosts.
    pub fn new() -> Self {
        TestConfig {
            file: FileConfig {
                listeners: vec![FileListener {
                    address: LOCAL_ANY_PORT.to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            raw: Vec::new(),
        }
    }

    /// The listener also accepts HTTP/2 with prior knowledge (`http2 = true`).
    pub fn http2(mut self) -> Self {
        self.file.listeners[0].http2 = Some(true);
        self
    }

    /// An admin listener (`[admin]`) on `127.0.0.1:0`, without a token.
    pub fn admin(self) -> Self {
        self.admin_with(|_| {})
    }

    /// An admin listener on `127.0.0.1:0` whose settings `edit` adjusts (`token`,
    /// `protect_reads`, `hosts`, `max_connections`).
    pub fn admin_with(mut self, edit: impl FnOnce(&mut FileAdmin)) -> Self {
        let admin = self.file.admin.get_or_insert_with(|| FileAdmin {
            address: LOCAL_ANY_PORT.to_string(),
            ..Default::default()
        });
        edit(admin);
        self
    }

    /// Edits `[limits]`, the client-facing limits and timeouts.
    pub fn limits(mut self, edit: impl FnOnce(&mut FileLimits)) -> Self {
        edit(&mut self.file.limits);
        self
    }

    /// `server.trusted_proxies`: peers (IPs or CIDR blocks) whose forwarding headers kura
    /// believes.
    pub fn trusted_proxies(mut self, peers: &[&str]) -> Self {
        self.file.server.trusted_proxies = Some(strings(peers));
        self
    }

    /// An access log (`[access_log]`) written to `path` in `format` (`Combined`, kura's
    /// default, is left unwritten).
    pub fn access_log(mut self, path: impl AsRef<Path>, format: AccessLogFormat) -> Self {
        self.file.access_log = Some(FileAccessLog {
            path: path_text(path.as_ref()),
            format: match format {
                AccessLogFormat::Combined => None,
                AccessLogFormat::Json => Some("json".to_string()),
            },
            buffer_lines: None,
        });
        self
    }

    /// Custom error pages (`[error_pages]`) read from `dir`.
    pub fn error_pages(mut self, dir: impl AsRef<Path>) -> Self {
        self.file.error_pages = Some(FileErrorPages {
            dir: path_text(dir.as_ref()),
        });
        self
    }

    /// `cache.memory`: the size of the cache's memory tier, e.g. `"64MiB"`.
    pub fn cache_memory(self, size: &str) -> Self {
        self.cache_storage(|c| c.memory = Some(SizeValue::Text(size.to_string())))
    }

    /// `cache.dir`: a disk tier in `dir`.
    pub fn cache_dir(self, dir: impl AsRef<Path>) -> Self {
        let dir = path_text(dir.as_ref());
        self.cache_storage(|c| c.dir = Some(dir))
    }

    /// Edits `[cache]` (the storage shared by every caching rule), creating it when absent.
    pub fn cache_storage(mut self, edit: impl FnOnce(&mut FileCache)) -> Self {
        edit(self.file.cache.get_or_insert_with(FileCache::default));
        self
    }

    /// A pool (`[pools.<name>]`) of `backends` (URLs such as [`crate::TestOrigin::url`]),
    /// with default settings. A pool of the same name is replaced.
    pub fn pool<B: AsRef<str>>(self, name: &str, backends: &[B]) -> Self {
        self.pool_with(name, backends, |p| p)
    }

    /// A pool of `backends` whose settings `build` adjusts, e.g.
    /// `|p| p.preserve_host(false)`.
    pub fn pool_with<B: AsRef<str>>(
        mut self,
        name: &str,
        backends: &[B],
        build: impl FnOnce(Pool) -> Pool,
    ) -> Self {
        let pool = build(Pool(FilePool {
            backends: backends.iter().map(|b| b.as_ref().to_string()).collect(),
            ..Default::default()
        }));
        self.file.pools.insert(name.to_string(), pool.0);
        self
    }

    /// A vhost (`[[vhosts]]`) serving `hosts` (`a.test`, `*.a.test` or `*`), after those added
    /// before it; `build` gives it rules and/or a fallback pool.
    pub fn vhost(mut self, hosts: &[&str], build: impl FnOnce(VHost) -> VHost) -> Self {
        let vhost = build(VHost(FileVHost {
            hosts: strings(hosts),
            ..Default::default()
        }));
        self.file.vhosts.push(vhost.0);
        self
    }

    /// Typed escape hatch: edits the whole file structure (limits, TLS, shadow settings, ...).
    pub fn edit(mut self, edit: impl FnOnce(&mut FileConfig)) -> Self {
        edit(&mut self.file);
        self
    }

    /// Text escape hatch: TOML merged into the built configuration, for fields the builder
    /// has no method for. Tables merge key by key (so `[pools.app]` adds to the pool `app`),
    /// arrays of tables (`[[vhosts]]`) are appended to, and any other value replaces the built
    /// one. Fragments are merged in the order given, when the configuration is built.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_string());
        self
    }

    /// The configuration as TOML text, ready for [`TestKura::start`] or
    /// [`kura_config::Config::from_toml`]. Panics when a [`TestConfig::raw`] fragment is not
    /// valid TOML.
    pub fn build(&self) -> String {
        let mut table = toml::Table::try_from(&self.file).expect("the file structs serialise");
        prune_defaults(&mut table);
        for fragment in &self.raw {
            let extra: toml::Table = fragment
                .parse()
                .unwrap_or_else(|e| panic!("raw TOML fragment invalid: {e}\n---\n{fragment}"));
            merge(&mut table, extra);
        }
        toml::to_string(&table).expect("a TOML table serialises")
    }

    /// Builds the configuration and starts kura with it ([`TestKura::start`]); panics, showing
    /// the text, when validation refuses it.
    pub async fn start(&self) -> TestKura {
        TestKura::start(&self.build()).await
    }
}

/// The settings of one pool, for [`TestConfig::pool_with`].
#[derive(Debug, Clone)]
pub struct Pool(FilePool);

impl Pool {
    /// `preserve_host`: send the client's `Host` upstream (kura's default) or, with `false`,
    /// the backend's `host:port`.
    pub fn preserve_host(mut self, preserve: bool) -> Self {
        self.0.preserve_host = Some(preserve);
        self
    }

    /// `balance`: how a backend is picked.
    pub fn balance(mut self, balance: Balance) -> Self {
        self.0.balance = Some(balance.as_str().to_string());
        self
    }

    /// `max_connections_per_backend`: requests in flight to one backend at once.
    pub fn max_connections_per_backend(mut self, n: usize) -> Self {
        self.0.max_connections_per_backend = Some(n);
        self
    }

    /// `connect_timeout`, e.g. `"500ms"`.
    pub fn connect_timeout(mut self, timeout: &str) -> Self {
        self.0.connect_timeout = Some(timeout.to_string());
        self
    }

    /// `response_timeout`, e.g. `"2s"`.
    pub fn response_timeout(mut self, timeout: &str) -> Self {
        self.0.response_timeout = Some(timeout.to_string());
        self
    }

    /// `retries`: further attempts on other backends.
    pub fn retries(mut self, retries: u32) -> Self {
        self.0.retries = Some(retries);
        self
    }

    /// Typed escape hatch: edits the pool's file struct (health checks, TLS, ...).
    pub fn edit(mut self, edit: impl FnOnce(&mut FilePool)) -> Self {
        edit(&mut self.0);
        self
    }
}

/// One vhost under construction, for [`TestConfig::vhost`].
#[derive(Debug, Clone)]
pub struct VHost(FileVHost);

impl VHost {
    /// `name`: the vhost's name in logs, metrics and the admin API (default its first host).
    pub fn name(mut self, name: &str) -> Self {
        self.0.name = Some(name.to_string());
        self
    }

    /// Adds a rule (`[[vhosts.rules]]`) after those added before it.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.0.rules.push(rule.0);
        self
    }

    /// The vhost's fallback: requests no rule matched are proxied to `pool`
    /// (`pool = "<pool>"` on the vhost).
    pub fn pool(self, pool: &str) -> Self {
        self.fallback(Rule::proxy(pool))
    }

    /// The vhost's fallback given as a rule: its pool, action, cache policy, shadow and
    /// upgrades become the vhost's `pool`, `action`, `cache`, `shadow` and `upgrades`. Panics
    /// when the rule has what a fallback cannot (a path, rewrite, header edits or resize
    /// settings): add such a rule with [`VHost::rule`] instead.
    pub fn fallback(mut self, rule: Rule) -> Self {
        let FileRule {
            path,
            action,
            pool,
            rewrite,
            request_headers,
            response_headers,
            cache,
            shadow,
            resize,
            upgrades,
        } = rule.0;
        assert!(
            path.is_none()
                && rewrite.is_none()
                && request_headers == Default::default()
                && response_headers == Default::default()
                && resize.is_none(),
            "a vhost's fallback has no path, rewrite, header edits or resize settings; \
             use VHost::rule"
        );
        self.0.pool = Some(pool);
        self.0.action = action;
        self.0.cache = cache;
        self.0.shadow = shadow;
        self.0.upgrades = upgrades;
        self
    }

    /// Typed escape hatch: edits the vhost's file struct.
    pub fn edit(mut self, edit: impl FnOnce(&mut FileVHost)) -> Self {
        edit(&mut self.0);
        self
    }
}

/// One rule of a vhost (or its fallback): an action on a pool, and what it matches.
#[derive(Debug, Clone)]
pub struct Rule(FileRule);

impl Rule {
    fn with_action(pool: &str, action: Option<&str>) -> Self {
        Rule(FileRule {
            pool: pool.to_string(),
            action: action.map(str::to_string),
            ..Default::default()
        })
    }

    /// Forward to `pool` (the default action; no `action` key is written).
    pub fn proxy(pool: &str) -> Self {
        Self::with_action(pool, None)
    }

    /// Answer through the cache, filling it from `pool` (`action = "cache"`), with the
    /// default policy until [`Rule::policy`] sets one.
    pub fn cache(pool: &str) -> Self {
        Self::with_action(pool, Some("cache"))
    }

    /// Serve resized images of originals on `pool` (`action = "resize"`).
    pub fn resize(pool: &str, resize: Resize) -> Self {
        let mut rule = Self::with_action(pool, Some("resize"));
        rule.0.resize = Some(resize.0);
        rule
    }

    /// `path`: the regex the request path must match (default: every path).
    pub fn path(mut self, regex: &str) -> Self {
        self.0.path = Some(regex.to_string());
        self
    }

    /// `rewrite`: the upstream path template (`{name}` inserts a capture of the path regex).
    pub fn rewrite(mut self, template: &str) -> Self {
        self.0.rewrite = Some(template.to_string());
        self
    }

    /// `cache`: the caching policy of a `cache` or `resize` rule.
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.0.cache = Some(policy.0);
        self
    }

    /// `shadow`: copies of the rule's requests sent to other pools and compared.
    pub fn shadow(mut self, shadow: Shadow) -> Self {
        self.0.shadow = Some(shadow.0);
        self
    }

    /// `upgrades`: the `Upgrade` protocols relayed (default `["websocket"]`).
    pub fn upgrades(mut self, protocols: &[&str]) -> Self {
        self.0.upgrades = Some(strings(protocols));
        self
    }

    /// `request_headers.set`: replace (or create) header `name` upstream.
    pub fn request_set(mut self, name: &str, value: &str) -> Self {
        let edits = &mut self.0.request_headers;
        edits.set.insert(name.to_string(), value.to_string());
        self
    }

    /// `request_headers.add`: append a value of header `name` upstream.
    pub fn request_add(mut self, name: &str, value: &str) -> Self {
        let edits = &mut self.0.request_headers;
        edits.add.insert(name.to_string(), value.to_string());
        self
    }

    /// `request_headers.remove`: drop header `name` from the upstream request.
    pub fn request_remove(mut self, name: &str) -> Self {
        self.0.request_headers.remove.push(name.to_string());
        self
    }

    /// `response_headers.set`: replace (or create) header `name` in the client's response.
    pub fn response_set(mut self, name: &str, value: &str) -> Self {
        let edits = &mut self.0.response_headers;
        edits.set.insert(name.to_string(), value.to_string());
        self
    }

    /// `response_headers.add`: append a value of header `name` to the client's response.
    pub fn response_add(mut self, name: &str, value: &str) -> Self {
        let edits = &mut self.0.response_headers;
        edits.add.insert(name.to_string(), value.to_string());
        self
    }

    /// `response_headers.remove`: drop header `name` from the client's response.
    pub fn response_remove(mut self, name: &str) -> Self {
        self.0.response_headers.remove.push(name.to_string());
        self
    }

    /// Typed escape hatch: edits the rule's file struct.
    pub fn edit(mut self, edit: impl FnOnce(&mut FileRule)) -> Self {
        edit(&mut self.0);
        self
    }
}

/// The caching policy of a rule (its `cache` table); every setting starts unset (kura's
/// default). Durations are written as in the file: `"5m"`, `"1h"`, `"100s"`.
#[derive(Debug, Clone, Default)]
pub struct CachePolicy(FileRuleCache);

impl CachePolicy {
    /// A policy with every setting at kura's default (written as an empty `cache = {}`).
    pub fn new() -> Self {
        Self::default()
    }

    /// `key`: the cache-key template, e.g. `"{host}/k/{rest}"`.
    pub fn key(mut self, template: &str) -> Self {
        self.0.key = Some(template.to_string());
        self
    }

    /// `min_ttl`: responses fresh for less are not stored.
    pub fn min_ttl(mut self, ttl: &str) -> Self {
        self.0.min_ttl = Some(ttl.to_string());
        self
    }

    /// `default_ttl`: freshness of responses that state none.
    pub fn default_ttl(mut self, ttl: &str) -> Self {
        self.0.default_ttl = Some(ttl.to_string());
        self
    }

    /// `force_ttl`: freshness of every storable response, whatever it says.
    pub fn force_ttl(mut self, ttl: &str) -> Self {
        self.0.force_ttl = Some(ttl.to_string());
        self
    }

    /// `client_max_age`: the `max-age` sent to clients instead of the origin's.
    pub fn client_max_age(mut self, age: &str) -> Self {
        self.0.client_max_age = Some(age.to_string());
        self
    }

    /// `stale_while_revalidate`, for responses without the directive.
    pub fn stale_while_revalidate(mut self, window: &str) -> Self {
        self.0.stale_while_revalidate = Some(window.to_string());
        self
    }

    /// `stale_if_error`, for responses without the directive.
    pub fn stale_if_error(mut self, window: &str) -> Self {
        self.0.stale_if_error = Some(window.to_string());
        self
    }

    /// `accel_redirect`: the `X-Accel-Redirect` prefix under which disk hits are handed to an
    /// nginx in front (needs [`TestConfig::cache_dir`]).
    pub fn accel_redirect(mut self, prefix: &str) -> Self {
        self.0.accel_redirect = Some(prefix.to_string());
        self
    }

    /// `cookies`: what requests carrying `Cookie` get.
    pub fn cookies(mut self, policy: CookiePolicy) -> Self {
        let word = match policy {
            CookiePolicy::Origin => "origin",
            CookiePolicy::Pass => "pass",
            CookiePolicy::Ignore => "ignore",
        };
        self.0.cookies = Some(word.to_string());
        self
    }

    /// Typed escape hatch: edits the policy's file struct.
    pub fn edit(mut self, edit: impl FnOnce(&mut FileRuleCache)) -> Self {
        edit(&mut self.0);
        self
    }
}

/// The image settings of a `resize` rule (its `resize` table). Parameters are templates over
/// the rule's path captures (`"{w}"`) or fixed values (`"1"`).
#[derive(Debug, Clone)]
pub struct Resize(FileRuleResize);

impl Resize {
    /// `source`: where the original is, a path on the rule's pool (`"/{src}"`) or an absolute
    /// URL.
    pub fn new(source: &str) -> Self {
        Resize(FileRuleResize {
            source: source.to_string(),
            ..Default::default()
        })
    }

    /// `width`, in CSS pixels.
    pub fn width(mut self, template: &str) -> Self {
        self.0.width = Some(template.to_string());
        self
    }

    /// `height`, in CSS pixels.
    pub fn height(mut self, template: &str) -> Self {
        self.0.height = Some(template.to_string());
        self
    }

    /// `fit`: `contain`, `cover`, `fill` or an alias.
    pub fn fit(mut self, template: &str) -> Self {
        self.0.fit = Some(template.to_string());
        self
    }

    /// `format`: `jpeg`, `png`, `webp`, `avif` or `auto`.
    pub fn format(mut self, template: &str) -> Self {
        self.0.format = Some(template.to_string());
        self
    }

    /// `quality`, 1 to `max_quality`.
    pub fn quality(mut self, template: &str) -> Self {
        self.0.quality = Some(template.to_string());
        self
    }

    /// Typed escape hatch: edits the settings' file struct (limits, signatures, ...).
    pub fn edit(mut self, edit: impl FnOnce(&mut FileRuleResize)) -> Self {
        edit(&mut self.0);
        self
    }
}

/// The shadowing of a rule (its `shadow` table).
#[derive(Debug, Clone)]
pub struct Shadow(FileRuleShadow);

impl Shadow {
    /// Copies go to each of `pools`, a target named after its pool
    /// (`targets = [{ pool = "..." }, ...]`).
    pub fn to(pools: &[&str]) -> Self {
        Shadow(FileRuleShadow {
            targets: pools
                .iter()
                .map(|p| FileShadowTarget {
                    pool: p.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    /// `secondary`: a pool running the primary's code, whose differences are the noise.
    pub fn secondary(mut self, pool: &str) -> Self {
        self.0.secondary = Some(pool.to_string());
        self
    }

    /// `sample_percent`: the share of matching requests copied, 0 to 100.
    pub fn sample_percent(mut self, percent: f64) -> Self {
        self.0.sample_percent = Some(percent);
        self
    }

    /// Typed escape hatch: edits the shadow's file struct (methods, filters, ignored fields).
    pub fn edit(mut self, edit: impl FnOnce(&mut FileRuleShadow)) -> Self {
        edit(&mut self.0);
        self
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn path_text(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("test paths are UTF-8: {}", path.display()))
        .to_string()
}

/// Keys of the file structs that are not `Option`s but `#[serde(default)]` collections or
/// tables: written empty, they say nothing that leaving them out would not (unlike, say,
/// `upgrades = []`, which is `Some` and means "none").
const DEFAULTED: &[&str] = &[
    "listeners",
    "server",
    "limits",
    "logging",
    "pools",
    "vhosts",
    "backends",
    "headers",
    "rules",
    "request_headers",
    "response_headers",
    "fit_aliases",
    "set",
    "add",
    "remove",
];

/// Drops the empty [`DEFAULTED`] entries the serialised file structs are full of, so that the
/// text shown when a test's configuration is refused holds only what the test set.
fn prune_defaults(table: &mut toml::Table) {
    use toml::Value;
    for (_, value) in table.iter_mut() {
        match value {
            Value::Table(t) => prune_defaults(t),
            Value::Array(items) => {
                for item in items {
                    if let Value::Table(t) = item {
                        prune_defaults(t);
                    }
                }
            }
            _ => {}
        }
    }
    table.retain(|key, value| {
        let empty = match value {
            Value::Table(t) => t.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        !(empty && DEFAULTED.contains(&key))
    });
}

/// Merges `extra` into `base`: tables key by key, arrays of tables appended, other values
/// replaced.
fn merge(base: &mut toml::Table, extra: toml::Table) {
    use toml::Value;
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(e)) => merge(b, e),
            (Some(Value::Array(b)), Value::Array(e))
                if e.iter().all(Value::is_table) && b.iter().all(Value::is_table) =>
            {
                b.extend(e)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
