//! Rewrite templates (Katana's `origin_tmpl`): `/v2/{rest}` filled from a rule regex's captures.
//!
//! Compiled once against the rule's regex so that a reference to a capture the regex does not
//! have is a config error, and expansion on the request path is a walk over pre-split parts
//! with no parsing. `regex::Captures::expand` would accept unknown names silently, hence this.

use std::fmt;

use regex::{Captures, Regex};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Group(usize),
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
                    let index = group_index(re, &name).ok_or_else(|| {
                        TemplateError(format!(
                            "template {source:?} uses capture `{name}`, which the path regex does not define"
                        ))
                    })?;
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Group(index));
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

    /// Appends the expansion to `out`; a group that did not participate expands to nothing.
    pub fn expand_into(&self, caps: &Captures<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Group(i) => {
                    if let Some(m) = caps.get(*i) {
                        out.push_str(m.as_str());
                    }
                }
            }
        }
    }

    /// The expansion as a new string.
    pub fn expand(&self, caps: &Captures<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        self.expand_into(caps, &mut out);
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
        assert_eq!(t.expand(&caps), "/resized/a/b.jpg?w=300&x={y}");
    }

    #[test]
    fn unknown_capture_is_an_error_naming_it() {
        let re = Regex::new(r"^/(?P<a>.*)$").unwrap();
        let err = Template::compile("/{b}", &re).unwrap_err();
        assert!(err.0.contains("`b`"), "{err}");
        assert!(Template::compile("/{3}", &re).is_err());
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
        assert_eq!(t.expand(&re.captures("/a").unwrap()), "/z");
        assert_eq!(t.expand(&re.captures("/a/b").unwrap()), "/z/b");
    }
}
