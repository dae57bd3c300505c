//! The `resize` rule action: an image URL → checked parameters → a variant served through the
//! cache. The variant's cache key is the source's key plus the normalised parameters (and the
//! format chosen for the client's `Accept`), so equivalent URLs share an entry, or the rule's
//! key templates say where the original and the variant are stored (`image_keys`). On a miss the
//! cache asks [`ResizeOrigin`], which reads the original through the cache too (the source is
//! cached once for all its variants), transforms it on the bounded pool, and answers with an
//! `ETag` derived from the source's validator and the parameters: a revalidation whose source
//! did not change gets a 304 without transforming again, and clients' conditional requests are
//! answered from the stored variant. A `HEAD` is answered from the variant a `GET` stores, so
//! it costs one transform, coalesced and kept like any miss. Sources are resolved by
//! `image_source` (absolute URLs checked against SSRF).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use kura_cache::key::RuleId;
use kura_cache::{Cache, CacheBody, CacheRequest, Origin};
use kura_config::{RuleCache, RuleResize};
use kura_image::{Chosen, ImageLimits, Params, Raw, Signer, Transformer};

use crate::action::Reply;
use crate::action::image_keys::{self, ImageKeys};
use crate::action::image_source::Sources;
use crate::action::resize_origin::ResizeOrigin;
use crate::control::metrics::Metrics;
use crate::errors::ProxyError;
use crate::upstream::Pool;

/// A resize rule ready to serve, built once per route table: its settings, its transform pool,
/// its signer, its caching policy and the pool its originals come from.
pub struct ResizeAction {
    /// The server's cache: variants and originals are stored there.
    pub cache: Arc<Cache>,
    /// The rule's identity (its originals' and variants' keys are in its namespace).
    pub id: RuleId,
    pub cfg: RuleResize,
    pub limits: ImageLimits,
    pub transformer: Transformer,
    pub signer: Option<Signer>,
    /// The variants' and originals' caching policy.
    pub policy: Arc<RuleCache>,
    pub(crate) metrics: Arc<Metrics>,
    /// Where originals come from: the rule's pool, or absolute sources' own (bounded).
    pub(crate) sources: Sources,
    /// The not-found image per variant, transformed once (bounded; concurrent misses wait
    /// for the one transform).
    pub(crate) not_found: NotFoundCache,
}

/// Transformed not-found images by canonical parameters.
pub(crate) type NotFoundCache =
    moka::sync::Cache<String, Arc<tokio::sync::OnceCell<(Bytes, &'static str)>>>;

impl ResizeAction {
    pub fn new(
        cache: Arc<Cache>,
        id: RuleId,
        cfg: &RuleResize,
        policy: &RuleCache,
        pool: Arc<Pool>,
        origin: Arc<dyn Origin>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, kura_image::SignerError> {
        let signer = match &cfg.signature {
            Some(s) => Some(Signer::from_hex(&s.keys, &s.salts)?),
            None => None,
        };
        Ok(ResizeAction {
            cache,
            id,
            limits: ImageLimits {
                max_width: cfg.max_width,
                max_height: cfg.max_height,
                max_quality: cfg.max_quality,
                default_quality: cfg.default_quality,
                max_dpr: cfg.max_dpr,
                max_source_pixels: cfg.max_source_pixels,
                max_source_bytes: cfg.max_source_bytes,
            },
            transformer: Transformer::new(cfg.max_concurrent),
            signer,
            cfg: cfg.clone(),
            policy: Arc::new(policy.clone()),
            sources: Sources::new(cfg, pool, origin, metrics.clone()),
            metrics,
            not_found: moka::sync::Cache::builder().max_capacity(256).build(),
        })
    }

    /// Expands the rule's templates with the path's captures.
    pub fn args(
        &self,
        caps: Option<&regex::Captures<'_>>,
        vars: &kura_config::Vars<'_>,
    ) -> Result<ResizeArgs, kura_config::target::TargetError> {
        let r = &self.cfg;
        let t = |t: &Option<kura_config::Template>| match t {
            Some(t) => t.expand_checked(caps, vars),
            None => Ok(String::new()),
        };
        let signature = r.signature.as_ref().and_then(|s| {
            let m = caps?.name(&s.capture)?;
            Some((m.as_str().to_string(), vars.path[m.end()..].to_string()))
        });
        let mut format = t(&r.format)?;
        if format.trim().is_empty() && r.default_format != "source" {
            format = r.default_format.clone();
        }
        Ok(ResizeArgs {
            source: r.source.expand_checked(caps, vars)?,
            source_key: match &r.source_key {
                Some(t) => Some(t.expand_checked(caps, vars)?),
                None => None,
            },
            variant_key: match &r.variant_key {
                Some(t) => Some(t.expand_partial(caps, vars)?),
                None => None,
            },
            raw: Raw {
                width: t(&r.width)?,
                height: t(&r.height)?,
                fit: t(&r.fit)?,
                gravity: t(&r.gravity)?,
                quality: t(&r.quality)?,
                format,
                dpr: t(&r.dpr)?,
            },
            signature,
        })
    }
}

/// What the rule's templates made of one request path.
pub struct ResizeArgs {
    pub source: String,
    /// `resize.source_key` expanded.
    pub source_key: Option<String>,
    /// `resize.variant_key` expanded, the parameters still open.
    pub variant_key: Option<kura_config::Partial>,
    pub raw: Raw,
    /// The signature capture and the path after it (the signed text).
    pub signature: Option<(String, String)>,
}

/// Answers an image request; the response is finished by the request phases.
pub async fn serve(
    action: &Arc<ResizeAction>,
    args: ResizeArgs,
    method: &Method,
    client_headers: &HeaderMap,
) -> Result<Reply, ProxyError> {
    let r = action;
    let cache = &r.cache;
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ProxyError::refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "image routes answer GET and HEAD",
        ));
    }
    if let Some(signer) = &r.signer {
        match &args.signature {
            Some((sig, signed)) if signer.verify(sig, signed) => {}
            Some(_) => {
                return Err(ProxyError::refused(
                    StatusCode::FORBIDDEN,
                    "invalid URL signature",
                ));
            }
            None => {
                return Err(ProxyError::refused(
                    StatusCode::FORBIDDEN,
                    "missing URL signature",
                ));
            }
        }
    }
    let params = Params::parse(&args.raw, &r.limits, &r.cfg.fit_aliases)
        .map_err(|e| ProxyError::refused(StatusCode::BAD_REQUEST, e.0))?;
    let accept = client_headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let chosen = params.choose(accept);
    let (source_origin, source_path, source_id) = r.sources.source(&args.source).await?;
    // Originals and variants live in the rule's own key kinds, which no client URL maps to.
    let keys = ImageKeys::new(
        r.id,
        args.source_key.as_deref(),
        args.variant_key.as_ref(),
        &source_id,
        &params,
        chosen,
    );

    // A HEAD is answered from the variant a GET stores: transformed once, coalesced, kept.
    let head = *method == Method::HEAD;
    let mut parts = Request::builder()
        .method(Method::GET)
        .uri(source_path.as_str())
        .body(())
        .map_err(|_| ProxyError::BadTarget)?
        .into_parts()
        .0;
    for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
        if let Some(v) = client_headers.get(&name) {
            parts.headers.insert(name, v.clone());
        }
    }
    keys.variant.mark(&mut parts);
    let keep_source = params.width.is_none()
        && params.height.is_none()
        && matches!(chosen, Chosen::Source)
        && args.raw.quality.trim().is_empty();
    let origin = keys.variant.origin(Arc::new(ResizeOrigin {
        source: source_origin,
        source_path,
        source_key: keys.source,
        params,
        chosen,
        keep_source,
        rule: r.clone(),
        policy: r.policy.clone(),
    }));
    let resp = cache
        .serve(
            CacheRequest {
                parts,
                key: keys.variant.key,
                rule: r.policy.clone(),
                target: None,
            },
            origin,
        )
        .await
        .map_err(ProxyError::from)?;
    let (mut parts, body) = resp.into_parts();
    image_keys::hide(&mut parts.headers);
    if params_vary(&args.raw) {
        parts
            .headers
            .append(header::VARY, HeaderValue::from_static("Accept"));
    }
    if head {
        // The fill (if this was a miss) goes on without this reader.
        drop(body);
        return Ok(Reply::cached(Response::from_parts(parts, CacheBody::Empty)));
    }
    Ok(Reply::cached(Response::from_parts(parts, body)))
}

fn params_vary(raw: &Raw) -> bool {
    matches!(raw.format.trim(), "auto" | "best")
}
