//! Durations (`"1m30s"`, `"250ms"`, via `humantime`) and sizes (`"100MiB"`, `"1G"`, `"512mb"`,
//! a plain number of bytes) as operators write them.
//!
//! Sizes: the unit is case-insensitive and may follow the number after a space. `B` (or none)
//! is bytes; `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB`, `P`/`PB`, `E`/`EB` are powers of 1000;
//! `Ki`/`KiB`, `Mi`/`MiB`, `Gi`/`GiB`, `Ti`/`TiB`, `Pi`/`PiB`, `Ei`/`EiB` are powers of 1024.
//! A fraction (`1.5GiB`) is rounded down to whole bytes. [`SizePrefixes::Binary`] reads the
//! sizes of Casserole's flags and environment variables, where every prefix is a power of 1024.

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

/// What the prefixes `K`, `M`, `G`... (without `i`) of a size mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizePrefixes {
    /// kura's meaning, the SI one: `K`/`KB` = 1000, `M`/`MB` = 1000², and `KiB`, `MiB`...
    /// (with `i`) powers of 1024.
    Decimal,
    /// Casserole's meaning (Cloud Foundry's `bytefmt`): every prefix is a power of 1024, so
    /// `100M` = `100MB` = `100MiB` = 104,857,600 bytes.
    Binary,
}

/// Parses a size: bytes, or a number with a unit (`K`/`KB`/`M`/`MB`/`G`/`GB` are powers of
/// 1000, `KiB`/`MiB`/`GiB` powers of 1024; any case, e.g. `1gb`, `512mib`).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    parse_size_with(text, SizePrefixes::Decimal)
}

/// Parses a size, reading prefixes without `i` as `prefixes` says.
pub fn parse_size_with(text: &str, prefixes: SizePrefixes) -> Result<u64, UnitError> {
    let fail = |reason: String| UnitError::Size {
        text: text.to_string(),
        reason,
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim_start());
    if number.is_empty() || number == "." {
        return Err(fail("no number".into()));
    }
    let (power, always_binary) = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => (0, false),
        "k" | "kb" => (1, false),
        "m" | "mb" => (2, false),
        "g" | "gb" => (3, false),
        "t" | "tb" => (4, false),
        "p" | "pb" => (5, false),
        "e" | "eb" => (6, false),
        "ki" | "kib" => (1, true),
        "mi" | "mib" => (2, true),
        "gi" | "gib" => (3, true),
        "ti" | "tib" => (4, true),
        "pi" | "pib" => (5, true),
        "ei" | "eib" => (6, true),
        _ => {
            return Err(fail(match prefixes {
                SizePrefixes::Decimal => format!(
                    "unknown unit {unit:?}: use B, K, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
                ),
                SizePrefixes::Binary => format!(
                    "unknown unit {unit:?}: use B, K, M, G, T (here all powers of 1024, as Casserole)"
                ),
            }));
        }
    };
    let base: u64 = if always_binary || prefixes == SizePrefixes::Binary {
        1024
    } else {
        1000
    };
    let factor = base.pow(power);
    let too_large = || fail("more than 2^64 bytes".into());
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(factor).ok_or_else(too_large);
    }
    let v: f64 = number
        .parse()
        .map_err(|_| fail(format!("{number:?} is not a number")))?;
    let bytes = v * factor as f64;
    // 2^64 as f64: anything at or above it does not fit.
    if !bytes.is_finite() || bytes >= 18_446_744_073_709_551_616.0 {
        return Err(too_large());
    }
    Ok(bytes as u64)
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

    /// The spellings a user would expect, each with its documented meaning: `K`/`M`/`G` with
    /// or without `B` are powers of 1000, with `i` powers of 1024, in any case.
    #[test]
    fn size_spellings() {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        const GIB: u64 = 1024 * MIB;
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("512 b", 512),
            (" 1GB ", 1_000_000_000),
            ("1gb", 1_000_000_000),
            ("1g", 1_000_000_000),
            ("1G", 1_000_000_000),
            ("1 GB", 1_000_000_000),
            ("100m", 100_000_000),
            ("100MB", 100_000_000),
            ("16k", 16_000),
            ("16KB", 16_000),
            ("2T", 2_000_000_000_000),
            ("512MiB", 512 * MIB),
            ("512mib", 512 * MIB),
            ("512Mi", 512 * MIB),
            ("512 MiB", 512 * MIB),
            ("1GiB", GIB),
            ("1gib", GIB),
            ("16KiB", 16 * KIB),
            ("16kib", 16 * KIB),
            ("1.5GiB", 3 * GIB / 2),
            ("1.5G", 1_500_000_000),
            ("0.5k", 500),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
        for bad in [
            "",
            "lots",
            "G",
            "-1G",
            "1.2.3G",
            "1 gigabyte",
            "1e3",
            "1GiBB",
            "20EiB",
            "99999999999999999999",
        ] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(
            parse_size("1XB")
                .unwrap_err()
                .to_string()
                .contains("powers of 1024")
        );
    }

    /// Casserole's sizes (bytefmt): every prefix is a power of 1024, `i` or not.
    #[test]
    fn binary_prefixes_read_casserole_sizes() {
        let bin = |t: &str| parse_size_with(t, SizePrefixes::Binary).unwrap();
        assert_eq!(bin("100M"), 100 * 1024 * 1024);
        assert_eq!(bin("100m"), 100 * 1024 * 1024);
        assert_eq!(bin("100MB"), 100 * 1024 * 1024);
        assert_eq!(bin("100MiB"), 100 * 1024 * 1024);
        assert_eq!(bin("1G"), 1 << 30);
        assert_eq!(bin("100G"), 100 << 30);
        assert_eq!(bin("800M"), 800 << 20);
        assert_eq!(bin("64K"), 64 << 10);
        assert_eq!(bin("4096"), 4096);
        let err = parse_size_with("1XB", SizePrefixes::Binary).unwrap_err();
        assert!(err.to_string().contains("all powers of 1024"), "{err}");
    }
}
