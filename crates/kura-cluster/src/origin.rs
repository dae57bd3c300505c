//! The peer tier, where the cache fetches: [`ClusterOrigin`] wraps a rule's origin. For a
//! cache fill of segment `i` of key `K` it finds the owner of `K#i`; if that is another member
//! it asks the owner (which serves it through its own cache, fetching from the origin only
//! there, coalesced), else it fetches from the origin itself. So the origin sees one fetch
//! per segment for the whole cluster.
//!
//! An answer from a peer is checked before any of it is used: segments (answers no longer
//! than the segment size) are read whole and their length and CRC32C (trailer) verified; a
//! truncated, corrupt or late answer is discarded and the segment is fetched from the origin
//! instead, so a client never receives bad bytes and a member dying mid-transfer costs its
//! clients nothing. Late means: no answer within `peer_timeout` of asking; then, for an owner
//! answering from its cache, the segment not whole by that deadline (an owner behind a
//! degraded link, still sending but slowly, is treated as down like one that went silent); for
//! an owner filling from the origin, a gap of `peer_timeout` between chunks (the origin sets
//! the pace, and asking the origin as well would only add to its load).
//! Longer answers (whole objects passed through) stream, and a CRC mismatch at their end
//! fails the body. Answers from peers carry [`FromPeer`]: this node keeps those
//! segments in memory only, the owner's disk holds them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, request};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use kura_cache::tier::BoxFuture;
use kura_cache::{BoxError, FetchInfo, FromPeer, Origin, OriginBody, OriginError};

use crate::Cluster;
use crate::wire;

/// A rule's origin behind the peer tier, made by [`Cluster::origin`]: a segment another
/// member owns is asked of that owner, anything else is fetched from the rule's origin.
pub struct ClusterOrigin {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) local: Arc<dyn Origin>,
    /// The rule's identity, in hex.
    pub(crate) rule: HeaderValue,
}

/// Why an owner's answer was not used.
#[derive(Debug)]
enum Miss {
    Connect,
    Timeout,
    Status(StatusCode),
    Body(&'static str),
}

impl Origin for ClusterOrigin {
    fn fetch(
        &self,
        mut req: request::Parts,
    ) -> BoxFuture<'static, Result<Response<OriginBody>, OriginError>> {
        let cluster = self.cluster.clone();
        let local = self.local.clone();
        let rule = self.rule.clone();
        Box::pin(async move {
            let hops = wire::hops(&req.headers);
            wire::strip_request(&mut req.headers);
            if let Some((owner, addr, named)) = cluster.route(&req, hops) {
                match ask(&cluster, addr, &req, &rule, named, hops).await {
                    Ok(resp) => return Ok(resp),
                    Err(miss) => {
                        tracing::debug!(peer = %owner, %miss, "owner's answer not used; fetching from the origin");
                        cluster.count_miss(miss_kind(&miss));
                        if matches!(miss, Miss::Connect | Miss::Timeout) {
                            cluster.membership.mark_down(&owner);
                        }
                    }
                }
            }
            cluster.stats.origin_fetches.fetch_add(1, Relaxed);
            local.fetch(req).await
        })
    }
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Connect => write!(f, "cannot connect"),
            Miss::Timeout => write!(f, "timed out"),
            Miss::Status(s) => write!(f, "answered {s}"),
            Miss::Body(why) => write!(f, "body: {why}"),
        }
    }
}

fn miss_kind(m: &Miss) -> &'static str {
    match m {
        Miss::Connect => "connect",
        Miss::Timeout => "timeout",
        Miss::Status(_) => "status",
        Miss::Body(_) => "body",
    }
}

impl Cluster {
    /// The owner of this fetch, when it is another member: its id, address and what names
    /// the fetch to it (the key, and the client URL it derives the key from).
    fn route(&self, req: &request::Parts, hops: u32) -> Option<(Arc<str>, SocketAddr, Named)> {
        let info = req.extensions.get::<FetchInfo>()?;
        // Without the client's URL the owner could not check the key: fetch here.
        let target = HeaderValue::from_str(info.target.as_deref()?).ok()?;
        if info.pass || hops >= wire::MAX_HOPS {
            return None;
        }
        let index = req
            .headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(0, |start| start / self.segment_size.max(1));
        let owner = self.membership.owner(&format!("{}#{index}", info.key));
        if self.membership.is_me(&owner) {
            return None;
        }
        let addr = owner.parse().ok()?;
        let key = HeaderValue::from_str(&info.key).ok()?;
        Some((owner, addr, Named { key, target }))
    }
}

/// What names a fetch to its owner.
struct Named {
    key: HeaderValue,
    target: HeaderValue,
}

/// Asks the owner for the fetch `req` stands for.
async fn ask(
    cluster: &Cluster,
    addr: SocketAddr,
    req: &request::Parts,
    rule: &HeaderValue,
    named: Named,
    hops: u32,
) -> Result<Response<OriginBody>, Miss> {
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::new(Empty::<Bytes>::new());
    *out.method_mut() = req.method.clone();
    *out.uri_mut() = format!("http://{addr}{path}")
        .parse()
        .map_err(|_| Miss::Body("uri"))?;
    let h = out.headers_mut();
    *h = req.headers.clone();
    // HTTP/2 forbids connection-specific headers.
    kura_http::strip_hop_by_hop(h);
    h.insert(
        wire::SECRET,
        HeaderValue::from_str(&cluster.secret).map_err(|_| Miss::Body("secret"))?,
    );
    h.insert(wire::RULE, rule.clone());
    h.insert(wire::KEY, named.key);
    h.insert(wire::URL, named.target);
    h.insert(wire::HOPS, HeaderValue::from(hops + 1));
    let timeout = cluster.peer_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let resp =
        match tokio::time::timeout_at(deadline, cluster.client.send(addr, out, timeout)).await {
            Err(_) => return Err(Miss::Timeout),
            Ok(Err(crate::client::PeerError::Connect(_))) => return Err(Miss::Connect),
            Ok(Err(_)) => return Err(Miss::Connect),
            Ok(Ok(r)) => r,
        };
    let status = resp.status();
    if status.is_server_error() || matches!(status.as_u16(), 400 | 403 | 421) {
        return Err(Miss::Status(status));
    }
    let (mut parts, body) = resp.into_parts();
    // An owner answering from its cache must deliver the segment whole by the deadline, not
    // merely keep it trickling in; one filling from the origin only has to keep it coming.
    let from_cache = parts
        .headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').any(|p| p.trim() == "hit"));
    let limit = if from_cache {
        Limit::Deadline(deadline)
    } else {
        Limit::Idle(timeout)
    };
    parts.headers.remove("cache-status");
    parts.headers.remove(wire::OWNER);
    parts.extensions.insert(FromPeer);
    parts.version = http::Version::HTTP_11;
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body: OriginBody = match length {
        Some(len) if len <= cluster.segment_size => {
            let data = read_checked(body, len, limit).await?;
            cluster
                .stats
                .peer_bytes
                .fetch_add(data.len() as u64, Relaxed);
            Full::new(data).map_err(|e| match e {}).boxed_unsync()
        }
        _ => CheckedBody {
            inner: body,
            crc: 0,
            counted: cluster.stats.clone(),
            done: false,
        }
        .boxed_unsync(),
    };
    cluster.stats.peer_answers.fetch_add(1, Relaxed);
    Ok(Response::from_parts(parts, body))
}

/// How long a segment's body may take.
#[derive(Clone, Copy)]
enum Limit {
    /// Whole by then.
    Deadline(tokio::time::Instant),
    /// No longer than this between chunks.
    Idle(std::time::Duration),
}

/// Reads a whole answer of `len` bytes within `limit` and checks it against the owner's CRC
/// trailer.
async fn read_checked(mut body: Incoming, len: u64, limit: Limit) -> Result<Bytes, Miss> {
    let mut data = BytesMut::with_capacity(len as usize);
    let mut trailer_crc = None;
    loop {
        let by = match limit {
            Limit::Deadline(at) => at,
            Limit::Idle(gap) => tokio::time::Instant::now() + gap,
        };
        let frame = match tokio::time::timeout_at(by, body.frame()).await {
            Err(_) => return Err(Miss::Timeout),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Miss::Body("broken")),
            Ok(Some(Ok(f))) => f,
        };
        if let Some(d) = frame.data_ref() {
            if data.len() + d.len() > len as usize {
                return Err(Miss::Body("longer than announced"));
            }
            data.extend_from_slice(d);
        } else if let Some(t) = frame.trailers_ref() {
            trailer_crc = t
                .get(wire::CRC)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok());
        }
    }
    if data.len() as u64 != len {
        return Err(Miss::Body("truncated"));
    }
    if trailer_crc != Some(crc32c::crc32c(&data)) {
        return Err(Miss::Body("checksum"));
    }
    Ok(data.freeze())
}

/// A long answer streamed from a peer; a CRC mismatch (or a missing trailer) fails its end.
struct CheckedBody {
    inner: Incoming,
    crc: u32,
    counted: Arc<crate::ClusterStats>,
    done: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("peer answer failed its checksum")]
struct ChecksumError;

impl Body for CheckedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            return match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(Some(Err(Box::new(ChecksumError)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        self.crc = crc32c::crc32c_append(self.crc, d);
                        self.counted.peer_bytes.fetch_add(d.len() as u64, Relaxed);
                        Poll::Ready(Some(Ok(frame)))
                    } else if let Some(t) = frame.trailers_ref() {
                        let sent = t
                            .get(wire::CRC)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u32>().ok());
                        if sent == Some(self.crc) {
                            self.done = true;
                            Poll::Ready(None)
                        } else {
                            Poll::Ready(Some(Err(Box::new(ChecksumError))))
                        }
                    } else {
                        continue;
                    }
                }
            };
        }
    }
}
