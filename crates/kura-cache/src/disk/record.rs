//! The `.head` file: an entry (object head or Vary record) and its segment table, as JSON
//! followed by a newline and the CRC32C of the JSON in hex. A torn or altered file fails the
//! check and is treated as absent. JSON, not a binary format, because the policy's serde form
//! needs a self-describing format and a head file is small.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};

use crate::object::{Entry, Object, VaryRecord};

/// A stored segment: its length and CRC32C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegMeta {
    /// Length in bytes.
    pub len: u64,
    /// CRC32C of the bytes, checked before any is served.
    pub crc: u32,
}

/// A `.head` file's JSON: a Vary record (`vary` set) or an object's head (`object` set).
#[derive(Serialize, Deserialize)]
pub struct Record {
    /// The full (primary or variant) key; compared on read to rule out hash collisions.
    pub key: String,
    /// For a Vary record: the header names variants are keyed by.
    #[serde(default)]
    pub vary: Option<Vec<String>>,
    /// For an object: its head and segment table.
    #[serde(default)]
    pub object: Option<ObjectRecord>,
}

#[derive(Serialize, Deserialize)]
pub struct ObjectRecord {
    pub version: u64,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub policy: CachePolicy,
    pub length: Option<u64>,
    pub segment_size: u64,
    pub ranged: bool,
    pub stored_at_ms: u64,
    pub fresh_until_ms: u64,
    pub age_at_store_ms: u64,
    pub swr_ms: u64,
    pub sie_ms: u64,
    pub must_revalidate: bool,
    pub allows_auth: bool,
    /// Indexed by segment; `None` for segments not (yet) on disk.
    pub segments: Vec<Option<SegMeta>>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Record {
    /// `None` when a header value is not UTF-8 (such objects stay in memory only).
    pub fn from_entry(entry: &Entry, segments: Vec<Option<SegMeta>>) -> Option<Record> {
        Some(match entry {
            Entry::Vary(v) => Record {
                key: v.key.clone(),
                vary: Some(v.names.iter().map(|n| n.as_str().to_string()).collect()),
                object: None,
            },
            Entry::Object(o) => {
                let mut headers = Vec::with_capacity(o.headers.len());
                for (k, v) in &o.headers {
                    headers.push((k.as_str().to_string(), v.to_str().ok()?.to_string()));
                }
                Record {
                    key: o.key.clone(),
                    vary: None,
                    object: Some(ObjectRecord {
                        version: o.version,
                        status: o.status.as_u16(),
                        headers,
                        policy: o.policy.clone(),
                        length: o.length,
                        segment_size: o.segment_size,
                        ranged: o.ranged,
                        stored_at_ms: ms(o.stored_at),
                        fresh_until_ms: ms(o.fresh_until),
                        age_at_store_ms: o.age_at_store.as_millis() as u64,
                        swr_ms: o.stale_while_revalidate.as_millis() as u64,
                        sie_ms: o.stale_if_error.as_millis() as u64,
                        must_revalidate: o.must_revalidate,
                        allows_auth: o.allows_auth,
                        segments,
                    }),
                }
            }
        })
    }

    /// The entry it describes; `None` when a header, header name or status does not parse, or
    /// it holds neither an object nor a Vary record.
    pub fn to_entry(&self) -> Option<Entry> {
        if let Some(names) = &self.vary {
            let names = names
                .iter()
                .map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect::<Option<Vec<_>>>()?;
            return Some(Entry::Vary(Arc::new(VaryRecord {
                key: self.key.clone(),
                names,
            })));
        }
        let o = self.object.as_ref()?;
        let mut headers = HeaderMap::with_capacity(o.headers.len());
        for (k, v) in &o.headers {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            );
        }
        Some(Entry::Object(Arc::new(Object {
            key: self.key.clone(),
            version: o.version,
            status: StatusCode::from_u16(o.status).ok()?,
            headers,
            policy: o.policy.clone(),
            length: o.length,
            segment_size: o.segment_size,
            ranged: o.ranged,
            stored_at: time(o.stored_at_ms),
            fresh_until: time(o.fresh_until_ms),
            age_at_store: Duration::from_millis(o.age_at_store_ms),
            stale_while_revalidate: Duration::from_millis(o.swr_ms),
            stale_if_error: Duration::from_millis(o.sie_ms),
            must_revalidate: o.must_revalidate,
            allows_auth: o.allows_auth,
        })))
    }

    /// The object's version; 0 for a Vary record.
    pub fn version(&self) -> u64 {
        self.object.as_ref().map_or(0, |o| o.version)
    }

    /// The segment table (`None` for segments not on disk); empty for a Vary record.
    pub fn segments(&self) -> &[Option<SegMeta>] {
        self.object.as_ref().map_or(&[], |o| &o.segments)
    }

    /// The file's bytes: the JSON, a newline, and the JSON's CRC32C as 8 hex digits.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(format!("\n{crc:08x}").as_bytes());
        out
    }

    /// `None` when the checksum or the JSON does not hold.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() < 9 {
            return None;
        }
        let (json, trailer) = bytes.split_at(bytes.len() - 9);
        if trailer[0] != b'\n' {
            return None;
        }
        let crc = u32::from_str_radix(std::str::from_utf8(&trailer[1..]).ok()?, 16).ok()?;
        if crc32c::crc32c(json) != crc {
            return None;
        }
        serde_json::from_slice(json).ok()
    }
}
