//! Templates filled from a rule regex's captures and the request: rewrites (Katana's
//! `origin_tmpl`, `/v2/{rest}`) and cache keys (Katana's `cache_path`, `{host}/img/{file}`).
//!
//! Compiled once against the rule's regex so that a reference to a name that is neither a
//! capture nor a built-in (`host`, `path`, `query`) is a config error, and expansion on the
//! request path is a walk over pre-split parts with no parsing. `regex::Captures::expand` would
//! accept unknown names silently, hence this.

use std::fmt;

use regex::{Captures, Regex};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Group(usize),
    Var(Var),
}

/// Built-in template variables, taken from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Host,
    Path,
    Query,
}

/// The request values built-in names expand to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// Lowercase host without port.
    pub host: &'a str,
    pub path: &'a str,
    /// The query string without `?` (empty when absent).
    pub query: &'a str,
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
                    let part = match group_index(re, &name) {
                        Some(index) => Part::Group(index),
                        None => match name.as_str() {
                            "host" => Part::Var(Var::Host),
                            "path" => Part::Var(Var::Path),
                            "query" => Part::Var(Var::Query),
                            _ => {
                                return Err(TemplateError(format!(
                                    "template {source:?} uses `{name}`, which is neither a capture of the path regex nor one of host, path, query"
                                )));
                            }
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

    /// True when the template uses a capture group (the regex must then be run with captures).
    pub fn uses_captures(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Group(_)))
    }

    /// Appends the expansion to `out`; a group that did not participate expands to nothing.
    pub fn expand_into(&self, caps: Option<&Captures<'_>>, vars: &Vars<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Group(i) => {
                    if let Some(m) = caps.and_then(|c| c.get(*i)) {
                        out.push_str(m.as_str());
                    }
                }
                Part::Var(Var::Host) => out.push_str(vars.host),
                Part::Var(Var::Path) => out.push_str(vars.path),
                Part::Var(Var::Query) => out.push_str(vars.query),
            }
        }
    }

    /// The expansion as a new string.
    pub fn expand(&self, caps: Option<&Captures<'_>>, vars: &Vars<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        self.expand_into(caps, vars, &mut out);
        out
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
}
