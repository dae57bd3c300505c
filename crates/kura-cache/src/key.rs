//! Cache keys.
//!
//! A *primary* key names a resource (by default `host/path?query`, or a rule's template, Katana's
//! `cache_path`). Its path is normalised (dot segments removed, as RFC 3986 §5.2.4) so that
//! `/a/../b` and `/b` share an entry and no key can climb out of a template's prefix. When a
//! response has `Vary`, each combination of the varying request headers gets a *variant* key:
//! the primary key, a NUL, and the normalised header values. NUL cannot occur in a URL, so a
//! variant key never equals another resource's primary key. Keys are hashed (XXH3-128) only to
//! name files; the full key is stored beside the data and compared on read, so a hash
//! collision is a miss, never a wrong answer.

use http::{HeaderMap, HeaderName};

/// Separates the primary key from variant values.
pub const VARIANT_SEP: char = '\0';

/// The default primary key: `host` + normalised `path` + `?query` (when there is one).
pub fn default_key(host: &str, path: &str, query: Option<&str>) -> String {
    let mut k = String::with_capacity(host.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    k.push_str(host);
    push_normalized_path(&mut k, path);
    if let Some(q) = query
        && !q.is_empty()
    {
        k.push('?');
        k.push_str(q);
    }
    k
}

/// Normalises the path part of an expanded key template: everything after the first `/`.
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
            push_normalized_path(&mut k, path);
            k.push_str(query);
            k
        }
    }
}

/// Appends `path` with `.` and `..` segments resolved (never above the root).
fn push_normalized_path(out: &mut String, path: &str) {
    if !path.split('/').any(|s| s == "." || s == "..") {
        out.push_str(path);
        return;
    }
    let mut segs: Vec<&str> = Vec::new();
    for s in path.split('/').skip(1) {
        match s {
            "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    // A trailing dot segment leaves a directory path.
    let trailing = path.ends_with("/.") || path.ends_with("/..");
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if segs.is_empty() || trailing {
        out.push('/');
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

/// The header names listed in `Vary` (lowercased), or `None` for `Vary: *`.
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for v in headers.get_all(http::header::VARY) {
        for n in String::from_utf8_lossy(v.as_bytes()).split(',') {
            let n = n.trim();
            if n.is_empty() {
                continue;
            }
            if n == "*" {
                return None;
            }
            if let Ok(h) = HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
                && !names.contains(&h)
            {
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
    fn default_keys_normalise_dot_segments() {
        assert_eq!(default_key("a.com", "/x/y", Some("q=1")), "a.com/x/y?q=1");
        assert_eq!(default_key("a.com", "/x/../y", None), "a.com/y");
        assert_eq!(
            default_key("a.com", "/../../etc/passwd", None),
            "a.com/etc/passwd"
        );
        assert_eq!(default_key("a.com", "/a/./b/", Some("")), "a.com/a/b/");
        assert_eq!(default_key("a.com", "/a/b/..", None), "a.com/a/");
        assert_eq!(default_key("a.com", "/", None), "a.com/");
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
