//! The `resize` rule action: an image URL → checked parameters → a variant served through the
//! cache. The variant's cache key is the source's key plus the normalised parameters (and the
//! format chosen for the client's `Accept`), so equivalent URLs share an entry. On a miss the
//! cache asks [`ResizeOrigin`], which reads the original through the cache too (the source is
//! cached once for all its variants), transforms it on the bounded pool, and answers with an
//! `ETag` derived from the source's validator and the parameters: a revalidation whose source
//! did not change gets a 304 without transforming again, and clients' conditional requests are
//! answered from the stored variant.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version, request};
use http_body_util::{BodyExt, Full};
use kura_cache::key::PrimaryKey;
use kura_cache::{Cache, CacheRequest, Origin, OriginBody, OriginError};
use kura_config::{HostPattern, RuleCache, RuleResize};
use kura_image::{Chosen, Limits, Params, PoolError, Raw, Signer, TransformError, Transformer};

use crate::body::ProxyBody;
use crate::errors::ProxyError;
use crate::headers;
use crate::origin::{PoolOrigin, proxy_error};
use crate::router::Rule;
use crate::state::Runtime;
use crate::upstream::Pool;

/// A resize rule ready to serve: its settings, its transform pool and its signer.
pub struct ResizeRuntime {
    pub cfg: RuleResize,
    pub limits: Limits,
    pub transformer: Transformer,
    pub signer: Option<Signer>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl ResizeRuntime {
    pub fn new(
        cfg: &RuleResize,
        metrics: Option<&Arc<crate::metrics::Metrics>>,
    ) -> Result<Self, String> {
        let signer = match &cfg.signature {
            Some(s) => Some(Signer::from_hex(&s.keys, &s.salts)?),
            None => None,
        };
        Ok(ResizeRuntime {
            limits: Limits {
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
            metrics: metrics.cloned(),
        })
    }
}

/// What the rule's templates made of one request path.
pub struct ResizeArgs {
    pub source: String,
    pub raw: Raw,
    /// The signature capture and the path after it (the signed text).
    pub signature: Option<(String, String)>,
}

/// Expands the rule's templates with the path's captures.
pub fn args(
    r: &RuleResize,
    caps: &regex::Captures<'_>,
    vars: &kura_config::Vars<'_>,
) -> Result<ResizeArgs, kura_config::target::TargetError> {
    let t = |t: &Option<kura_config::Template>| match t {
        Some(t) => t.expand_checked(Some(caps), vars),
        None => Ok(String::new()),
    };
    let signature = r.signature.as_ref().and_then(|s| {
        let m = caps.name(&s.capture)?;
        Some((m.as_str().to_string(), vars.path[m.end()..].to_string()))
    });
    let mut format = t(&r.format)?;
    if format.trim().is_empty() && r.default_format != "source" {
        format = r.default_format.clone();
    }
    Ok(ResizeArgs {
        source: r.source.expand_checked(Some(caps), vars)?,
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

fn status(code: StatusCode, msg: impl Into<String>) -> ProxyError {
    ProxyError::Status(code, msg.into())
}

/// Answers an image request.
pub async fn serve(
    rt: &Runtime,
    rule: &Rule,
    cache: &Arc<Cache>,
    args: ResizeArgs,
    method: &Method,
    client_headers: &HeaderMap,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (Some(r), Some(policy)) = (rule.resize.as_ref(), rule.cache.clone()) else {
        return Err(ProxyError::NoRoute);
    };
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "image routes answer GET and HEAD",
        ));
    }
    if let Some(signer) = &r.signer {
        match &args.signature {
            Some((sig, signed)) if signer.verify(sig, signed) => {}
            Some(_) => return Err(status(StatusCode::FORBIDDEN, "invalid URL signature")),
            None => return Err(status(StatusCode::FORBIDDEN, "missing URL signature")),
        }
    }
    let params = Params::parse(&args.raw, &r.limits, &r.cfg.fit_aliases)
        .map_err(|m| status(StatusCode::BAD_REQUEST, m))?;
    let accept = client_headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let chosen = params.choose(accept);
    let (source_origin, source_path, source_id) = source(rule, r, &args.source).await?;
    // Originals and variants live in the rule's own key kinds, which no client URL maps to.
    let source_key = PrimaryKey::source(rule.id, &source_id);
    let variant_key = PrimaryKey::image(&source_key, &params.canonical(chosen));

    let mut parts = Request::builder()
        .method(method.clone())
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
    let origin = Arc::new(ResizeOrigin {
        cache: cache.clone(),
        source: source_origin,
        source_path,
        source_key,
        params,
        chosen,
        rule: r.clone(),
        policy: policy.clone(),
    });
    let resp = cache
        .serve(
            CacheRequest {
                parts,
                key: variant_key,
                rule: policy,
                target: None,
            },
            origin,
        )
        .await
        .map_err(proxy_error)?;
    let (mut parts, body) = resp.into_parts();
    if params_vary(&args.raw) {
        parts
            .headers
            .append(header::VARY, HeaderValue::from_static("Accept"));
    }
    headers::append_via(&mut parts.headers, &rt.via_11);
    parts.version = Version::HTTP_11;
    rule.response_headers.apply(&mut parts.headers);
    Ok(Response::from_parts(parts, ProxyBody::cache(body)))
}

fn params_vary(raw: &Raw) -> bool {
    matches!(raw.format.trim(), "auto" | "best")
}

/// Where the original comes from: a path on the rule's pool, or an absolute URL (checked
/// against `allowed_sources` and, unless allowed, refused when it resolves to loopback or
/// link-local addresses).
async fn source(
    rule: &Rule,
    r: &ResizeRuntime,
    src: &str,
) -> Result<(Arc<dyn Origin>, String, String), ProxyError> {
    if !(src.starts_with("http://") || src.starts_with("https://")) {
        let path = if src.starts_with('/') {
            src.to_string()
        } else {
            format!("/{src}")
        };
        let id = format!("{}{path}", rule.pool.spec.name);
        return Ok((rule.origin.clone(), path, id));
    }
    let uri: http::Uri = src
        .parse()
        .map_err(|_| status(StatusCode::BAD_REQUEST, "the source is not a URL"))?;
    // The host as kura validates any Host: no userinfo (`allowed@evil`), names or IP
    // literals only.
    let authority =
        kura_config::target::Authority::parse(uri.authority().map(|a| a.as_str()).unwrap_or(""))
            .map_err(|_| {
                status(
                    StatusCode::BAD_REQUEST,
                    "the source URL's host is malformed",
                )
            })?;
    let host = authority.host.clone();
    if !r.cfg.allowed_sources.is_empty()
        && !r.cfg.allowed_sources.iter().any(|p| host_matches(p, &host))
    {
        return Err(status(
            StatusCode::FORBIDDEN,
            format!("source host {host:?} is not allowed"),
        ));
    }
    let tls = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if !r.cfg.allow_local_sources {
        let addrs = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| status(StatusCode::BAD_GATEWAY, format!("source host: {e}")))?;
        for a in addrs {
            if is_local(a.ip()) {
                return Err(status(
                    StatusCode::FORBIDDEN,
                    "the source resolves to a loopback or link-local address",
                ));
            }
        }
    }
    let base = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or(&host)
    );
    let backend = kura_config::parse_backend(&base)
        .map_err(|e| status(StatusCode::BAD_REQUEST, format!("source: {e}")))?;
    let spec = kura_config::PoolSpec {
        name: format!("source:{}", backend.authority),
        backends: vec![backend],
        clusters: Vec::new(),
        preserve_host: false,
        ..rule.pool.spec.clone()
    };
    let pool = Pool::new(spec, rule.pool_metrics(), 1);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Ok((Arc::new(PoolOrigin(pool)), path, src.to_string()))
}

fn host_matches(p: &HostPattern, host: &str) -> bool {
    match p {
        HostPattern::Any => true,
        HostPattern::Exact(h) => h == host,
        HostPattern::Wildcard(s) => host.len() > s.len() + 1 && host.ends_with(&format!(".{s}")),
    }
}

fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v) => v.is_loopback() || v.is_link_local() || v.is_unspecified(),
        IpAddr::V6(v) => {
            v.is_loopback() || v.is_unspecified() || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The cache's origin for one variant: reads the source through the cache and transforms it.
struct ResizeOrigin {
    cache: Arc<Cache>,
    source: Arc<dyn Origin>,
    source_path: String,
    source_key: PrimaryKey,
    params: Params,
    chosen: Chosen,
    rule: Arc<ResizeRuntime>,
    policy: Arc<RuleCache>,
}

impl Origin for ResizeOrigin {
    fn fetch(
        &self,
        req: request::Parts,
    ) -> kura_cache::tier::BoxFuture<'static, Result<Response<OriginBody>, OriginError>> {
        let me = ResizeOrigin {
            cache: self.cache.clone(),
            source: self.source.clone(),
            source_path: self.source_path.clone(),
            source_key: self.source_key.clone(),
            params: self.params.clone(),
            chosen: self.chosen,
            rule: self.rule.clone(),
            policy: self.policy.clone(),
        };
        Box::pin(async move { me.variant(req).await })
    }
}

impl ResizeOrigin {
    async fn variant(self, req: request::Parts) -> Result<Response<OriginBody>, OriginError> {
        let src_parts = Request::get(self.source_path.as_str())
            .body(())
            .map_err(|e| OriginError::new(StatusCode::BAD_GATEWAY, e.to_string()))?
            .into_parts()
            .0;
        let src = self
            .cache
            .serve(
                CacheRequest {
                    parts: src_parts,
                    key: self.source_key.clone(),
                    rule: self.policy.clone(),
                    target: None,
                },
                self.source.clone(),
            )
            .await?;
        let st = src.status();
        if st == StatusCode::NOT_FOUND || st == StatusCode::GONE {
            return self.not_found().await;
        }
        if !st.is_success() {
            return Err(OriginError::new(
                StatusCode::BAD_GATEWAY,
                format!("the source answered {st}"),
            ));
        }
        let (parts, body) = src.into_parts();
        let max = self.rule.limits.max_source_bytes;
        let bytes = read_limited(body, max).await?;
        let validator = parts
            .headers
            .get(header::ETAG)
            .or_else(|| parts.headers.get(header::LAST_MODIFIED))
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(&bytes).to_le_bytes().to_vec());
        let mut seed = validator;
        seed.extend_from_slice(self.params.canonical(self.chosen).as_bytes());
        let etag = format!("\"k{:016x}\"", xxhash_rust::xxh3::xxh3_64(&seed));
        let mut head = HeaderMap::new();
        head.insert(header::ETAG, hv(&etag));
        for name in [
            header::LAST_MODIFIED,
            header::CACHE_CONTROL,
            header::EXPIRES,
        ] {
            if let Some(v) = parts.headers.get(&name) {
                head.insert(name, v.clone());
            }
        }
        if req
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
        {
            return Ok(respond(StatusCode::NOT_MODIFIED, head, Bytes::new()));
        }
        let out = self.transform(bytes).await?;
        head.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(out.format.mime()),
        );
        Ok(respond(StatusCode::OK, head, Bytes::from(out.bytes)))
    }

    async fn transform(&self, src: Bytes) -> Result<kura_image::Output, OriginError> {
        let r = &self.rule;
        let start = std::time::Instant::now();
        let result = r
            .transformer
            .run(
                src,
                self.params.clone(),
                self.chosen,
                r.limits.clone(),
                r.cfg.timeout,
            )
            .await;
        if let Some(m) = &r.metrics {
            let label = match &result {
                Ok(_) => {
                    m.image_transform_seconds
                        .observe(start.elapsed().as_secs_f64());
                    "ok"
                }
                Err(PoolError::Busy(_)) => "busy",
                Err(PoolError::TimedOut(_)) => "timeout",
                Err(PoolError::Transform(TransformError::Unsupported(_))) => "unsupported",
                Err(PoolError::Transform(TransformError::Encode(_))) => "error",
                Err(PoolError::Transform(_)) => "bad_source",
            };
            m.image_transforms.with_label_values(&[label]).inc();
        }
        result.map_err(|e| {
            let code = match &e {
                PoolError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                PoolError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
                PoolError::Transform(TransformError::Unsupported(_)) => {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                }
                PoolError::Transform(TransformError::Encode(_)) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                PoolError::Transform(_) => StatusCode::BAD_GATEWAY,
            };
            OriginError::new(code, e.to_string())
        })
    }

    /// The source is missing: the configured not-found image at the requested size (404, or
    /// 200 with `not_found_as_200`), never stored; without one, a plain 404.
    async fn not_found(&self) -> Result<Response<OriginBody>, OriginError> {
        let mut head = HeaderMap::new();
        head.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let code = if self.rule.cfg.not_found_as_200 {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        let Some(img) = self.rule.cfg.not_found.clone() else {
            head.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Ok(respond(
                StatusCode::NOT_FOUND,
                head,
                Bytes::from_static(b"source image not found\n"),
            ));
        };
        let out = self.transform(Bytes::from(img.as_ref().clone())).await?;
        head.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(out.format.mime()),
        );
        Ok(respond(code, head, Bytes::from(out.bytes)))
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("\"\""))
}

fn respond(code: StatusCode, head: HeaderMap, body: Bytes) -> Response<OriginBody> {
    let len = body.len();
    let mut resp = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = code;
    *resp.headers_mut() = head;
    if code != StatusCode::NOT_MODIFIED {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}

/// Reads a source body whole, refusing one larger than `max` as soon as it is.
async fn read_limited<B>(mut body: B, max: u64) -> Result<Bytes, OriginError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| OriginError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > max {
                return Err(OriginError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the source is larger than max_source_bytes ({max})"),
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
