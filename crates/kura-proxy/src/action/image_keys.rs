//! The keys an image rule stores under ([`ImageKeys`]): its `resize.source_key` and
//! `resize.variant_key` templates (Katana's `cache_path_source` and `cache_path_resized`), or
//! the defaults (where the original is fetched from; that plus the normalised parameters).
//!
//! A template says *where* an image is stored; it cannot make two different images one. What
//! the default key would have been (the original's address, the parameters, the format chosen
//! for the client) goes with the cache request in an internal header, [`IDENTITY`], and every
//! answer stored under a templated key carries `Vary` on it ([`Identified`]). So two URLs whose
//! templates expand alike share one entry when they ask for the same image, and are otherwise
//! kept apart under that key (as its variants, purged with it): a capture a client chooses can
//! neither overwrite another image nor poison an original. The header never leaves kura (taken
//! off before a source request goes out, and out of the client's `Vary`). Keys stay in the
//! rule's namespace (kinds `s` and `i`), their path part normalised by the same function as
//! every template key ([`PrimaryKey::source`], [`PrimaryKey::variant`]).

use std::fmt::Write;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, request};
use kura_cache::key::{PrimaryKey, RuleId};
use kura_cache::{Origin, OriginBody, OriginError};
use kura_config::Partial;
use kura_image::{Chosen, Params};

/// The internal request header naming the image a templated key stores, and what its stored
/// answers `Vary` on.
pub(crate) const IDENTITY: HeaderName = HeaderName::from_static(IDENTITY_NAME);
const IDENTITY_NAME: &str = "kura-image-identity";

/// A key, and the identity that keeps different images apart under it (templated keys only).
#[derive(Clone)]
pub(crate) struct Keyed {
    pub key: PrimaryKey,
    pub identity: Option<HeaderValue>,
}

impl Keyed {
    /// Puts the identity on a cache request for this key.
    pub fn mark(&self, parts: &mut request::Parts) {
        if let Some(id) = &self.identity {
            parts.headers.insert(IDENTITY, id.clone());
        }
    }

    /// `origin`, wrapped to answer with `Vary` on the identity when the key is templated.
    pub fn origin(&self, origin: Arc<dyn Origin>) -> Arc<dyn Origin> {
        match self.identity {
            Some(_) => Arc::new(Identified(origin)),
            None => origin,
        }
    }
}

/// Where one request's original and variant are stored.
pub(crate) struct ImageKeys {
    pub source: Keyed,
    pub variant: Keyed,
}

impl ImageKeys {
    /// The keys of the original named `source_id` (its address) and of the variant `params`
    /// (with the format `chosen`), from the rule's templates as routing expanded them.
    pub fn new(
        rule: RuleId,
        source_key: Option<&str>,
        variant_key: Option<&Partial>,
        source_id: &str,
        params: &Params,
        chosen: Chosen,
    ) -> Self {
        let canonical = params.canonical(chosen);
        let default_source = PrimaryKey::source(rule, source_id);
        let default_variant = PrimaryKey::image(&default_source, &canonical);
        let source = match source_key {
            Some(k) => Keyed {
                key: PrimaryKey::source(rule, k),
                identity: Some(identity(default_source.as_str())),
            },
            None => Keyed {
                key: default_source,
                identity: None,
            },
        };
        let variant = match variant_key {
            Some(p) => {
                let late = late_values(params, chosen, &canonical);
                let late: Vec<&str> = late.iter().map(String::as_str).collect();
                Keyed {
                    key: PrimaryKey::variant(rule, &p.finish(&late)),
                    identity: Some(identity(default_variant.as_str())),
                }
            }
            None => Keyed {
                key: default_variant,
                identity: None,
            },
        };
        ImageKeys { source, variant }
    }
}

/// The values of `kura_config::RESIZE_KEY_VARIABLES`, in its order.
fn late_values(params: &Params, chosen: Chosen, canonical: &str) -> [String; 7] {
    let side = |s: Option<u32>| s.map(|n| n.to_string()).unwrap_or_default();
    [
        side(params.width),
        side(params.height),
        params.fit.name().to_string(),
        params.gravity.name().to_string(),
        params.quality.to_string(),
        chosen.label().to_string(),
        canonical.to_string(),
    ]
}

/// `text` as a header value: visible ASCII kept, every other byte (and `%`) escaped, so two
/// different texts never give the same value.
fn identity(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// An origin whose answers are stored under a templated key: the identity is taken off the
/// request before it goes out, and every answer says `Vary` on it.
pub(crate) struct Identified(pub Arc<dyn Origin>);

impl Origin for Identified {
    fn fetch(
        &self,
        mut req: request::Parts,
    ) -> kura_cache::tier::BoxFuture<'static, Result<Response<OriginBody>, OriginError>> {
        req.headers.remove(IDENTITY);
        let fetch = self.0.fetch(req);
        Box::pin(async move {
            let mut resp = fetch.await?;
            resp.headers_mut()
                .append(header::VARY, HeaderValue::from_static(IDENTITY_NAME));
            Ok(resp)
        })
    }
}

/// Takes the identity out of an answer's `Vary` before a client sees it.
pub(crate) fn hide(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(header::VARY).iter().cloned().collect();
    if !values.iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains(IDENTITY_NAME))
    }) {
        return;
    }
    headers.remove(header::VARY);
    for v in values {
        let Ok(text) = v.to_str() else {
            headers.append(header::VARY, v);
            continue;
        };
        let kept: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(IDENTITY_NAME))
            .collect();
        if !kept.is_empty()
            && let Ok(v) = HeaderValue::from_str(&kept.join(", "))
        {
            headers.append(header::VARY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_header_values_that_keep_texts_apart() {
        assert_eq!(identity("store/a b.jpg"), "store/a%20b.jpg");
        assert_ne!(identity("a%20b"), identity("a b"));
        assert_eq!(identity("é"), "%C3%A9");
    }

    #[test]
    fn the_identity_leaves_vary() {
        let mut h = HeaderMap::new();
        h.append(
            header::VARY,
            HeaderValue::from_static("Accept, kura-image-identity"),
        );
        h.append(
            header::VARY,
            HeaderValue::from_static("KURA-IMAGE-IDENTITY"),
        );
        hide(&mut h);
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept"]);
    }
}
