//! The cache's origin for one image variant ([`ResizeOrigin`]): it reads the original through
//! the cache (so the original is fetched and stored once for all its variants), transforms it
//! on the rule's bounded pool, and answers with an `ETag` derived from the original's
//! validator and the parameters, so a revalidation whose original did not change is a `304`
//! with no transform.
//!
//! What it costs is bounded: a transform slot is taken before the original is read into
//! memory (requests waiting for a slot hold no source bytes), a variant that changes nothing
//! (no size, the original's format, no quality) is the original passed through, and the
//! not-found image is transformed once per variant and kept (`ResizeAction::not_found`).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, request};
use http_body_util::{BodyExt, Full};
use kura_cache::{CacheRequest, Origin, OriginBody, OriginError};
use kura_config::RuleCache;
use kura_image::{Chosen, Params, PoolError, Slot, TransformError};

use crate::action::image_keys::Keyed;
use crate::action::resize::ResizeAction;
use crate::errors::ProxyError;

/// The cache's origin for one variant.
pub(crate) struct ResizeOrigin {
    pub source: Arc<dyn Origin>,
    pub source_path: String,
    /// The original's key (and identity, when the rule's template names it).
    pub source_key: Keyed,
    pub params: Params,
    pub chosen: Chosen,
    /// Nothing would change: the original is passed through.
    pub keep_source: bool,
    pub rule: Arc<ResizeAction>,
    pub policy: Arc<RuleCache>,
}

impl Origin for ResizeOrigin {
    fn fetch(
        &self,
        req: request::Parts,
    ) -> kura_cache::tier::BoxFuture<'static, Result<Response<OriginBody>, OriginError>> {
        let me = ResizeOrigin {
            source: self.source.clone(),
            source_path: self.source_path.clone(),
            source_key: self.source_key.clone(),
            params: self.params.clone(),
            chosen: self.chosen,
            keep_source: self.keep_source,
            rule: self.rule.clone(),
            policy: self.policy.clone(),
        };
        Box::pin(async move { me.variant(req).await })
    }
}

/// What a client learns of a source that failed: that it failed, not what answered.
fn source_failed() -> OriginError {
    ProxyError::SourceFailed.into()
}

impl ResizeOrigin {
    async fn variant(self, req: request::Parts) -> Result<Response<OriginBody>, OriginError> {
        let mut src_parts = Request::get(self.source_path.as_str())
            .body(())
            .map_err(|_| source_failed())?
            .into_parts()
            .0;
        self.source_key.mark(&mut src_parts);
        let src = self
            .rule
            .cache
            .serve(
                CacheRequest {
                    parts: src_parts,
                    key: self.source_key.key.clone(),
                    rule: self.policy.clone(),
                    target: None,
                },
                self.source_key.origin(self.source.clone()),
            )
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "image source failed");
                source_failed()
            })?;
        let st = src.status();
        if st == StatusCode::NOT_FOUND || st == StatusCode::GONE {
            return self.not_found().await;
        }
        if !st.is_success() {
            tracing::debug!(status = %st, "image source answered an error");
            return Err(source_failed());
        }
        let (parts, body) = src.into_parts();
        let max = self.rule.limits.max_source_bytes;
        let header_validator = parts
            .headers
            .get(header::ETAG)
            .or_else(|| parts.headers.get(header::LAST_MODIFIED))
            .map(|v| v.as_bytes().to_vec());
        // With a validator in the original's head, a revalidation is answered before a byte
        // of the original is read.
        if let Some(v) = &header_validator {
            let etag = self.etag(v);
            if matches_etag(&req.headers, &etag) {
                return Ok(respond(
                    StatusCode::NOT_MODIFIED,
                    self.head(&parts.headers, &etag),
                    Bytes::new(),
                ));
            }
        }
        if self.keep_source {
            let bytes = read_limited(body, max).await?;
            let etag = self.etag(&validator_of(&header_validator, &bytes));
            let mut head = self.head(&parts.headers, &etag);
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                head.insert(header::CONTENT_TYPE, ct.clone());
            }
            return Ok(respond(StatusCode::OK, head, bytes));
        }
        // A slot first: only a request about to transform holds its original in memory.
        let slot = self.slot().await?;
        let bytes = read_limited(body, max).await?;
        let etag = self.etag(&validator_of(&header_validator, &bytes));
        let mut head = self.head(&parts.headers, &etag);
        if matches_etag(&req.headers, &etag) {
            return Ok(respond(StatusCode::NOT_MODIFIED, head, Bytes::new()));
        }
        let out = self.transform(slot, bytes).await?;
        head.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(out.format.mime()),
        );
        Ok(respond(StatusCode::OK, head, Bytes::from(out.bytes)))
    }

    /// The variant's ETag: the original's validator and the parameters.
    fn etag(&self, validator: &[u8]) -> String {
        let mut seed = validator.to_vec();
        seed.extend_from_slice(self.params.canonical(self.chosen).as_bytes());
        format!("\"k{:016x}\"", xxhash_rust::xxh3::xxh3_64(&seed))
    }

    /// The variant's head: its ETag and the original's freshness.
    fn head(&self, source: &HeaderMap, etag: &str) -> HeaderMap {
        let mut head = HeaderMap::new();
        head.insert(header::ETAG, hv(etag));
        for name in [
            header::LAST_MODIFIED,
            header::CACHE_CONTROL,
            header::EXPIRES,
        ] {
            if let Some(v) = source.get(&name) {
                head.insert(name, v.clone());
            }
        }
        head
    }

    async fn slot(&self) -> Result<Slot, OriginError> {
        self.rule
            .transformer
            .slot(self.rule.cfg.timeout)
            .await
            .map_err(|e| self.pool_error(e))
    }

    async fn transform(&self, slot: Slot, src: Bytes) -> Result<kura_image::Output, OriginError> {
        let r = &self.rule;
        let start = std::time::Instant::now();
        let result = slot
            .run(src, self.params.clone(), self.chosen, r.limits.clone())
            .await;
        match result {
            Ok(out) => {
                r.metrics
                    .image_transform_seconds
                    .observe(start.elapsed().as_secs_f64());
                r.metrics.image_transforms.with_label_values(&["ok"]).inc();
                Ok(out)
            }
            Err(e) => Err(self.pool_error(e)),
        }
    }

    /// Counts a failed slot or transform and says what the client gets.
    fn pool_error(&self, e: PoolError) -> OriginError {
        let (label, error) = match e {
            PoolError::Busy(_) => ("busy", ProxyError::ImagesBusy),
            PoolError::TimedOut(_) => ("timeout", ProxyError::ImageTimeout),
            PoolError::Transform(TransformError::Unsupported(m)) => {
                ("unsupported", ProxyError::SourceUnsupported(m))
            }
            PoolError::Transform(TransformError::Encode(m)) => {
                ("error", ProxyError::ImageEncode(m))
            }
            PoolError::Transform(t) => ("bad_source", ProxyError::SourceUnreadable(t.to_string())),
        };
        self.rule
            .metrics
            .image_transforms
            .with_label_values(&[label])
            .inc();
        error.into()
    }

    /// The source is missing: the configured not-found image at the requested size (404, or
    /// 200 with `not_found_as_200`), never stored; without one, a plain 404. Each variant of
    /// the not-found image is transformed once and kept.
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
        let cell = self
            .rule
            .not_found
            .get_with(self.params.canonical(self.chosen), || {
                Arc::new(tokio::sync::OnceCell::new())
            });
        let (bytes, mime) = cell
            .get_or_try_init(|| async {
                let slot = self.slot().await?;
                let out = self
                    .transform(slot, Bytes::from(img.as_ref().clone()))
                    .await?;
                Ok::<_, OriginError>((Bytes::from(out.bytes), out.format.mime()))
            })
            .await?
            .clone();
        head.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
        Ok(respond(code, head, bytes))
    }
}

/// The original's validator from its head, or a hash of its bytes.
fn validator_of(from_head: &Option<Vec<u8>>, bytes: &[u8]) -> Vec<u8> {
    from_head
        .clone()
        .unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(bytes).to_le_bytes().to_vec())
}

fn matches_etag(req: &HeaderMap, etag: &str) -> bool {
    req.get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
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
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "image source body failed");
            source_failed()
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > max {
                return Err(ProxyError::SourceTooLarge(max).into());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
