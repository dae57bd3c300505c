//! One rule's shadowing, compiled: which requests are copied (method, path, header, sample),
//! to which targets with which header edits, and under which endpoint name they are reported.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use kura_config::{GroupBy, HeaderEdits, RuleShadow, ShadowConfig};

use crate::compare::CompareOptions;

pub use kura_http::{BoxError, BoxFuture};
/// A streaming response body from a shadow target.
pub type ShadowBody = UnsyncBoxBody<Bytes, BoxError>;

/// Where shadow requests go: implemented by the proxy over its pools (balancing, health,
/// keep-alive), and by tests over anything.
pub trait Upstream: Send + Sync + 'static {
    /// Sends one copy and returns the response with its body still streaming; an error goes
    /// to the debug log and is counted against the target.
    fn send(
        &self,
        req: Request<Bytes>,
    ) -> BoxFuture<'static, Result<Response<ShadowBody>, BoxError>>;
}

/// A candidate backend of a rule.
pub struct Target {
    /// The target's name in reports and metrics, also sent as the marker header's value.
    pub name: Arc<str>,
    /// Where its copies are sent.
    pub upstream: Arc<dyn Upstream>,
    /// Header edits made to its copies only (the target's `request_headers`).
    pub edits: HeaderEdits,
}

/// One rule's shadowing, compiled: selection, targets, comparison options and the rule's own
/// queue and concurrency limits.
pub struct ShadowRule {
    /// The rule's `shadow` settings as configured (filters, sample, grouping, ignore lists).
    pub spec: RuleShadow,
    /// The candidates every selected request is copied to.
    pub targets: Vec<Target>,
    /// The second primary, for noise.
    pub secondary: Option<Arc<dyn Upstream>>,
    /// What comparisons leave out for this rule: the global and the rule's ignored headers (and
    /// the marker), the rule's ignored fields.
    pub compare: Arc<CompareOptions>,
    /// This rule's jobs in progress (`concurrency` permits): each rule has its own, so one
    /// slow target cannot starve the shadows of other rules.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// Jobs admitted and not finished (waiting or in progress), at most `pending_cap`.
    pub(crate) pending: std::sync::atomic::AtomicUsize,
    pub(crate) pending_cap: usize,
}

impl ShadowRule {
    /// Compiles `spec`; `upstream` resolves a pool name (every name was validated).
    pub fn new(
        spec: &RuleShadow,
        global: &ShadowConfig,
        upstream: impl Fn(&str) -> Option<Arc<dyn Upstream>>,
    ) -> Option<ShadowRule> {
        let mut targets = Vec::new();
        for t in &spec.targets {
            targets.push(Target {
                name: t.name.as_str().into(),
                upstream: upstream(&t.pool)?,
                edits: t.request_headers.clone(),
            });
        }
        let secondary = match &spec.secondary {
            Some(p) => Some(upstream(p)?),
            None => None,
        };
        let mut compare = CompareOptions {
            ignore_headers: global.ignore_headers.iter().cloned().collect(),
            ignore_fields: spec.ignore_fields.clone(),
            ..CompareOptions::default()
        };
        compare
            .ignore_headers
            .extend(spec.ignore_headers.iter().cloned());
        // The marker is ours, not the application's.
        compare
            .ignore_headers
            .insert(global.marker_header.as_str().to_string());
        Some(ShadowRule {
            spec: spec.clone(),
            targets,
            secondary,
            compare: Arc::new(compare),
            slots: Arc::new(tokio::sync::Semaphore::new(global.concurrency)),
            pending: std::sync::atomic::AtomicUsize::new(0),
            pending_cap: global.queue + global.concurrency,
        })
    }

    /// Whether a job of this rule would be admitted now (cheap: checked before building one).
    pub fn has_room(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Relaxed) < self.pending_cap
    }

    /// Admits one job, or refuses it when the rule's queue is full.
    pub(crate) fn admit(&self) -> bool {
        use std::sync::atomic::Ordering::AcqRel;
        if self.pending.fetch_add(1, AcqRel) >= self.pending_cap {
            self.pending.fetch_sub(1, AcqRel);
            return false;
        }
        true
    }

    pub(crate) fn done(&self) {
        self.pending
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Whether this request is copied: method, path and header filters, then the sample.
    pub fn selects(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        let s = &self.spec;
        let safe = kura_config::is_safe_method(method);
        if !safe && !s.allow_unsafe {
            return false;
        }
        if !s.methods.is_empty() && !s.methods.contains(method) {
            return false;
        }
        if let Some(re) = &s.path
            && !re.is_match(path)
        {
            return false;
        }
        if let Some((name, value)) = &s.header {
            let Some(v) = headers.get(name) else {
                return false;
            };
            if let Some(re) = value
                && !v.to_str().is_ok_and(|v| re.is_match(v))
            {
                return false;
            }
        }
        sampled(
            s.sample_percent,
            s.sample_by.as_ref().and_then(|h| headers.get(h)),
        )
    }

    /// The endpoint an exchange is reported under.
    pub fn endpoint(&self, method: &Method, path: &str) -> String {
        match self.spec.group_by {
            GroupBy::Rule => format!("{method} {}", self.spec.name),
            GroupBy::Path => format!("{method} {}", path_template(path)),
        }
    }
}

/// In `percent` of cases: by a hash of `key` when there is one (the same key always gets the
/// same answer), else at random.
fn sampled(percent: f64, key: Option<&http::HeaderValue>) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    let point = match key {
        Some(v) => (xxhash_rust::xxh3::xxh3_64(v.as_bytes()) % 1_000_000) as f64,
        None => fastrand::u32(..1_000_000) as f64,
    };
    point < percent * 10_000.0
}

/// The path with ids replaced by `{id}`: segments of digits, UUIDs, and hex strings of 16 or
/// more characters (so `/users/42/orders/9f1c…` groups with every other user's orders).
pub fn path_template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    if seg.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid = seg.len() == 36
        && seg.split('-').map(str::len).eq([8usize, 4, 4, 4, 12])
        && hex(&seg.replace('-', ""));
    uuid || (seg.len() >= 16 && hex(seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_shadow: &str) -> ShadowRule {
        let text = format!(
            r#"
[[listeners]]
address = "127.0.0.1:1"
[pools.p]
backends = ["http://127.0.0.1:2"]
[[vhosts]]
hosts = ["*"]
[[vhosts.rules]]
path = "^/api/"
pool = "p"
[vhosts.rules.shadow]
targets = [{{ pool = "p", name = "v2" }}]
{toml_shadow}
"#
        );
        let c = kura_config::Config::from_toml(&text, std::path::Path::new(".")).unwrap();
        let spec = c.routes.vhosts[0].rules[0]
            .action
            .shadow()
            .cloned()
            .unwrap();
        struct Nowhere;
        impl Upstream for Nowhere {
            fn send(
                &self,
                _: Request<Bytes>,
            ) -> BoxFuture<'static, Result<Response<ShadowBody>, BoxError>> {
                Box::pin(async { Err("nowhere".into()) })
            }
        }
        ShadowRule::new(&spec, &c.shadow, |_| {
            Some(Arc::new(Nowhere) as Arc<dyn Upstream>)
        })
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn unsafe_methods_only_when_allowed() {
        let r = rule("");
        let h = HeaderMap::new();
        assert!(r.selects(&Method::GET, "/api/x", &h));
        assert!(r.selects(&Method::HEAD, "/api/x", &h));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!r.selects(&m, "/api/x", &h), "{m}");
        }
        let r = rule("allow_unsafe = true");
        assert!(r.selects(&Method::POST, "/api/x", &h));
        let r = rule("allow_unsafe = true\nmethods = [\"POST\"]");
        assert!(r.selects(&Method::POST, "/api/x", &h));
        assert!(!r.selects(&Method::GET, "/api/x", &h));
    }

    #[test]
    fn path_and_header_filters() {
        let r =
            rule("path = \"^/api/items\"\nheader = { name = \"x-beta\", value = \"^(1|yes)$\" }");
        let beta = headers(&[("x-beta", "yes")]);
        assert!(r.selects(&Method::GET, "/api/items/1", &beta));
        assert!(!r.selects(&Method::GET, "/api/users/1", &beta));
        assert!(!r.selects(&Method::GET, "/api/items/1", &headers(&[("x-beta", "no")])));
        assert!(!r.selects(&Method::GET, "/api/items/1", &HeaderMap::new()));
        let present = rule("header = { name = \"x-beta\" }");
        assert!(present.selects(&Method::GET, "/api/", &headers(&[("x-beta", "")])));
    }

    #[test]
    fn sampling_hits_the_share_and_a_key_always_decides_the_same() {
        let r = rule("sample_percent = 25");
        let h = HeaderMap::new();
        let n = 20_000;
        let hits = (0..n)
            .filter(|_| r.selects(&Method::GET, "/api/", &h))
            .count();
        let share = hits as f64 / n as f64;
        assert!((0.23..0.27).contains(&share), "{share}");

        let r = rule("sample_percent = 25\nsample_by = \"x-user\"");
        let mut users_in = 0;
        for u in 0..4000 {
            let mut h = HeaderMap::new();
            h.insert("x-user", format!("user-{u}").parse().unwrap());
            let first = r.selects(&Method::GET, "/api/", &h);
            for _ in 0..3 {
                assert_eq!(r.selects(&Method::GET, "/api/", &h), first);
            }
            users_in += first as usize;
        }
        let share = users_in as f64 / 4000.0;
        assert!((0.21..0.29).contains(&share), "{share}");
        assert!(!rule("sample_percent = 0").selects(&Method::GET, "/api/", &h));
    }

    #[test]
    fn endpoints_by_rule_or_by_path_template() {
        let r = rule("name = \"items\"");
        assert_eq!(r.endpoint(&Method::GET, "/api/items/3"), "GET items");
        let r = rule("group_by = \"path\"");
        assert_eq!(
            r.endpoint(
                &Method::PUT,
                "/api/users/42/orders/123e4567-e89b-12d3-a456-426614174000"
            ),
            "PUT /api/users/{id}/orders/{id}"
        );
        assert_eq!(path_template("/a/deadbeefdeadbeef01/b"), "/a/{id}/b");
        assert_eq!(path_template("/v2/items/abc"), "/v2/items/abc");
        assert_eq!(rule("").endpoint(&Method::GET, "/x"), "GET ^/api/");
    }

    #[test]
    fn the_marker_and_configured_headers_are_not_compared() {
        let r = rule("ignore_headers = [\"X-Trace\"]");
        assert!(r.compare.ignore_headers.contains("x-kura-shadow"));
        assert!(r.compare.ignore_headers.contains("x-trace"));
        assert!(r.compare.ignore_headers.contains("date"));
    }
}
