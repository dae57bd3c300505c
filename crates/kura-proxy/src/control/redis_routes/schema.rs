//! Hipache's Redis schema, read and written: `frontend:<host>` is a list whose first item
//! identifies the application and whose other items are backend URLs; `dead:<host>` is a set of
//! indexes (0-based, among the backends) of backends marked dead, expiring after the dead TTL.
//! `<host>` is an exact name, `*.example.com` or `*`. Parsing is pure so that bad data is
//! tested without a server: a bad item is skipped with a warning naming its key.

use kura_config::{BackendSpec, HostPattern, parse_backend, parse_host_pattern};

/// Prefix of a frontend key (`frontend:<host>`).
pub const FRONTEND_PREFIX: &str = "frontend:";
/// Prefix of a dead-backend set (`dead:<host>`).
pub const DEAD_PREFIX: &str = "dead:";
/// Channel `kura routes` publishes changed keys on, for Redis servers where kura may not
/// turn on keyspace notifications.
pub const CHANNEL: &str = "kura:routes";

/// One frontend as kura will serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// The host pattern the key names.
    pub pattern: HostPattern,
    /// The list's first item: the application's identifier.
    pub id: String,
    /// The list's other items that are valid backend URLs.
    pub backends: Vec<BackendSpec>,
}

/// What a key is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `frontend:<host>`, with the host as written.
    Frontend(String),
    /// `dead:<host>`, with the host as written.
    Dead(String),
}

/// Classifies a key by its prefix; the host part is kept as written.
pub fn classify(key: &str) -> Option<KeyKind> {
    if let Some(h) = key.strip_prefix(FRONTEND_PREFIX) {
        return Some(KeyKind::Frontend(h.to_string()));
    }
    key.strip_prefix(DEAD_PREFIX)
        .map(|h| KeyKind::Dead(h.to_string()))
}

/// The frontend a `frontend:<host>` list describes. `None` for an empty list (a deleted key)
/// or a host that is not a host pattern. Items that are not backend URLs are left out; every
/// problem is returned as a warning that names the key.
pub fn parse_frontend(host: &str, items: &[String]) -> (Option<Frontend>, Vec<String>) {
    let key = format!("{FRONTEND_PREFIX}{host}");
    let mut warnings = Vec::new();
    let Some((id, urls)) = items.split_first() else {
        return (None, warnings);
    };
    let pattern = match parse_host_pattern(host) {
        Ok(p) => p,
        Err(e) => {
            warnings.push(format!("{key}: skipped: {e}"));
            return (None, warnings);
        }
    };
    let mut backends = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        match parse_backend(url.trim()) {
            Ok(b) => backends.push(b),
            Err(e) => warnings.push(format!("{key}: item {} skipped: {e}", i + 1)),
        }
    }
    if backends.is_empty() && !urls.is_empty() {
        warnings.push(format!("{key}: no usable backend; requests get 502"));
    }
    let frontend = Frontend {
        pattern,
        id: id.clone(),
        backends,
    };
    (Some(frontend), warnings)
}

/// Indexes of a `dead:<host>` set; members that are not indexes are ignored with a warning.
pub fn parse_dead(host: &str, members: &[String]) -> (Vec<usize>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for m in members {
        match m.trim().parse::<usize>() {
            Ok(i) => out.push(i),
            Err(_) => warnings.push(format!(
                "{DEAD_PREFIX}{host}: member {m:?} is not a backend index"
            )),
        }
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_hipache_list_becomes_a_frontend() {
        let (f, w) = parse_frontend(
            "www.dotcloud.com",
            &strings(&["mywebsite", "http://192.168.0.42:80", "http://192.168.0.43"]),
        );
        let f = f.unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(f.id, "mywebsite");
        assert_eq!(f.pattern, HostPattern::Exact("www.dotcloud.com".into()));
        assert_eq!(f.backends.len(), 2);
        assert_eq!(f.backends[1].authority, "192.168.0.43:80");
    }

    #[test]
    fn wildcards_and_any_are_patterns() {
        let (f, _) = parse_frontend("*.example.com", &strings(&["id", "http://a:1"]));
        assert_eq!(
            f.unwrap().pattern,
            HostPattern::Wildcard("example.com".into())
        );
        let (f, _) = parse_frontend("*", &strings(&["id", "http://a:1"]));
        assert_eq!(f.unwrap().pattern, HostPattern::Any);
    }

    #[test]
    fn bad_items_are_skipped_with_the_key_named() {
        let (f, w) = parse_frontend(
            "a.com",
            &strings(&["id", "not a url", "http://ok:1", "ftp://x"]),
        );
        assert_eq!(f.unwrap().backends.len(), 1);
        assert_eq!(w.len(), 2);
        assert!(
            w.iter().all(|m| m.starts_with("frontend:a.com: item")),
            "{w:?}"
        );
        let (f, w) = parse_frontend("a b", &strings(&["id", "http://ok:1"]));
        assert!(f.is_none());
        assert!(w[0].contains("frontend:a b"));
    }

    #[test]
    fn empty_lists_and_identifier_only() {
        assert_eq!(parse_frontend("a.com", &[]), (None, vec![]));
        let (f, w) = parse_frontend("a.com", &strings(&["only-id"]));
        assert!(f.unwrap().backends.is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn dead_sets_hold_indexes() {
        let (d, w) = parse_dead("a.com", &strings(&["0", "2", "x"]));
        assert_eq!(d, vec![0, 2]);
        assert_eq!(w.len(), 1);
        assert_eq!(classify("dead:a.com"), Some(KeyKind::Dead("a.com".into())));
        assert_eq!(
            classify("frontend:*.a.com"),
            Some(KeyKind::Frontend("*.a.com".into()))
        );
        assert_eq!(classify("other"), None);
    }
}
