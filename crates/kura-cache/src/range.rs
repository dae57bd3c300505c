//! Byte ranges (RFC 9110 §14): the client's `Range`, the origin's `Content-Range`.
//!
//! Only single ranges are served from the cache; a multi-range request is answered with the
//! whole representation (a server may ignore `Range`). A malformed `Range` is ignored (200); a
//! well-formed one that no byte satisfies is 416.

/// What a request's `Range` header asks for, against a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// No (usable) range: the whole representation, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Part {
        /// Offset of the first byte.
        start: u64,
        /// Offset of the last byte (inclusive).
        end: u64,
    },
    /// 416.
    Unsatisfiable,
}

/// A parsed `Range` header before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `first-` or `first-last`.
    From {
        /// Offset of the first byte wanted.
        first: u64,
        /// Offset of the last byte wanted (inclusive); `None` for up to the end.
        last: Option<u64>,
    },
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

/// Parses a single-range `bytes=` header; `None` for absent, malformed or multi-range.
pub fn parse(value: &str) -> Option<Spec> {
    let v = value.trim();
    let spec = v.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return b.parse().ok().map(Spec::Suffix);
    }
    let first: u64 = a.parse().ok()?;
    let last = if b.is_empty() {
        None
    } else {
        let last: u64 = b.parse().ok()?;
        if last < first {
            return None;
        }
        Some(last)
    };
    Some(Spec::From { first, last })
}

impl Spec {
    /// Resolves against a representation of `len` bytes.
    pub fn resolve(self, len: u64) -> Wanted {
        match self {
            Spec::From { first, last } => {
                if first >= len {
                    return Wanted::Unsatisfiable;
                }
                let end = last.map_or(len - 1, |l| l.min(len - 1));
                Wanted::Part { start: first, end }
            }
            Spec::Suffix(0) => Wanted::Unsatisfiable,
            Spec::Suffix(n) => {
                if len == 0 {
                    return Wanted::Unsatisfiable;
                }
                Wanted::Part {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
    }
}

/// A `Content-Range: bytes start-end/total` (total `None` for `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// Offset of the first byte.
    pub start: u64,
    /// Offset of the last byte (inclusive).
    pub end: u64,
    /// The complete length; `None` for `*`.
    pub total: Option<u64>,
}

/// Parses `bytes a-b/n` or `bytes a-b/*`; `None` otherwise (including `bytes */n`).
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = b.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => {
            let t: u64 = t.parse().ok()?;
            if end >= t {
                return None;
            }
            Some(t)
        }
    };
    Some(ContentRange { start, end, total })
}

/// The total length from an unsatisfied-range `Content-Range: bytes */n`.
pub fn parse_unsatisfied_total(value: &str) -> Option<u64> {
    value.trim().strip_prefix("bytes */")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve() {
        let r = |h: &str, len| parse(h).map(|s| s.resolve(len));
        assert_eq!(r("bytes=0-1", 10), Some(Wanted::Part { start: 0, end: 1 }));
        assert_eq!(r("bytes=5-", 10), Some(Wanted::Part { start: 5, end: 9 }));
        assert_eq!(
            r("bytes=5-100", 10),
            Some(Wanted::Part { start: 5, end: 9 })
        );
        assert_eq!(r("bytes=-3", 10), Some(Wanted::Part { start: 7, end: 9 }));
        assert_eq!(r("bytes=-30", 10), Some(Wanted::Part { start: 0, end: 9 }));
        assert_eq!(r("bytes=10-", 10), Some(Wanted::Unsatisfiable));
        assert_eq!(r("bytes=-0", 10), Some(Wanted::Unsatisfiable));
        assert_eq!(r("bytes=0-0", 0), Some(Wanted::Unsatisfiable));
    }

    #[test]
    fn malformed_and_multi_ranges_are_ignored() {
        for bad in [
            "bytes=a-b",
            "items=0-1",
            "bytes=5-1",
            "bytes=0-1,3-4",
            "bytes=",
            "0-1",
            "bytes=-",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some(ContentRange {
                start: 0,
                end: 9,
                total: Some(100)
            })
        );
        assert_eq!(parse_content_range("bytes 0-9/*").unwrap().total, None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_unsatisfied_total("bytes */0"), Some(0));
    }
}
