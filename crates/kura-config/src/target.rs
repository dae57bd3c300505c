//! The request target as kura understands it: one normalised path and one validated authority,
//! computed once per request and used for everything after (routing, template captures, the
//! cache key and the request sent upstream), so that what is keyed is what is forwarded.
//!
//! - [`normalize_path`]: percent-escapes of unreserved characters decoded (`%41` → `A`), other
//!   escapes upper-cased (`%2f` → `%2F`), raw bytes outside the URI alphabet escaped, dot
//!   segments removed (RFC 3986 §6.2.2, §5.2.4). A backslash, a bad escape or a path not
//!   starting with `/` is refused: no two spellings of a path reach two different places.
//! - [`Authority::parse`]: a Host (or absolute-form authority) is a reg-name or an IP literal
//!   with an optional port, nothing else (`Host: a.test/x` and `Host: http:/` are refused).
//! - [`check_capture`]: a regex capture or request value used in a template cannot climb out of
//!   the template's prefix (`..` in any encoding, `\`, control bytes) nor, where it lands in an
//!   authority, change the host (`@`, `/`, `:`).
//!
//! Written by hand: the `url` crate normalises differently from what an origin receives
//! (it keeps `%2e%2e` and parses whole URLs), and the checks here are about kura's own
//! templates. Every function is total: no input panics (fuzzed by `fuzz/`).

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a request target was refused (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// The path does not start with `/`, holds a backslash, or a `%` without two hex digits.
    BadPath,
    /// The host is not a reg-name or IP literal with an optional port.
    BadHost,
    /// An absolute-form target carries userinfo (`http://user@host/`).
    Userinfo,
    /// A template capture would leave its prefix or change a host.
    Escape,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetError::BadPath => "malformed request path",
            TargetError::BadHost => "malformed Host",
            TargetError::Userinfo => "userinfo in the request target",
            TargetError::Escape => "a path value escapes its rule's prefix",
        })
    }
}

impl std::error::Error for TargetError {}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes kept as they are in a normalised path (RFC 3986 pchar minus `%`, plus `/`).
fn path_char(b: u8) -> bool {
    unreserved(b)
        || matches!(
            b,
            b'/' | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// The normalised form of an origin-form path (no query). Borrowed when already normal.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, TargetError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(TargetError::BadPath);
    }
    let plain = bytes.iter().all(|&b| path_char(b));
    if plain && !has_dot_segment(path) && !has_dot_param(path) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex_val),
                bytes.get(i + 2).copied().and_then(hex_val),
            ) else {
                return Err(TargetError::BadPath);
            };
            let v = h * 16 + l;
            if unreserved(v) {
                out.push(v as char);
            } else {
                push_escaped(&mut out, v);
            }
            i += 3;
            continue;
        }
        if b == b'\\' {
            return Err(TargetError::BadPath);
        }
        if path_char(b) {
            out.push(b as char);
        } else {
            push_escaped(&mut out, b);
        }
        i += 1;
    }
    // `..;x` is `..` to Tomcat and Jetty (path parameters): refused rather than guessed.
    if has_dot_param(&out) {
        return Err(TargetError::BadPath);
    }
    Ok(Cow::Owned(remove_dot_segments(&out)))
}

/// A segment that is `.` or `..` followed by path parameters (`/..;a/`).
fn has_dot_param(path: &str) -> bool {
    path.split('/')
        .any(|s| matches!(s.split_once(';'), Some((".." | ".", _))))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

/// RFC 3986 §5.2.4 on an absolute path: `.` and `..` segments resolved, never above the root.
pub fn remove_dot_segments(path: &str) -> String {
    if !has_dot_segment(path) {
        return path.to_string();
    }
    let mut segs: Vec<&str> = Vec::new();
    let mut trailing = false;
    for s in path.split('/').skip(1) {
        trailing = false;
        match s {
            "." => trailing = true,
            ".." => {
                segs.pop();
                trailing = true;
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if segs.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// A validated host with its port: lowercase, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// A reg-name, a dotted IPv4 address or a bracketed IPv6 literal (`[::1]`).
    pub host: String,
    /// The port, when one was given.
    pub port: Option<u16>,
}

/// Longest host name accepted (RFC 1035 names are at most 253 characters).
const MAX_HOST: usize = 253;

impl Authority {
    /// Parses a `Host` value or an absolute-form authority without userinfo.
    pub fn parse(raw: &str) -> Result<Authority, TargetError> {
        let raw = raw.trim_matches([' ', '\t']);
        if raw.contains('@') {
            return Err(TargetError::Userinfo);
        }
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let end = rest.find(']').ok_or(TargetError::BadHost)?;
            let ip: Ipv6Addr = rest[..end].parse().map_err(|_| TargetError::BadHost)?;
            let after = &rest[end + 1..];
            let port = match after {
                "" => None,
                p => parse_port(p.strip_prefix(':').ok_or(TargetError::BadHost)?)?,
            };
            (format!("[{ip}]"), port)
        } else {
            let (h, port) = match raw.split_once(':') {
                Some((h, p)) => (h, parse_port(p)?),
                None => (raw, None),
            };
            (reg_name(h)?, port)
        };
        Ok(Authority { host, port })
    }

    /// `host` or `host:port`, the port left out when it is `default_port` (the scheme's).
    pub fn normalized(&self, default_port: u16) -> String {
        match self.port {
            Some(p) if p != default_port => format!("{}:{p}", self.host),
            _ => self.host.clone(),
        }
    }
}

/// `""` (after `host:`) is no port; otherwise 1 to 5 digits, 1 to 65535.
fn parse_port(p: &str) -> Result<Option<u16>, TargetError> {
    if p.is_empty() {
        return Ok(None);
    }
    if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::BadHost);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetError::BadHost),
        Ok(n) => Ok(Some(n)),
    }
}

/// A DNS-style name or dotted IPv4 address: labels of letters, digits, `-` and `_`.
fn reg_name(h: &str) -> Result<String, TargetError> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() || h.len() > MAX_HOST {
        return Err(TargetError::BadHost);
    }
    for label in h.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TargetError::BadHost);
        }
    }
    // All-numeric dotted names must be real IPv4 addresses (no `1.2.3.999`, no octal forms).
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') && h.parse::<Ipv4Addr>().is_err() {
        return Err(TargetError::BadHost);
    }
    Ok(h.to_ascii_lowercase())
}

/// Where a template places a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In a path or key: it must not climb out (`..`, `\`, control bytes).
    Path,
    /// After a `?`: only control bytes are refused (a query has no segments to climb).
    Query,
    /// In a URL's authority: it must be host characters only.
    Authority,
}

/// Checks a captured or request value before a template uses it. Values are decoded (up to
/// three rounds of percent-decoding, so `%252e%252e` is seen as `..`) before looking.
pub fn check_capture(value: &str, placement: Placement) -> Result<(), TargetError> {
    let mut decoded: Cow<'_, [u8]> = Cow::Borrowed(value.as_bytes());
    for _ in 0..3 {
        if !decoded.contains(&b'%') {
            break;
        }
        decoded = Cow::Owned(percent_decode(&decoded));
    }
    let d: &[u8] = &decoded;
    if d.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(TargetError::Escape);
    }
    if placement == Placement::Query {
        return Ok(());
    }
    if d.contains(&b'\\') {
        return Err(TargetError::Escape);
    }
    // A `..` segment, also with path parameters (`..;x`, Tomcat's reading).
    if d.split(|&b| b == b'/')
        .any(|s| s.split(|&b| b == b';').next() == Some(b".."))
    {
        return Err(TargetError::Escape);
    }
    if placement == Placement::Authority
        && !d
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(TargetError::Escape);
    }
    Ok(())
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_once_to_one_spelling() {
        let n = |p: &str| normalize_path(p).map(|c| c.into_owned());
        assert_eq!(n("/a/b").unwrap(), "/a/b");
        assert!(matches!(normalize_path("/a/b"), Ok(Cow::Borrowed(_))));
        assert_eq!(n("/a/../p").unwrap(), "/p");
        assert_eq!(n("/a/./b/").unwrap(), "/a/b/");
        assert_eq!(n("/%61/%2e%2E/p").unwrap(), "/p");
        assert_eq!(n("/x/%2fy").unwrap(), "/x/%2Fy");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert_eq!(n("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(n("/a b").unwrap(), "/a%20b");
        assert_eq!(n("/é").unwrap(), "/%C3%A9");
        assert_eq!(n("/a/%7Euser").unwrap(), "/a/~user");
        assert_eq!(n("/a\\b"), Err(TargetError::BadPath));
        assert_eq!(n("/a/..;x/b"), Err(TargetError::BadPath));
        assert_eq!(n("/a/%2e%2e;/b"), Err(TargetError::BadPath));
        assert_eq!(n("/a;x/b").unwrap(), "/a;x/b");
        assert_eq!(n("/a%zz"), Err(TargetError::BadPath));
        assert_eq!(n("/a%4"), Err(TargetError::BadPath));
        assert_eq!(n("a/b"), Err(TargetError::BadPath));
        assert_eq!(n(""), Err(TargetError::BadPath));
    }

    #[test]
    fn authorities_are_names_or_ip_literals() {
        let a = Authority::parse("V.Test:1234").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("v.test", Some(1234)));
        assert_eq!(a.normalized(80), "v.test:1234");
        assert_eq!(
            Authority::parse("v.test:80").unwrap().normalized(80),
            "v.test"
        );
        assert_eq!(Authority::parse("v.test.").unwrap().host, "v.test");
        assert_eq!(Authority::parse("v.test:").unwrap().port, None);
        assert_eq!(Authority::parse("[::1]:8080").unwrap().host, "[::1]");
        assert_eq!(Authority::parse("[0:0::1]").unwrap().host, "[::1]");
        assert_eq!(Authority::parse("10.0.0.5").unwrap().host, "10.0.0.5");
        assert_eq!(Authority::parse("__ping__").unwrap().host, "__ping__");
        for bad in [
            "a.test/x",
            "http:/",
            "",
            ":80",
            "a..b",
            ".a",
            "a.test:0",
            "a.test:65536",
            "a.test:8o",
            "[::1",
            "[nope]",
            "[::1]x",
            "1.2.3.999",
            "a b",
            "a\\b",
            "a.test:1:2",
        ] {
            assert!(Authority::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Authority::parse("user@a.test"), Err(TargetError::Userinfo));
        assert!(Authority::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn captures_cannot_escape() {
        use Placement::*;
        assert!(check_capture("a/b.jpg", Path).is_ok());
        assert!(check_capture("logo@2x.png", Path).is_ok());
        for bad in [
            "..",
            "a/../b",
            "%2e%2e/x",
            "%252e%252E",
            "a\\b",
            "a%5cb",
            "x%00",
            "..;/x",
            "a/..;jsessionid=1/b",
        ] {
            assert_eq!(check_capture(bad, Path), Err(TargetError::Escape), "{bad}");
        }
        assert!(check_capture("a=../b", Query).is_ok());
        assert!(check_capture("a=%00", Query).is_err());
        assert!(check_capture("bucket-1.s3", Authority).is_ok());
        for bad in ["evil.com@x", "a/b", "a:1", "a%40b", "a b"] {
            assert_eq!(
                check_capture(bad, Authority),
                Err(TargetError::Escape),
                "{bad}"
            );
        }
    }
}
