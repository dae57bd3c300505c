//! Durations (`"1m30s"`, `"250ms"`, via `humantime`) and sizes (`"100MiB"`, `"1G"`, a plain
//! number of bytes, via `bytesize`) as operators write them.

use std::time::Duration;

use crate::file::SizeValue;

/// The longest duration any field takes: beyond it, time arithmetic (`now + ttl`) could
/// overflow, and no operator means it.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Why a duration or size was refused; the message quotes the text and shows a valid form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a duration humantime reads.
    #[error("{text:?} is not a duration ({reason}); write e.g. \"30s\" or \"250ms\"")]
    Duration {
        /// What was written.
        text: String,
        /// The parser's reason.
        reason: String,
    },
    /// Longer than [`MAX_DURATION`].
    #[error("{text:?} is longer than 100 years")]
    TooLong {
        /// What was written.
        text: String,
    },
    /// Not a size.
    #[error("{text:?} is not a size ({reason}); write e.g. \"100MiB\" or \"1G\"")]
    Size {
        /// What was written.
        text: String,
        /// The parser's reason.
        reason: String,
    },
}

/// Parses a human duration such as `30s`, `1m 30s` or `250ms`, at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| UnitError::Duration {
        text: text.to_string(),
        reason: e.to_string(),
    })?;
    if d > MAX_DURATION {
        return Err(UnitError::TooLong {
            text: text.to_string(),
        });
    }
    Ok(d)
}

/// Parses a size: bytes, or a number with a unit (`K`/`M`/`G` are powers of 1000, `KiB`/`MiB`/`GiB`
/// powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| UnitError::Size {
            text: text.to_string(),
            reason: e.to_string(),
        })
}

pub(crate) fn size_value(v: &SizeValue) -> Result<u64, UnitError> {
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
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .to_string()
                .contains("soon")
        );
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("1000000000y").is_err());
        assert!(
            parse_duration("101y")
                .unwrap_err()
                .to_string()
                .contains("100 years")
        );
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
