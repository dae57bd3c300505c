//! The peer protocol, over HTTP/2 (cleartext, prior knowledge) between members.
//!
//! A request is the cache's own origin request (method, path, headers, `Range`, `If-Range`)
//! plus: [`SECRET`] (the shared secret; refused without it), [`RULE`] (the identity of the
//! asker's rule, a hash of its spec), [`URL`] (the client's URL as keyed), [`KEY`] (the key
//! the asker computed) and [`HOPS`] (forwards so far, to stop loops when two members disagree on
//! the owner). The owner derives rule and key itself by routing [`URL`] through its own
//! table, and answers 421 when its rule or key differs (a member running another
//! configuration), so a peer can never make it fill a key of its choosing. The owner answers through its own cache, coalesced with everything else it
//! serves, adds [`OWNER`], and sends the body's CRC32C in the trailer [`CRC`] so the asker can
//! check what it received before using it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};

/// The cluster's shared secret; an owner refuses a request without it (403).
pub const SECRET: HeaderName = HeaderName::from_static("x-kura-peer-secret");
/// The asker's rule identity (a hash of its spec, in hex); the owner answers 421 when its own
/// differs.
pub const RULE: HeaderName = HeaderName::from_static("x-kura-peer-rule");
/// The cache key the asker computed; only compared with the owner's, never used.
pub const KEY: HeaderName = HeaderName::from_static("x-kura-peer-key");
/// The client's URL as keyed, which the owner routes through its own table.
pub const URL: HeaderName = HeaderName::from_static("x-kura-peer-url");
/// Forwards so far, in decimal; at [`MAX_HOPS`] a request is served where it is.
pub const HOPS: HeaderName = HeaderName::from_static("x-kura-peer-hops");
/// The owner's peering address, on its answers (the asker removes it).
pub const OWNER: HeaderName = HeaderName::from_static("x-kura-peer-owner");
/// The trailer carrying the CRC32C of the answer's body, in decimal.
pub const CRC: HeaderName = HeaderName::from_static("x-kura-crc32c");

/// A request that has been forwarded this many times is served locally.
pub const MAX_HOPS: u32 = 2;

/// Removes the protocol's request headers (before a request goes to an origin).
pub fn strip_request(h: &mut HeaderMap) {
    for n in [SECRET, RULE, KEY, URL, HOPS] {
        h.remove(n);
    }
}

/// Forwards so far, from the request headers.
pub fn hops(h: &HeaderMap) -> u32 {
    h.get(HOPS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Compares secrets in time independent of where they differ.
pub fn secret_matches(given: Option<&HeaderValue>, secret: &str) -> bool {
    let Some(given) = given else {
        return false;
    };
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A response body that ends with the [`CRC`] trailer of its data (the owner's side).
pub struct CrcBody<B> {
    inner: B,
    crc: u32,
    done: bool,
}

impl<B> CrcBody<B> {
    /// Passes `inner`'s frames through unchanged and adds the trailer at its end.
    pub fn new(inner: B) -> Self {
        CrcBody {
            inner,
            crc: 0,
            done: false,
        }
    }
}

impl<B> Body for CrcBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.crc = crc32c::crc32c_append(self.crc, d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.done = true;
                let mut t = HeaderMap::new();
                t.insert(CRC, HeaderValue::from(self.crc));
                Poll::Ready(Some(Ok(Frame::trailers(t))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn the_trailer_carries_the_crc_of_the_data() {
        let body = CrcBody::new(Full::new(Bytes::from_static(b"hello world")));
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(
            trailers[CRC].to_str().unwrap(),
            crc32c::crc32c(b"hello world").to_string()
        );
        assert_eq!(&collected.to_bytes()[..], b"hello world");
    }

    #[test]
    fn secrets_and_hops() {
        let v = HeaderValue::from_static("0123456789abcdef");
        assert!(secret_matches(Some(&v), "0123456789abcdef"));
        assert!(!secret_matches(Some(&v), "0123456789abcdeX"));
        assert!(!secret_matches(None, "0123456789abcdef"));
        let mut h = HeaderMap::new();
        assert_eq!(hops(&h), 0);
        h.insert(HOPS, HeaderValue::from(2));
        h.insert(SECRET, v);
        assert_eq!(hops(&h), 2);
        strip_request(&mut h);
        assert!(h.is_empty());
    }
}
