//! The compiled route table: host → vhost → first matching rule → pool.
//!
//! Built from [`kura_config::Routes`] with every pool reference resolved to an `Arc<Pool>`, then
//! swapped in whole; the request path only reads it. Host lookup is Hipache's: the exact host,
//! then `*.` wildcards from the most specific suffix to the least (`a.b.example.com` tries
//! `*.b.example.com`, `*.example.com`, `*.com`), then `*`. All are hash lookups. Frontends
//! from Redis live in a second [`HostMap`] swapped on its own; [`lookup`] walks both level by
//! level, the file's entry first at each level.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kura_cache::Origin;
use kura_cache::key::{PrimaryKey, RuleId};
use kura_config::target::TargetError;
use kura_config::{
    Action, HeaderEdits, HostPattern, Routes, RuleCache, ShadowConfig, Template, Vars,
};
use kura_shadow::{ShadowRule, Upstream};
use regex::Regex;

use crate::metrics::VHostCounters;
use crate::origin::PoolOrigin;
use crate::resize_action::{ResizeArgs, ResizeRuntime};
use crate::shadow_action::PoolUpstream;
use crate::upstream::Pool;

pub struct Rule {
    /// What of the request's scheme and authority the rule's cache key holds, and so may be
    /// forwarded (everything, unless a key template leaves parts out).
    pub scope: kura_config::KeyScope,
    /// Stable identity (vhost, regex, action, pool, templates, header edits): namespaces the
    /// rule's cache keys and names the rule to cluster peers.
    pub id: RuleId,
    pub path: Regex,
    pub action: Action,
    pub pool: Arc<Pool>,
    pub rewrite: Option<Template>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// The caching policy, for `cache` rules.
    pub cache: Option<Arc<RuleCache>>,
    /// The pool as the cache's origin (made once per table, not per request).
    pub origin: Arc<dyn Origin>,
    /// Shadowing of the rule's requests, if configured.
    pub shadow: Option<Arc<ShadowRule>>,
    /// Image settings and transform pool, for `resize` rules.
    pub resize: Option<Arc<ResizeRuntime>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The regex must run with captures (a rewrite or a key template uses them).
    needs_captures: bool,
    /// `Upgrade` protocols relayed (lowercase); other upgrade requests are plain requests.
    pub upgrades: Vec<String>,
}

pub struct VHost {
    /// Label for logs and metrics.
    pub name: Arc<str>,
    pub counters: VHostCounters,
    pub hosts: Vec<HostPattern>,
    pub rules: Vec<Rule>,
}

/// A matched rule, the rewritten path (when the rule rewrites; query not included) and the
/// cache key (for `cache` rules).
pub struct Matched<'a> {
    pub rule: &'a Rule,
    pub rewritten: Option<String>,
    pub cache_key: Option<PrimaryKey>,
    /// For `resize` rules: the source and parameters from the path.
    pub resize: Option<ResizeArgs>,
}

/// What routing reads of a request: its template variables (normalised path) and the scheme
/// and authority its default cache key holds.
pub struct RouteInput<'a> {
    pub vars: Vars<'a>,
    pub scheme: &'a str,
    pub authority: &'a str,
}

impl VHost {
    /// The first rule whose regex matches the path, with its templates expanded. A capture
    /// that would escape its template's prefix is an error (400), not a match.
    pub fn route(&self, input: &RouteInput<'_>) -> Result<Option<Matched<'_>>, TargetError> {
        let vars = &input.vars;
        for rule in &self.rules {
            if !rule.needs_captures {
                if rule.path.is_match(vars.path) {
                    return Ok(Some(Matched {
                        rule,
                        rewritten: None,
                        cache_key: cache_key(rule, None, input)?,
                        resize: None,
                    }));
                }
                continue;
            }
            if let Some(caps) = rule.path.captures(vars.path) {
                return Ok(Some(Matched {
                    rule,
                    rewritten: match &rule.rewrite {
                        Some(t) => Some(t.expand_checked(Some(&caps), vars)?),
                        None => None,
                    },
                    cache_key: cache_key(rule, Some(&caps), input)?,
                    resize: match &rule.resize {
                        Some(r) => Some(crate::resize_action::args(&r.cfg, &caps, vars)?),
                        None => None,
                    },
                }));
            }
        }
        Ok(None)
    }
}

/// The primary cache key of a `cache` rule: its template's, or the URL's.
fn cache_key(
    rule: &Rule,
    caps: Option<&regex::Captures<'_>>,
    input: &RouteInput<'_>,
) -> Result<Option<PrimaryKey>, TargetError> {
    let Some(c) = rule
        .cache
        .as_deref()
        .filter(|_| rule.action == Action::Cache)
    else {
        return Ok(None);
    };
    let v = &input.vars;
    Ok(Some(match &c.key {
        Some(t) => PrimaryKey::template(rule.id, &t.expand_checked(caps, v)?),
        None => PrimaryKey::url(rule.id, input.scheme, input.authority, v.path, v.query),
    }))
}

impl Rule {
    /// A rule proxying every path to `pool` (a Redis frontend's only rule).
    pub fn proxy_all(pool: Arc<Pool>, every_path: Regex) -> Self {
        Rule {
            scope: kura_config::KeyScope::ALL,
            id: RuleId::of(&["redis", &pool.spec.name]),
            path: every_path,
            action: Action::Proxy,
            origin: Arc::new(PoolOrigin(pool.clone())),
            pool,
            rewrite: None,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            cache: None,
            shadow: None,
            resize: None,
            metrics: None,
            needs_captures: false,
            upgrades: kura_config::DEFAULT_UPGRADES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// The part of an `Upgrade` list this rule relays (its allowed protocols, in the client's
    /// order), or `None` when it relays none of them. Only that part is sent upstream, so a
    /// backend cannot pick a protocol the rule does not allow (`websocket, h2c`).
    pub fn allowed_upgrade(&self, value: &http::HeaderValue) -> Option<http::HeaderValue> {
        let allowed: Vec<&str> = value
            .to_str()
            .ok()?
            .split(',')
            .map(str::trim)
            .filter(|t| self.relays_protocol(t))
            .collect();
        if allowed.is_empty() {
            return None;
        }
        http::HeaderValue::from_str(&allowed.join(", ")).ok()
    }

    /// Whether `token` (`websocket`, `foo/2`) names a protocol this rule relays.
    pub fn relays_protocol(&self, token: &str) -> bool {
        let name = token
            .trim()
            .split('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        !name.is_empty() && self.upgrades.contains(&name)
    }

    /// The metrics registry pools made for this rule report to.
    pub fn pool_metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.metrics
            .clone()
            .unwrap_or_else(|| Arc::new(crate::metrics::Metrics::new()))
    }
}

/// A rule's identity from what decides which origin answers it and how.
fn rule_id(vhost: &str, r: &kura_config::RuleSpec) -> RuleId {
    let t = |t: &Option<Template>| t.as_ref().map(|t| t.source().to_string());
    RuleId::of(&[
        vhost,
        r.path.as_str(),
        &format!("{:?}", r.action),
        &r.pool,
        &t(&r.rewrite).unwrap_or_default(),
        &t(&r.cache.as_ref().and_then(|c| c.key.clone())).unwrap_or_default(),
        &r.resize
            .as_ref()
            .map(|z| z.source.source().to_string())
            .unwrap_or_default(),
        &format!("{:?}", r.request_headers),
    ])
}

/// Host patterns → vhosts.
#[derive(Default)]
pub struct HostMap {
    exact: HashMap<String, Arc<VHost>>,
    wildcard: HashMap<String, Arc<VHost>>,
    any: Option<Arc<VHost>>,
}

impl HostMap {
    /// Adds `vhost` under `pattern` unless the pattern is taken; false if it was.
    pub fn insert(&mut self, pattern: &HostPattern, vhost: Arc<VHost>) -> bool {
        match pattern {
            HostPattern::Exact(name) => insert_new(&mut self.exact, name, vhost),
            HostPattern::Wildcard(suffix) => insert_new(&mut self.wildcard, suffix, vhost),
            HostPattern::Any if self.any.is_none() => {
                self.any = Some(vhost);
                true
            }
            HostPattern::Any => false,
        }
    }

    /// Host patterns in the map.
    pub fn count(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.any.is_some())
    }

    /// Every vhost of the map (each pattern's; a vhost under two patterns comes twice).
    pub fn vhosts(&self) -> impl Iterator<Item = &Arc<VHost>> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.any.iter())
    }
}

fn insert_new(map: &mut HashMap<String, Arc<VHost>>, key: &str, vhost: Arc<VHost>) -> bool {
    if map.contains_key(key) {
        return false;
    }
    map.insert(key.to_string(), vhost);
    true
}

/// The vhost for `host` (lowercase, without port) in `file` then `dynamic`, most specific
/// pattern first.
pub fn lookup<'a>(file: &'a HostMap, dynamic: &'a HostMap, host: &str) -> Option<&'a Arc<VHost>> {
    if let Some(v) = file.exact.get(host).or_else(|| dynamic.exact.get(host)) {
        return Some(v);
    }
    if !file.wildcard.is_empty() || !dynamic.wildcard.is_empty() {
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(v) = file
                .wildcard
                .get(rest)
                .or_else(|| dynamic.wildcard.get(rest))
            {
                return Some(v);
            }
        }
    }
    file.any.as_ref().or(dynamic.any.as_ref())
}

#[derive(Default)]
pub struct RouteTable {
    pub hosts: HostMap,
    pub vhosts: Vec<Arc<VHost>>,
    pub pools: BTreeMap<String, Arc<Pool>>,
}

impl RouteTable {
    /// Compiles `routes`, taking pools from `pools` (which must hold every pool `routes` names).
    /// `shadow` is the running shadow engine's settings (they change only with a restart).
    pub fn build(
        routes: &Routes,
        pools: &BTreeMap<String, Arc<Pool>>,
        shadow: &ShadowConfig,
        cluster: Option<&Arc<kura_cluster::Cluster>>,
        metrics: Option<&Arc<crate::metrics::Metrics>>,
    ) -> Result<Self, String> {
        let mut table = RouteTable {
            pools: pools.clone(),
            ..Default::default()
        };
        for v in &routes.vhosts {
            let mut rules = Vec::with_capacity(v.rules.len());
            for r in &v.rules {
                let pool = pools
                    .get(&r.pool)
                    .ok_or_else(|| format!("vhost {:?}: unknown pool {:?}", v.name, r.pool))?;
                let key_captures = r
                    .cache
                    .as_ref()
                    .and_then(|c| c.key.as_ref())
                    .is_some_and(|t| t.uses_captures());
                let shadow = match &r.shadow {
                    None => None,
                    Some(spec) => Some(Arc::new(
                        ShadowRule::new(spec, shadow, |name| {
                            pools
                                .get(name)
                                .map(|p| Arc::new(PoolUpstream(p.clone())) as Arc<dyn Upstream>)
                        })
                        .ok_or_else(|| format!("vhost {:?}: unknown shadow pool", v.name))?,
                    )),
                };
                let id = rule_id(&v.name, r);
                rules.push(Rule {
                    scope: r
                        .cache
                        .as_ref()
                        .filter(|_| r.action == Action::Cache)
                        .and_then(|c| c.key.as_ref())
                        .map_or(kura_config::KeyScope::ALL, |t| t.scope()),
                    id,
                    path: r.path.clone(),
                    action: r.action,
                    pool: pool.clone(),
                    rewrite: r.rewrite.clone(),
                    request_headers: r.request_headers.clone(),
                    response_headers: r.response_headers.clone(),
                    cache: r.cache.clone().map(Arc::new),
                    origin: {
                        let local: Arc<dyn Origin> = Arc::new(PoolOrigin(pool.clone()));
                        match cluster {
                            Some(c) if r.action == Action::Cache => c.origin(local, id),
                            _ => local,
                        }
                    },
                    shadow,
                    resize: match &r.resize {
                        Some(cfg) => Some(Arc::new(
                            ResizeRuntime::new(cfg, metrics)
                                .map_err(|e| format!("vhost {:?}: resize: {e}", v.name))?,
                        )),
                        None => None,
                    },
                    metrics: metrics.cloned(),
                    needs_captures: r.rewrite.is_some() || key_captures || r.resize.is_some(),
                    upgrades: r.upgrades.clone(),
                });
            }
            let name: Arc<str> = v.name.as_str().into();
            let vhost = Arc::new(VHost {
                counters: VHostCounters::new(name.clone()),
                name,
                hosts: v.hosts.clone(),
                rules,
            });
            for h in &v.hosts {
                // Validation refused a host listed twice.
                table.hosts.insert(h, vhost.clone());
            }
            table.vhosts.push(vhost);
        }
        Ok(table)
    }

    /// The vhost for `host` among the file's vhosts only.
    pub fn lookup(&self, host: &str) -> Option<&Arc<VHost>> {
        static NONE: std::sync::LazyLock<HostMap> = std::sync::LazyLock::new(HostMap::default);
        lookup(&self.hosts, &NONE, host)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::metrics::Metrics;

    fn table(toml: &str) -> RouteTable {
        let cfg = kura_config::Config::from_toml(toml, Path::new(".")).unwrap();
        let metrics = Arc::new(Metrics::new());
        let pools = cfg
            .routes
            .pools
            .iter()
            .map(|(k, v)| (k.clone(), Pool::new(v.clone(), metrics.clone(), 1)))
            .collect();
        RouteTable::build(&cfg.routes, &pools, &cfg.shadow, None, None).unwrap()
    }

    const HOSTS: &str = r#"
[[listeners]]
address = "127.0.0.1:0"
[pools.p]
backends = ["http://127.0.0.1:1"]
[[vhosts]]
name = "exact"
hosts = ["a.example.com"]
pool = "p"
[[vhosts]]
name = "deep"
hosts = ["*.b.example.com"]
pool = "p"
[[vhosts]]
name = "wild"
hosts = ["*.example.com"]
pool = "p"
[[vhosts]]
name = "any"
hosts = ["*"]
pool = "p"
"#;

    #[test]
    fn most_specific_host_wins() {
        let t = table(HOSTS);
        let name = |h: &str| t.lookup(h).map(|v| v.name.to_string());
        assert_eq!(name("a.example.com").unwrap(), "exact");
        assert_eq!(name("x.a.example.com").unwrap(), "wild");
        assert_eq!(name("x.b.example.com").unwrap(), "deep");
        assert_eq!(name("y.x.b.example.com").unwrap(), "deep");
        assert_eq!(name("b.example.com").unwrap(), "wild");
        assert_eq!(name("example.com").unwrap(), "any");
        assert_eq!(name("other.org").unwrap(), "any");
    }

    #[tokio::test]
    async fn first_matching_rule_wins_and_rewrites() {
        let t = table(
            r#"
[[listeners]]
address = "127.0.0.1:0"
[pools.api]
backends = ["http://127.0.0.1:1"]
[pools.web]
backends = ["http://127.0.0.1:2"]
[[vhosts]]
hosts = ["x.com"]
pool = "web"
[[vhosts.rules]]
path = "^/api/v(?P<v>[0-9]+)/(?P<rest>.*)$"
pool = "api"
rewrite = "/{rest}?version={v}"
[[vhosts.rules]]
path = "^/api/"
pool = "web"
"#,
        );
        let v = t.lookup("x.com").unwrap();
        let route = |path: &'static str| {
            v.route(&RouteInput {
                vars: Vars {
                    path,
                    ..Vars::default()
                },
                scheme: "http",
                authority: "x.com",
            })
            .unwrap()
            .unwrap()
        };
        let m = route("/api/v2/users/7");
        assert_eq!(m.rule.pool.spec.name, "api");
        assert_eq!(m.rewritten.as_deref(), Some("/users/7?version=2"));
        let m = route("/api/other");
        assert_eq!(m.rule.pool.spec.name, "web");
        assert!(m.rewritten.is_none());
        // The vhost's pool is the fallback after its rules.
        assert_eq!(route("/").rule.pool.spec.name, "web");
        assert!(t.lookup("y.com").is_none());
    }
}
