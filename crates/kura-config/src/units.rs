//! Durations (`"1m30s"`, `"250ms"`, via `humantime`) and sizes (`"100MiB"`, `"1G"`, a plain
//! number of bytes, via `bytesize`) as operators write them.

use std::time::Duration;

use crate::file::SizeValue;

/// The longest duration any field takes: beyond it, time arithmetic (`now + ttl`) could
/// overflow, and no operator means it.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses a human duration such as `30s`, `1m 30s` or `250ms`, at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write e.g. \"30s\" or \"250ms\"")
    })?;
    if d > MAX_DURATION {
        return Err(format!("{text:?} is longer than 100 years"));
    }
    Ok(d)
}

/// Parses a size: bytes, or a number with a unit (`K`/`M`/`G` are powers of 1000, `KiB`/`MiB`/`GiB`
/// powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{text:?} is not a size ({e}); write e.g. \"100MiB\" or \"1G\""))
}

pub(crate) fn size_value(v: &SizeValue) -> Result<u64, String> {
    match v {
        SizeValue::Bytes(n) => Ok(*n),
        SizeValue::Text(t) => parse_size(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("1000000000y").is_err());
        assert!(parse_duration("101y").unwrap_err().contains("100 years"));
        assert!(parse_duration("100y").is_ok());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100MiB").unwrap(), 100 * 1024 * 1024);
        assert_eq!(parse_size("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("lots").is_err());
        assert_eq!(size_value(&SizeValue::Bytes(7)).unwrap(), 7);
    }
}
