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

use http::HeaderMap;
use http::header;
use kura_cache::key::{KeyKind, PrimaryKey, RuleId};
use kura_cache::{Cache, Origin};
use kura_config::target::TargetError;
use kura_config::{HeaderEdits, HostPattern, KeyScope, Routes, ShadowConfig, Template, Vars};
use kura_shadow::{ShadowRule, Upstream};
use regex::Regex;

use crate::action::resize::ResizeArgs;
use crate::action::shadow::PoolUpstream;
use crate::action::{CacheAction, ProxyAction, ResizeAction, RuleAction};
use crate::control::metrics::{Metrics, VHostCounters};
use crate::route::target::{ClientTarget, ParsedUrl};
use crate::upstream::Pool;
use crate::upstream::origin::PoolOrigin;

/// One rule of a vhost: which paths it takes, where they go, how they are rewritten and
/// edited, and its action.
pub struct Rule {
    /// Stable identity (vhost, regex, action, pool, templates, header edits): namespaces the
    /// rule's cache keys and names the rule to cluster peers.
    pub id: RuleId,
    /// What of the request's scheme and authority the rule's cache key holds, and so may be
    /// forwarded (everything, unless a key template leaves parts out).
    pub scope: KeyScope,
    pub path: Regex,
    pub pool: Arc<Pool>,
    pub rewrite: Option<Template>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// `Upgrade` protocols relayed (lowercase); other upgrade requests are plain requests.
    pub upgrades: Vec<String>,
    pub action: RuleAction,
    /// The regex must run with captures (a rewrite or a template uses them).
    needs_captures: bool,
}

pub struct VHost {
    /// Label for logs and metrics.
    pub name: Arc<str>,
    pub counters: Arc<VHostCounters>,
    pub hosts: Vec<HostPattern>,
    pub rules: Vec<Rule>,
}

/// What the matched rule's action will do with this request, with what routing made of it.
pub enum Plan<'a> {
    Proxy(&'a ProxyAction),
    /// A cache rule and the request's primary key.
    Cache(&'a Arc<CacheAction>, PrimaryKey),
    /// An image rule and the source and parameters from the path.
    Resize(&'a Arc<ResizeAction>, Box<ResizeArgs>),
}

/// A matched rule, the rewritten path (when the rule rewrites; query not included) and its
/// action's plan.
pub struct Matched<'a> {
    pub rule: &'a Rule,
    pub rewritten: Option<String>,
    pub plan: Plan<'a>,
}

impl Matched<'_> {
    /// The cache key, for a cache rule.
    pub fn cache_key(self) -> Option<PrimaryKey> {
        match self.plan {
            Plan::Cache(_, key) => Some(key),
            _ => None,
        }
    }
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
                        plan: rule.plan(None, input)?,
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
                    plan: rule.plan(Some(&caps), input)?,
                }));
            }
        }
        Ok(None)
    }

    /// Keys to invalidate after an unsafe request answered with `resp_headers`: those of
    /// `Location` / `Content-Location` when they point at the same host (RFC 9111 §4.4).
    pub fn related_keys(&self, t: &ClientTarget, resp_headers: &HeaderMap) -> Vec<PrimaryKey> {
        let mut keys = Vec::new();
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(loc) = resp_headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let Ok(uri) = loc.parse::<http::Uri>() else {
                continue;
            };
            if let Some(h) = uri.host()
                && !h.eq_ignore_ascii_case(&t.host)
            {
                continue;
            }
            let Ok(path) = kura_config::target::normalize_path(uri.path()) else {
                continue;
            };
            let input = RouteInput {
                vars: t.vars(&path, uri.query().unwrap_or("")),
                scheme: t.scheme,
                authority: &t.authority,
            };
            if let Ok(Some(m)) = self.route(&input)
                && let Some(k) = m.cache_key()
            {
                keys.push(k);
            }
        }
        keys
    }
}

impl Rule {
    /// A rule proxying every path to `pool` (a Redis frontend's only rule).
    pub fn proxy_all(pool: Arc<Pool>, every_path: Regex) -> Self {
        Rule {
            id: RuleId::of(&["redis", &pool.spec.name]),
            scope: KeyScope::ALL,
            path: every_path,
            pool,
            rewrite: None,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            upgrades: kura_config::DEFAULT_UPGRADES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            action: RuleAction::Proxy(ProxyAction { shadow: None }),
            needs_captures: false,
        }
    }

    /// The action's plan for a request whose path matched (with `caps`, when captured).
    fn plan<'a>(
        &'a self,
        caps: Option<&regex::Captures<'_>>,
        input: &RouteInput<'_>,
    ) -> Result<Plan<'a>, TargetError> {
        Ok(match &self.action {
            RuleAction::Proxy(p) => Plan::Proxy(p),
            RuleAction::Cache(c) => {
                let key = c.key(self.id, caps, &input.vars, input.scheme, input.authority)?;
                Plan::Cache(c, key)
            }
            RuleAction::Resize(r) => Plan::Resize(r, Box::new(r.args(caps, &input.vars)?)),
        })
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

    /// The cache action, for a cache rule.
    pub fn cache(&self) -> Option<&Arc<CacheAction>> {
        match &self.action {
            RuleAction::Cache(c) => Some(c),
            _ => None,
        }
    }
}

/// A rule's identity from what decides which origin answers it and how.
fn rule_id(vhost: &str, r: &kura_config::RuleSpec) -> RuleId {
    let t = |t: Option<&Template>| t.map(|t| t.source().to_string());
    RuleId::of(&[
        vhost,
        r.path.as_str(),
        &format!("{:?}", r.action.kind()),
        &r.pool,
        &t(r.rewrite.as_ref()).unwrap_or_default(),
        &t(r.action.cache().and_then(|c| c.key.as_ref())).unwrap_or_default(),
        &t(r.action.resize().map(|z| &z.source)).unwrap_or_default(),
        &t(r.action.resize().and_then(|z| z.variant_key.as_ref())).unwrap_or_default(),
        &t(r.action.resize().and_then(|z| z.source_key.as_ref())).unwrap_or_default(),
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

/// What a route table is built with besides the routes: the server's parts that actions
/// hold (they change only with a restart).
pub struct Parts<'a> {
    pub cache: &'a Arc<Cache>,
    /// The running shadow engine's settings.
    pub shadow: &'a ShadowConfig,
    pub cluster: Option<&'a Arc<kura_cluster::Cluster>>,
    pub metrics: &'a Arc<Metrics>,
}

impl RouteTable {
    /// Compiles `routes`, taking pools from `pools` (which must hold every pool `routes` names)
    /// and building each rule's action once.
    pub fn build(
        routes: &Routes,
        pools: &BTreeMap<String, Arc<Pool>>,
        parts: &Parts<'_>,
    ) -> Result<Self, BuildError> {
        let mut table = RouteTable {
            pools: pools.clone(),
            ..Default::default()
        };
        for v in &routes.vhosts {
            let mut rules = Vec::with_capacity(v.rules.len());
            for r in &v.rules {
                let pool = pools.get(&r.pool).ok_or_else(|| BuildError::UnknownPool {
                    vhost: v.name.clone(),
                    pool: r.pool.clone(),
                })?;
                let id = rule_id(&v.name, r);
                let action = build_action(r, id, pool, pools, parts).map_err(|cause| {
                    BuildError::Action {
                        vhost: v.name.clone(),
                        cause,
                    }
                })?;
                let key = r.action.cache().and_then(|c| c.key.as_ref());
                let scope = match (&action, key) {
                    (RuleAction::Cache(_), Some(t)) => t.scope(),
                    _ => KeyScope::ALL,
                };
                let needs_captures = r.rewrite.is_some()
                    || key.is_some_and(|t| t.uses_captures())
                    || matches!(action, RuleAction::Resize(_));
                rules.push(Rule {
                    id,
                    scope,
                    path: r.path.clone(),
                    pool: pool.clone(),
                    rewrite: r.rewrite.clone(),
                    request_headers: r.request_headers.clone(),
                    response_headers: r.response_headers.clone(),
                    upgrades: r.upgrades.clone(),
                    action,
                    needs_captures,
                });
            }
            let name: Arc<str> = v.name.as_str().into();
            let vhost = Arc::new(VHost {
                counters: Arc::new(VHostCounters::new(name.clone())),
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

    /// The cache key a URL maps to under these routes (admin purge by URL).
    pub fn key_for_url(&self, url: &str) -> Option<PrimaryKey> {
        let u = ParsedUrl::parse(url)?;
        let vhost = self.lookup(&u.host)?;
        let input = RouteInput {
            vars: u.vars(),
            scheme: u.scheme,
            authority: &u.authority,
        };
        vhost.route(&input).ok()??.cache_key()
    }

    /// The keys whose text is `key` in every rule that stores: a cache rule's template key, an
    /// image rule's original and variant (templated or default). Each is made by the same
    /// constructor as the rule's own keys, so it is normalised the same way and stays in the
    /// rule's namespace (admin purge by key).
    pub fn keys_named(&self, key: &str) -> Vec<PrimaryKey> {
        let mut keys = Vec::new();
        for rule in self.vhosts.iter().flat_map(|v| &v.rules) {
            match &rule.action {
                RuleAction::Cache(_) => keys.push(PrimaryKey::template(rule.id, key)),
                RuleAction::Resize(_) => {
                    keys.push(PrimaryKey::source(rule.id, key));
                    keys.push(PrimaryKey::variant(rule.id, key));
                }
                RuleAction::Proxy(_) => {}
            }
        }
        keys
    }

    /// The raw key prefixes that `prefix` names in every rule that stores: URL keys starting
    /// with it (`host/path` matches both schemes; `https://host/path` one) and template keys
    /// starting with it, and an image rule's originals and variants starting with it.
    pub fn purge_prefixes(&self, prefix: &str) -> Vec<String> {
        let mut raw = Vec::new();
        for vhost in &self.vhosts {
            for rule in &vhost.rules {
                if let RuleAction::Resize(_) = rule.action {
                    for kind in [KeyKind::Source, KeyKind::Image] {
                        raw.push(format!("{}{prefix}", PrimaryKey::prefix(rule.id, kind)));
                    }
                    continue;
                }
                if rule.cache().is_none() {
                    continue;
                }
                let url = PrimaryKey::prefix(rule.id, KeyKind::Url);
                if prefix.starts_with("http://") || prefix.starts_with("https://") {
                    raw.push(format!("{url}{prefix}"));
                } else {
                    raw.push(format!("{url}http://{prefix}"));
                    raw.push(format!("{url}https://{prefix}"));
                }
                raw.push(format!(
                    "{}{prefix}",
                    PrimaryKey::prefix(rule.id, KeyKind::Template)
                ));
            }
        }
        raw.sort();
        raw.dedup();
        raw
    }
}

/// Why a route table could not be built from validated routes (a pool missing from the
/// running set, a rule's action that cannot be made); the running table stays.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A rule names a pool the table was not given.
    #[error("vhost {vhost:?}: unknown pool {pool:?}")]
    UnknownPool {
        /// The vhost's name.
        vhost: String,
        /// The pool the rule names.
        pool: String,
    },
    /// A rule's action could not be made.
    #[error("vhost {vhost:?}: {cause}")]
    Action {
        /// The vhost's name.
        vhost: String,
        /// What went wrong.
        cause: ActionError,
    },
}

/// Why one rule's action could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A shadow target names a pool that does not exist.
    #[error("a shadow target names an unknown pool")]
    UnknownShadowPool,
    /// The resize rule's signature keys are unusable.
    #[error("resize signature: {0}")]
    Signature(kura_image::SignerError),
}

/// A rule's action, made once per table with what it owns.
fn build_action(
    r: &kura_config::RuleSpec,
    id: RuleId,
    pool: &Arc<Pool>,
    pools: &BTreeMap<String, Arc<Pool>>,
    parts: &Parts<'_>,
) -> Result<RuleAction, ActionError> {
    let local: Arc<dyn Origin> = Arc::new(PoolOrigin(pool.clone()));
    Ok(match &r.action {
        kura_config::RuleAction::Proxy { shadow } => {
            let shadow = match shadow {
                None => None,
                Some(spec) => Some(Arc::new(
                    ShadowRule::new(spec, parts.shadow, |name| {
                        pools
                            .get(name)
                            .map(|p| Arc::new(PoolUpstream(p.clone())) as Arc<dyn Upstream>)
                    })
                    .ok_or(ActionError::UnknownShadowPool)?,
                )),
            };
            RuleAction::Proxy(ProxyAction { shadow })
        }
        kura_config::RuleAction::Cache(policy) => RuleAction::Cache(Arc::new(CacheAction {
            cache: parts.cache.clone(),
            policy: Arc::new(policy.clone()),
            origin: match parts.cluster {
                Some(c) => c.origin(local, id),
                None => local,
            },
        })),
        kura_config::RuleAction::Resize { cache, resize } => RuleAction::Resize(Arc::new(
            ResizeAction::new(
                parts.cache.clone(),
                id,
                resize,
                cache,
                pool.clone(),
                local,
                parts.metrics.clone(),
            )
            .map_err(ActionError::Signature)?,
        )),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::control::metrics::Metrics;

    async fn table(toml: &str) -> RouteTable {
        let cfg = kura_config::Config::from_toml(toml, Path::new(".")).unwrap();
        let metrics = Arc::new(Metrics::new());
        let pools = cfg
            .routes
            .pools
            .iter()
            .map(|(k, v)| (k.clone(), Pool::new(v.clone(), metrics.clone(), 1)))
            .collect();
        let cache = Cache::open(&cfg.cache).await.unwrap();
        let parts = Parts {
            cache: &cache,
            shadow: &cfg.shadow,
            cluster: None,
            metrics: &metrics,
        };
        RouteTable::build(&cfg.routes, &pools, &parts).unwrap()
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

    #[tokio::test]
    async fn most_specific_host_wins() {
        let t = table(HOSTS).await;
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
        )
        .await;
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
