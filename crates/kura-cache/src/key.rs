//! Cache keys.
//!
//! A *primary* key names a resource inside one rule's namespace: [`PrimaryKey`] can only be
//! made by the constructors here, each of which starts the key with the rule's [`RuleId`] and
//! a kind letter, so keys of different rules, and of different kinds within a rule, can never
//! be equal, whatever a client puts in its Host or path:
//!
//! - `u` ([`PrimaryKey::url`]): `scheme://authority/path?query`, the default, exactly the
//!   request kura forwards (the path already normalised by `kura_config::target`);
//! - `t` ([`PrimaryKey::template`]): a rule's key template (Katana's `cache_path`), its path
//!   part normalised (dot segments removed);
//! - `s` ([`PrimaryKey::source`]): an image rule's original; `i` ([`PrimaryKey::image`], or
//!   [`PrimaryKey::variant`] from the rule's template): one of its variants. No client request
//!   maps to these kinds.
//!
//! When a response has `Vary`, each combination of the varying request headers gets a
//! *variant* key: the primary key, a NUL, and the normalised header values. NUL cannot occur
//! in a URL, so a variant key never equals another resource's primary key. Keys are hashed
//! (XXH3-128) only to name files; the full key is stored beside the data and compared on read,
//! so a hash collision is a miss, never a wrong answer.

use std::fmt;

use http::{HeaderMap, HeaderName};

/// Separates the primary key from variant values.
pub const VARIANT_SEP: char = '\0';

/// A rule's stable identity: a hash of what decides which origin answers and how (its vhost,
/// path regex, action, pool, templates and header edits), not of its place in the table or
/// its TTLs. Members of a cluster compare it to refuse a fill for a rule they do not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(pub u64);

impl RuleId {
    /// The identity of a rule described by `spec` (its fields, in a fixed order).
    pub fn of(spec: &[&str]) -> RuleId {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for part in spec {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        RuleId(h.digest())
    }

    /// 16 hex digits, as in keys and the peer protocol.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }

    /// Reads the 16 hex digits [`RuleId::hex`] writes; `None` for anything else.
    pub fn parse(hex: &str) -> Option<RuleId> {
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(RuleId)
    }
}

/// What a primary key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A forwarded request's URL (`u`, [`PrimaryKey::url`]).
    Url,
    /// A rule's expanded key template (`t`, [`PrimaryKey::template`]).
    Template,
    /// An image rule's original (`s`, [`PrimaryKey::source`]).
    Source,
    /// A variant of an image original (`i`, [`PrimaryKey::image`]).
    Image,
}

impl KeyKind {
    fn letter(self) -> char {
        match self {
            KeyKind::Url => 'u',
            KeyKind::Template => 't',
            KeyKind::Source => 's',
            KeyKind::Image => 'i',
        }
    }
}

/// Appends `text`, with NUL (the variant separator) escaped as `%00`, so no primary key can
/// contain it, whatever a caller passes (requests cannot carry NUL today; this keeps the
/// guarantee local to this module).
fn push_clean(k: &mut String, text: &str) {
    if text.contains(VARIANT_SEP) {
        k.push_str(&text.replace(VARIANT_SEP, "%00"));
    } else {
        k.push_str(text);
    }
}

/// A primary cache key: `<rule id>:<kind>:<body>`. Only made here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrimaryKey(String);

impl PrimaryKey {
    fn start(rule: RuleId, kind: KeyKind, body_len: usize) -> String {
        let mut k = String::with_capacity(19 + body_len);
        k.push_str(&rule.hex());
        k.push(':');
        k.push(kind.letter());
        k.push(':');
        k
    }

    /// The key of a URL: the scheme and authority (normalised, default port left out) and the
    /// normalised path and raw query kura forwards.
    pub fn url(rule: RuleId, scheme: &str, authority: &str, path: &str, query: &str) -> Self {
        let mut k = Self::start(
            rule,
            KeyKind::Url,
            scheme.len() + 3 + authority.len() + path.len() + query.len() + 1,
        );
        push_clean(&mut k, scheme);
        k.push_str("://");
        push_clean(&mut k, authority);
        push_clean(&mut k, path);
        if !query.is_empty() {
            k.push('?');
            push_clean(&mut k, query);
        }
        PrimaryKey(k)
    }

    /// The key a rule's template expanded to (its path part normalised). The template says
    /// which parts of the scheme and authority it holds; the proxy forwards no other part
    /// (`kura_config::KeyScope`).
    pub fn template(rule: RuleId, expanded: &str) -> Self {
        let body = normalize_key(expanded);
        let mut k = Self::start(rule, KeyKind::Template, body.len());
        push_clean(&mut k, &body);
        PrimaryKey(k)
    }

    /// An image rule's original, named by where it is fetched from.
    pub fn source(rule: RuleId, id: &str) -> Self {
        let body = normalize_key(id);
        let mut k = Self::start(rule, KeyKind::Source, body.len());
        push_clean(&mut k, &body);
        PrimaryKey(k)
    }

    /// A variant of the original `source` (a key of this rule) with canonical `params`.
    pub fn image(source: &PrimaryKey, params: &str) -> Self {
        let (rule, body) = source.0.split_at(16);
        let body = &body[3..];
        let mut k = String::with_capacity(source.0.len() + 1 + params.len());
        k.push_str(rule);
        k.push_str(":i:");
        k.push_str(body);
        k.push('#');
        push_clean(&mut k, params);
        PrimaryKey(k)
    }

    /// A variant of an image rule's original as the rule's `resize.variant_key` template
    /// expanded (its path part normalised, as [`PrimaryKey::template`]'s).
    pub fn variant(rule: RuleId, expanded: &str) -> Self {
        let body = normalize_key(expanded);
        let mut k = Self::start(rule, KeyKind::Image, body.len());
        push_clean(&mut k, &body);
        PrimaryKey(k)
    }

    /// The raw-key prefix of a rule's keys of `kind` (for purges).
    pub fn prefix(rule: RuleId, kind: KeyKind) -> String {
        Self::start(rule, kind, 0)
    }

    /// The key's text, `<rule id>:<kind>:<body>`, as tiers store and compare it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The rule this key belongs to.
    pub fn rule(&self) -> Option<RuleId> {
        RuleId::parse(self.0.get(..16)?)
    }
}

impl fmt::Display for PrimaryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Normalises the path part of an expanded key template: from its first `/` up to the first
/// `?` after it, dot segments are removed (`a.com/img/../x` is `a.com/x`). Nothing is
/// percent-decoded and the rest is kept as it is.
pub fn normalize_key(key: &str) -> String {
    match key.find('/') {
        None => key.to_string(),
        Some(i) => {
            let (head, rest) = key.split_at(i);
            let (path, query) = match rest.find('?') {
                Some(q) => (&rest[..q], &rest[q..]),
                None => (rest, ""),
            };
            let mut k = String::with_capacity(key.len());
            k.push_str(head);
            k.push_str(&kura_config::target::remove_dot_segments(path));
            k.push_str(query);
            k
        }
    }
}

/// The variant key for a response that varies on `names`, given the request's headers.
pub fn variant_key(primary: &str, names: &[HeaderName], headers: &HeaderMap) -> String {
    let mut k = String::with_capacity(primary.len() + 32 * names.len());
    k.push_str(primary);
    for name in names {
        k.push(VARIANT_SEP);
        k.push_str(name.as_str());
        k.push('=');
        let mut first = true;
        for v in headers.get_all(name) {
            if !first {
                k.push(',');
            }
            first = false;
            // Values are compared as sent, minus surrounding whitespace (RFC 9111 §4.1 allows
            // normalisation; this one keeps semantics intact).
            k.push_str(
                &String::from_utf8_lossy(v.as_bytes())
                    .trim()
                    .replace('\0', ""),
            );
        }
    }
    k
}

/// The primary part of a (possibly variant) key.
pub fn primary_of(key: &str) -> &str {
    key.split(VARIANT_SEP).next().unwrap_or(key)
}

/// 32 hex characters naming the files of `key`.
pub fn hash_hex(key: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
}

/// The header names listed in `Vary` (lowercased), or `None` for `Vary: *` and for a `Vary`
/// with a member that is not a header name (what it varies on is unknown: not storable, rather
/// than stored as if it did not vary).
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for v in headers.get_all(http::header::VARY) {
        let text = v.to_str().ok()?;
        for n in text.split(',') {
            let n = n.trim();
            if n.is_empty() {
                continue;
            }
            if n == "*" {
                return None;
            }
            let h = HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok()?;
            if !names.contains(&h) {
                names.push(h);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_rules_and_kinds_never_meet() {
        let (a, b) = (RuleId::of(&["v", "^/"]), RuleId::of(&["w", "^/"]));
        assert_ne!(a, b);
        assert_ne!(RuleId::of(&["ab", "c"]), RuleId::of(&["a", "bc"]));
        let url = PrimaryKey::url(a, "http", "v.test", "/p", "q=1");
        assert!(url.as_str().ends_with(":u:http://v.test/p?q=1"), "{url}");
        assert_eq!(url.rule(), Some(a));
        assert_ne!(url, PrimaryKey::url(b, "http", "v.test", "/p", "q=1"));
        assert_ne!(url, PrimaryKey::url(a, "https", "v.test", "/p", "q=1"));
        assert_ne!(url, PrimaryKey::url(a, "http", "v.test:1234", "/p", "q=1"));
        // A template that expands to the same text as a URL is another key.
        let t = |x: &str| PrimaryKey::template(a, x);
        assert_ne!(t("http://v.test/p?q=1").as_str(), url.as_str());
        assert!(t("img/1").as_str().ends_with(":t:img/1"));
        let src = PrimaryKey::source(a, "storage/orig/x.jpg");
        assert!(src.as_str().contains(":s:storage/orig/x.jpg"));
        assert_ne!(src, t("storage/orig/x.jpg"));
        let img = PrimaryKey::image(&src, "w300");
        assert!(
            img.as_str().ends_with(":i:storage/orig/x.jpg#w300"),
            "{img}"
        );
        assert_eq!(img.rule(), Some(a));
        let v = PrimaryKey::variant(a, "resized/300/../x.jpg");
        assert!(v.as_str().ends_with(":i:resized/x.jpg"), "{v}");
        assert_ne!(v, t("resized/x.jpg"));
        assert!(
            img.as_str()
                .starts_with(&PrimaryKey::prefix(a, KeyKind::Image))
        );
        assert_eq!(RuleId::parse(&a.hex()), Some(a));
        assert_eq!(RuleId::parse("xyz"), None);
        assert_eq!(RuleId::parse("+123456789abcdef"), None);
        // Found by fuzzing: a NUL in a key's text would let a primary key look like a variant
        // key. Constructors escape it.
        let nul = PrimaryKey::url(a, "http", "v.test", "/a\0b", "q=\0");
        assert!(!nul.as_str().contains(VARIANT_SEP));
        assert_eq!(primary_of(nul.as_str()), nul.as_str());
        assert!(
            !PrimaryKey::template(a, "x\0y")
                .as_str()
                .contains(VARIANT_SEP)
        );
    }

    #[test]
    fn template_keys_are_normalised_after_the_host() {
        assert_eq!(
            normalize_key("a.com/img/../secret?x=/.."),
            "a.com/secret?x=/.."
        );
        assert_eq!(normalize_key("bare"), "bare");
    }

    #[test]
    fn variant_keys_differ_by_values_and_never_equal_a_primary() {
        let names = vec![HeaderName::from_static("accept-encoding")];
        let mut h = HeaderMap::new();
        h.insert("accept-encoding", " gzip ".parse().unwrap());
        let gz = variant_key("a.com/x", &names, &h);
        h.insert("accept-encoding", "br".parse().unwrap());
        let br = variant_key("a.com/x", &names, &h);
        assert_ne!(gz, br);
        assert!(gz.contains(VARIANT_SEP));
        assert_eq!(primary_of(&gz), "a.com/x");
        h.clear();
        let none = variant_key("a.com/x", &names, &h);
        assert_ne!(none, gz);
    }

    #[test]
    fn vary_parsing() {
        let mut h = HeaderMap::new();
        h.append("vary", "Accept-Encoding, accept-language".parse().unwrap());
        h.append("vary", "accept-encoding".parse().unwrap());
        let names = vary_names(&h).unwrap();
        assert_eq!(names.len(), 2);
        h.append("vary", "*".parse().unwrap());
        assert!(vary_names(&h).is_none());
        let mut bad = HeaderMap::new();
        bad.append("vary", "accept, a b".parse().unwrap());
        assert!(vary_names(&bad).is_none());
        assert_eq!(vary_names(&HeaderMap::new()).unwrap().len(), 0);
    }

    #[test]
    fn hashes_are_stable_hex() {
        let h = hash_hex("a.com/x");
        assert_eq!(h.len(), 32);
        assert_eq!(h, hash_hex("a.com/x"));
        assert_ne!(h, hash_hex("a.com/y"));
    }
}
