//! Templates filled from a rule regex's captures and the request: rewrites (Katana's
//! `origin_tmpl`, `/v2/{rest}`) and cache keys (Katana's `cache_path`, `{host}/img/{file}`).
//!
//! Compiled once against the rule's regex so that a reference to a name that is neither a
//! capture nor a built-in (`host`, `authority`, `scheme`, `path`, `query`) is a config error,
//! and expansion on the request path is a walk over pre-split parts with no parsing.
//! `regex::Captures::expand` would accept unknown names silently, hence this.
//!
//! A template may also name *late* variables, values known only after routing (an image
//! rule's normalised parameters, [`Template::compile_with`]): routing expands everything else
//! into a [`Partial`], which [`Partial::finish`] completes with those values.

use std::fmt;

use regex::{Captures, Regex};

use crate::target::{Placement, TargetError, check_capture};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A capture group, and where the template places it.
    Group(usize, Placement),
    Var(Var, Placement),
    /// The n-th late variable (kura's own value, given to [`Partial::finish`]).
    Late(usize),
}

/// Built-in template variables, taken from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Host,
    Authority,
    Scheme,
    Path,
    Query,
}

/// The request values built-in names expand to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// Lowercase host without port.
    pub host: &'a str,
    /// The host with its port (the scheme's default port left out).
    pub authority: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The normalised request path, starting with `/`.
    pub path: &'a str,
    /// The query string without `?` (empty when absent).
    pub query: &'a str,
}

/// The parts of a request's origin a cache key holds. What a key does not hold is not
/// forwarded (so it cannot change the stored answer): the Host without `host`, its port
/// without `port`, `X-Forwarded-Proto` without `scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyScope {
    /// The key holds the scheme (`{scheme}`).
    pub scheme: bool,
    /// The key holds the host (`{host}` or `{authority}`).
    pub host: bool,
    /// The key holds the port (`{authority}`).
    pub port: bool,
}

impl KeyScope {
    /// Everything: the default key (the URL), and rules that do not cache.
    pub const ALL: KeyScope = KeyScope {
        scheme: true,
        host: true,
        port: true,
    };
}

/// A template validated against one regex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Template {
    /// Parses `source`; `{name}` and `{N}` must name a group of `re`. `{{` and `}}` are braces.
    pub fn compile(source: &str, re: &Regex) -> Result<Self, TemplateError> {
        Self::compile_with(source, re, &[])
    }

    /// As [`Template::compile`], and `{name}` may also be one of `late`, a value given later
    /// to [`Partial::finish`] by its index in `late` (a capture of the same name wins, as it
    /// does over the built-ins).
    pub fn compile_with(source: &str, re: &Regex, late: &[&str]) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(TemplateError(format!(
                                    "unclosed `{{` in template {source:?}"
                                )));
                            }
                        }
                    }
                    let at = placement(&parts, &lit);
                    let part = match group_index(re, &name) {
                        Some(index) => Part::Group(index, at),
                        None => match name.as_str() {
                            "host" => Part::Var(Var::Host, at),
                            "authority" => Part::Var(Var::Authority, at),
                            "scheme" => Part::Var(Var::Scheme, at),
                            // The path starts with `/`: wherever it lands, it is a path.
                            "path" => Part::Var(Var::Path, Placement::Path),
                            "query" => Part::Var(Var::Query, Placement::Query),
                            _ => match late.iter().position(|l| *l == name) {
                                Some(i) => Part::Late(i),
                                None => {
                                    let mut known =
                                        String::from("host, authority, scheme, path, query");
                                    for l in late {
                                        known.push_str(", ");
                                        known.push_str(l);
                                    }
                                    return Err(TemplateError(format!(
                                        "template {source:?} uses `{name}`, which is neither a capture of the path regex nor one of {known}"
                                    )));
                                }
                            },
                        },
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(part);
                }
                '}' => {
                    return Err(TemplateError(format!(
                        "stray `}}` in template {source:?} (write `}}}}` for a brace)"
                    )));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The text the operator wrote.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Which parts of the request's scheme and authority the template's expansion holds.
    pub fn scope(&self) -> KeyScope {
        let uses = |v: Var| {
            self.parts
                .iter()
                .any(|p| matches!(p, Part::Var(x, _) if *x == v))
        };
        KeyScope {
            scheme: uses(Var::Scheme),
            host: uses(Var::Host) || uses(Var::Authority),
            port: uses(Var::Authority),
        }
    }

    /// True when the template uses a capture group (the regex must then be run with captures).
    pub fn uses_captures(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Group(..)))
    }

    /// Appends the expansion to `out`; a group that did not participate expands to nothing.
    pub fn expand_into(&self, caps: Option<&Captures<'_>>, vars: &Vars<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Group(i, _) => {
                    if let Some(m) = caps.and_then(|c| c.get(*i)) {
                        out.push_str(m.as_str());
                    }
                }
                Part::Var(v, _) => out.push_str(var(*v, vars)),
                Part::Late(_) => {}
            }
        }
    }

    /// The expansion, with every capture and request value checked for where it lands
    /// ([`check_capture`]): a value that would climb out of the template's prefix or change
    /// a host is refused. Used for everything a request's path feeds (rewrites, cache keys,
    /// image sources).
    /// Late variables expand to nothing here (see [`Template::expand_partial`]).
    pub fn expand_checked(
        &self,
        caps: Option<&Captures<'_>>,
        vars: &Vars<'_>,
    ) -> Result<String, TargetError> {
        let mut out = String::with_capacity(self.source.len() + 32);
        self.walk_checked(caps, vars, &mut out, &mut |_, _| {})?;
        Ok(out)
    }

    /// The expansion with every capture and request value checked as [`expand_checked`] does,
    /// the late variables left open for [`Partial::finish`].
    ///
    /// [`expand_checked`]: Template::expand_checked
    pub fn expand_partial(
        &self,
        caps: Option<&Captures<'_>>,
        vars: &Vars<'_>,
    ) -> Result<Partial, TargetError> {
        let mut pieces = Vec::new();
        let mut out = String::with_capacity(self.source.len() + 32);
        self.walk_checked(caps, vars, &mut out, &mut |i, out| {
            pieces.push(Piece::Text(std::mem::take(out)));
            pieces.push(Piece::Late(i));
        })?;
        pieces.push(Piece::Text(out));
        Ok(Partial { pieces })
    }

    /// Appends the checked expansion to `out`, calling `late` where a late variable stands.
    fn walk_checked(
        &self,
        caps: Option<&Captures<'_>>,
        vars: &Vars<'_>,
        out: &mut String,
        late: &mut dyn FnMut(usize, &mut String),
    ) -> Result<(), TargetError> {
        for part in &self.parts {
            let (value, at) = match part {
                Part::Literal(s) => {
                    out.push_str(s);
                    continue;
                }
                Part::Late(i) => {
                    late(*i, out);
                    continue;
                }
                Part::Group(i, at) => match caps.and_then(|c| c.get(*i)) {
                    Some(m) => (m.as_str(), *at),
                    None => continue,
                },
                // The scheme and a validated Host cannot climb anywhere.
                Part::Var(v @ (Var::Host | Var::Authority | Var::Scheme), _) => {
                    out.push_str(var(*v, vars));
                    continue;
                }
                Part::Var(v, at) => (var(*v, vars), *at),
            };
            check_capture(value, at)?;
            out.push_str(value);
        }
        Ok(())
    }

    /// True when the template names a late variable.
    pub fn uses_late(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Late(_)))
    }

    /// The expansion as a new string.
    pub fn expand(&self, caps: Option<&Captures<'_>>, vars: &Vars<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        self.expand_into(caps, vars, &mut out);
        out
    }
}

/// A template expanded with a request's captures and values, its late variables still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Late(usize),
}

impl Partial {
    /// The expansion, each late variable replaced by its value in `late` (nothing when `late`
    /// is shorter). The values are kura's own, so they are not checked.
    pub fn finish(&self, late: &[&str]) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Late(i) => out.push_str(late.get(*i).copied().unwrap_or("")),
            }
        }
        out
    }
}

fn var<'a>(v: Var, vars: &Vars<'a>) -> &'a str {
    match v {
        Var::Host => vars.host,
        Var::Authority => vars.authority,
        Var::Scheme => vars.scheme,
        Var::Path => vars.path,
        Var::Query => vars.query,
    }
}

/// Where a placeholder that follows `parts` and the pending literal `lit` lands: in a URL's
/// authority when the text so far is `scheme://` plus host characters with no `/` after it;
/// in a query after a literal `?`; in a path otherwise.
fn placement(parts: &[Part], lit: &str) -> Placement {
    let mut before = String::new();
    for p in parts {
        match p {
            Part::Literal(s) => before.push_str(s),
            // A placeholder already in the query keeps what follows in the query; one in
            // the authority keeps it there until a literal `/` ends the authority.
            Part::Group(_, Placement::Query) | Part::Var(_, Placement::Query) => before.push('?'),
            Part::Group(..) | Part::Var(..) | Part::Late(_) => before.push('x'),
        }
    }
    before.push_str(lit);
    if before.contains('?') {
        return Placement::Query;
    }
    match before.find("://") {
        Some(i) if !before[i + 3..].contains('/') => Placement::Authority,
        _ => Placement::Path,
    }
}

fn group_index(re: &Regex, name: &str) -> Option<usize> {
    if let Ok(n) = name.parse::<usize>() {
        return (n < re.captures_len()).then_some(n);
    }
    re.capture_names()
        .position(|candidate| candidate == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_numbered_groups_expand() {
        let re = Regex::new(r"^/img/(?P<size>\d+)/(.*)$").unwrap();
        let t = Template::compile("/resized/{2}?w={size}&x={{y}}", &re).unwrap();
        let caps = re.captures("/img/300/a/b.jpg").unwrap();
        assert_eq!(
            t.expand(Some(&caps), &Vars::default()),
            "/resized/a/b.jpg?w=300&x={y}"
        );
    }

    #[test]
    fn unknown_capture_is_an_error_naming_it() {
        let re = Regex::new(r"^/(?P<a>.*)$").unwrap();
        let err = Template::compile("/{b}", &re).unwrap_err();
        assert!(err.0.contains("`b`"), "{err}");
        assert!(Template::compile("/{hostname}", &re).is_err());
        assert!(Template::compile("/{3}", &re).is_err());
    }

    #[test]
    fn builtins_expand_from_the_request_and_captures_win() {
        let re = Regex::new(r"^/i/(?P<file>.*)$").unwrap();
        let t = Template::compile("{host}/img/{file}?{query}", &re).unwrap();
        assert!(t.uses_captures());
        let vars = Vars {
            host: "a.com",
            path: "/i/x.png",
            query: "w=1",
            ..Vars::default()
        };
        let caps = re.captures("/i/x.png").unwrap();
        assert_eq!(t.expand(Some(&caps), &vars), "a.com/img/x.png?w=1");
        let plain = Template::compile("{host}{path}", &re).unwrap();
        assert!(!plain.uses_captures());
        assert_eq!(plain.expand(None, &vars), "a.com/i/x.png");
        // A capture named like a built-in is the capture.
        let re = Regex::new(r"^/(?P<host>[^/]+)/").unwrap();
        let t = Template::compile("{host}", &re).unwrap();
        assert_eq!(
            t.expand(Some(&re.captures("/mine/").unwrap()), &vars),
            "mine"
        );
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        let re = Regex::new(r"^/(.*)$").unwrap();
        assert!(Template::compile("/{1", &re).is_err());
        assert!(Template::compile("/1}", &re).is_err());
    }

    #[test]
    fn optional_group_absent_expands_to_nothing() {
        let re = Regex::new(r"^/a(?P<x>/b)?$").unwrap();
        let t = Template::compile("/z{x}", &re).unwrap();
        let v = Vars::default();
        assert_eq!(t.expand(Some(&re.captures("/a").unwrap()), &v), "/z");
        assert_eq!(t.expand(Some(&re.captures("/a/b").unwrap()), &v), "/z/b");
    }

    #[test]
    fn checked_expansion_keeps_values_inside_their_place() {
        let re = Regex::new(r"^/img/(?P<rest>.*)$").unwrap();
        let vars = Vars::default();
        let t = Template::compile("/v2/{rest}?r={rest}", &re).unwrap();
        let caps = re.captures("/img/a/b.jpg").unwrap();
        assert_eq!(
            t.expand_checked(Some(&caps), &vars).unwrap(),
            "/v2/a/b.jpg?r=a/b.jpg"
        );
        for bad in [
            "/img/x/%2e%2e/y",
            "/img/..%2f",
            "/img/a\\b",
            "/img/%252e%252e",
        ] {
            let caps = re.captures(bad).unwrap();
            assert!(t.expand_checked(Some(&caps), &vars).is_err(), "{bad}");
        }
        // In an authority, a value can only be host characters.
        let host = Template::compile("http://{rest}.img.test/x", &re).unwrap();
        let ok = re.captures("/img/bucket-1").unwrap();
        assert_eq!(
            host.expand_checked(Some(&ok), &vars).unwrap(),
            "http://bucket-1.img.test/x"
        );
        for bad in ["/img/evil.test@a", "/img/evil.test/x", "/img/a:1"] {
            let caps = re.captures(bad).unwrap();
            assert!(host.expand_checked(Some(&caps), &vars).is_err(), "{bad}");
        }
        // A whole-URL capture is an authority at first: `@` cannot smuggle a host.
        let whole = Template::compile("http://{rest}", &re).unwrap();
        let caps = re.captures("/img/allowed.test@evil.test/x").unwrap();
        assert!(whole.expand_checked(Some(&caps), &vars).is_err());
    }

    #[test]
    fn late_variables_are_filled_after_the_captures() {
        let re = Regex::new(r"^/(?P<src>.+)$").unwrap();
        let late = ["width", "params"];
        let t = Template::compile_with("r/{width}/{src}#{params}", &re, &late).unwrap();
        assert!(t.uses_late());
        let caps = re.captures("/a/b.jpg").unwrap();
        let p = t.expand_partial(Some(&caps), &Vars::default()).unwrap();
        assert_eq!(p.finish(&["300", "q=80"]), "r/300/a/b.jpg#q=80");
        assert_eq!(p.finish(&[]), "r//a/b.jpg#");
        // Captures are still checked; a capture named like a late variable wins.
        let caps = re.captures("/a/../../x").unwrap();
        assert!(t.expand_partial(Some(&caps), &Vars::default()).is_err());
        let re2 = Regex::new(r"^/(?P<width>[0-9]+)$").unwrap();
        let t2 = Template::compile_with("{width}", &re2, &late).unwrap();
        assert!(!t2.uses_late());
        // Without the late names, they are unknown, and the error lists what is known.
        let err = Template::compile("{width}", &re).unwrap_err();
        assert!(!err.0.contains("params"), "{err}");
        let err = Template::compile_with("{wdth}", &re, &late).unwrap_err();
        assert!(err.0.contains("width, params"), "{err}");
    }

    #[test]
    fn the_scope_says_what_a_key_holds_of_the_origin() {
        let re = Regex::new(r"^/(?P<f>.*)$").unwrap();
        let scope = |t: &str| Template::compile(t, &re).unwrap().scope();
        assert_eq!(
            scope("img/{f}"),
            KeyScope {
                scheme: false,
                host: false,
                port: false
            }
        );
        assert_eq!(
            scope("{host}/{f}"),
            KeyScope {
                scheme: false,
                host: true,
                port: false
            }
        );
        assert_eq!(scope("{scheme}://{authority}/{f}"), KeyScope::ALL);
        let t = Template::compile("{scheme}://{authority}{path}", &re).unwrap();
        let vars = Vars {
            host: "[::1]",
            authority: "[::1]:8080",
            scheme: "http",
            path: "/x",
            query: "",
        };
        assert_eq!(
            t.expand_checked(None, &vars).unwrap(),
            "http://[::1]:8080/x"
        );
    }
}
