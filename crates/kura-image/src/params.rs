//! Resize parameters as a URL gives them (strings from a rule's captures), checked against the
//! rule's limits and normalised so that equivalent URLs share one cache entry: DPR is folded
//! into the size, defaults are filled in, and [`Params::canonical`] is the same text for
//! `w=300&dpr=2` and `w=600`.

use std::collections::BTreeMap;
use std::fmt;

/// How the output box is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The whole image inside the box, aspect ratio kept (one side may be smaller).
    Contain,
    /// The box covered, aspect ratio kept, the overflow cropped around the gravity.
    Cover,
    /// Stretched to the box exactly.
    Fill,
}

/// Where a `cover` crop is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gravity {
    /// The middle of the image (the default).
    Center,
    /// The top edge, centred horizontally.
    North,
    /// The bottom edge, centred horizontally.
    South,
    /// The right edge, centred vertically.
    East,
    /// The left edge, centred vertically.
    West,
    /// The top-right corner.
    NorthEast,
    /// The top-left corner.
    NorthWest,
    /// The bottom-right corner.
    SouthEast,
    /// The bottom-left corner.
    SouthWest,
}

impl Fit {
    /// The name as configured: `contain`, `cover` or `fill`.
    pub fn name(self) -> &'static str {
        match self {
            Fit::Contain => "contain",
            Fit::Cover => "cover",
            Fit::Fill => "fill",
        }
    }
}

impl Gravity {
    /// The name as configured: `center`, `north`, `south`, `east`, `west`, `ne`, `nw`, `se`
    /// or `sw`.
    pub fn name(self) -> &'static str {
        match self {
            Gravity::Center => "center",
            Gravity::North => "north",
            Gravity::South => "south",
            Gravity::East => "east",
            Gravity::West => "west",
            Gravity::NorthEast => "ne",
            Gravity::NorthWest => "nw",
            Gravity::SouthEast => "se",
            Gravity::SouthWest => "sw",
        }
    }
}

/// An output format kura can encode (sources may also be GIF, which is only read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JPEG: lossy at the asked quality; an alpha channel is dropped.
    Jpeg,
    /// PNG: lossless and keeps transparency; the quality is ignored.
    Png,
    /// WebP: lossy at the asked quality, transparency kept; fast to encode.
    Webp,
    /// AVIF: lossy at the asked quality, the smallest files but the slowest to encode.
    /// Only written: AVIF sources are refused.
    Avif,
}

impl Format {
    /// The media type for `Content-Type` (`image/webp`).
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
        }
    }

    /// The lowercase name URLs use and cache keys and `Display` show (`webp`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Avif => "avif",
        }
    }

    fn parse(s: &str) -> Option<Format> {
        match s {
            "jpeg" | "jpg" => Some(Format::Jpeg),
            "png" => Some(Format::Png),
            "webp" => Some(Format::Webp),
            "avif" => Some(Format::Avif),
            _ => None,
        }
    }
}

/// The output format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// This format whatever the client accepts (`format=webp`).
    Fixed(Format),
    /// The best the client's `Accept` allows (the response varies by `Accept`).
    Auto,
    /// The source's own format (PNG stays PNG, GIF becomes PNG).
    Source,
}

/// The output decided before the source is read: a fixed format, the source's own, or JPEG
/// (PNG when the image has transparency) for clients that announce nothing better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// This format: asked for explicitly, or picked from `Accept` for `auto`.
    Fixed(Format),
    /// The source's own format, known once it is decoded: JPEG and WebP stay, others become PNG.
    Source,
    /// JPEG, or PNG when the decoded image has transparency: for clients that accept neither
    /// WebP nor AVIF.
    Legacy,
}

impl Chosen {
    /// The output's part of a variant's cache key: the format's name, `source` or `legacy`.
    pub fn label(self) -> &'static str {
        match self {
            Chosen::Fixed(f) => f.name(),
            Chosen::Source => "source",
            Chosen::Legacy => "legacy",
        }
    }
}

/// A rule's limits and defaults (Katana's thumb_* settings among them).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageLimits {
    /// Largest output width in pixels, DPR applied; a wider request is refused with a 400.
    pub max_width: u32,
    /// Largest output height in pixels, DPR applied; a taller request is refused with a 400.
    pub max_height: u32,
    /// Highest encoder quality a URL may ask for (1 to 100).
    pub max_quality: u8,
    /// Encoder quality when the URL gives none (1 to `max_quality`).
    pub default_quality: u8,
    /// Largest device pixel ratio a URL may ask for.
    pub max_dpr: f32,
    /// Checked from the header before decoding.
    pub max_source_pixels: u64,
    /// Largest source kura reads, in bytes; a bigger one is refused before it is decoded.
    pub max_source_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_width: 1920,
            max_height: 1080,
            max_quality: 90,
            default_quality: 75,
            max_dpr: 4.0,
            max_source_pixels: 50_000_000,
            max_source_bytes: 50 * 1024 * 1024,
        }
    }
}

/// Parameters as captured from a URL; empty strings count as absent.
#[derive(Debug, Default, Clone)]
pub struct Raw {
    /// Width in CSS pixels, before DPR; empty or `0` leaves it to the aspect ratio.
    pub width: String,
    /// Height in CSS pixels, before DPR; empty or `0` leaves it to the aspect ratio.
    pub height: String,
    /// `contain`, `cover`, `fill`, or a word the rule's aliases map to one; empty means `contain`.
    pub fit: String,
    /// Compass point anchoring a `cover` crop (`n`, `north`, `ne`, `soea`…); empty means centre.
    pub gravity: String,
    /// Encoder quality, 1 to `max_quality`; empty takes `default_quality`.
    pub quality: String,
    /// `jpeg` (or `jpg`), `png`, `webp`, `avif`, `auto` (or `best`); empty keeps the source's.
    pub format: String,
    /// Device pixel ratio multiplying width and height, above 0 and at most `max_dpr`; empty
    /// means 1.
    pub dpr: String,
}

/// Checked, normalised parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Output box in pixels (DPR applied); `None` keeps the aspect ratio from the other side.
    pub width: Option<u32>,
    /// Output box height in pixels (DPR applied); `None` keeps the aspect ratio from the width.
    pub height: Option<u32>,
    /// How the image fills the box; anything but `Contain` comes with both sides set.
    pub fit: Fit,
    /// Where a `Cover` crop is anchored (the other fits ignore it).
    pub gravity: Gravity,
    /// Encoder quality, 1 to the rule's `max_quality` (PNG ignores it).
    pub quality: u8,
    /// The output format asked for; [`Params::choose`] settles it against `Accept`.
    pub format: OutputFormat,
}

/// Parameters a client sent that no transform takes: its fault (400), with the message it
/// is shown (which parameter, and what is accepted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamsError(pub String);

impl Params {
    /// Checks `raw` against `limits`; `aliases` maps URL words to fit names (`f` → `fill`).
    /// The error's message is what a client gets with its 400.
    pub fn parse(
        raw: &Raw,
        limits: &ImageLimits,
        aliases: &BTreeMap<String, String>,
    ) -> Result<Params, ParamsError> {
        Self::check(raw, limits, aliases).map_err(ParamsError)
    }

    fn check(
        raw: &Raw,
        limits: &ImageLimits,
        aliases: &BTreeMap<String, String>,
    ) -> Result<Params, String> {
        let dpr = match raw.dpr.trim() {
            "" => 1.0,
            s => match s.parse::<f32>() {
                Ok(d) if d > 0.0 && d <= limits.max_dpr && d.is_finite() => d,
                _ => {
                    return Err(format!(
                        "dpr {s:?} must be a number above 0 and at most {}",
                        limits.max_dpr
                    ));
                }
            },
        };
        let side = |name: &str, s: &str, max: u32| -> Result<Option<u32>, String> {
            let s = s.trim();
            if s.is_empty() || s == "0" {
                return Ok(None);
            }
            let n: u32 = s
                .parse()
                .map_err(|_| format!("{name} {s:?} is not a whole number of pixels"))?;
            let scaled = (n as f32 * dpr).round() as u32;
            if scaled > max {
                return Err(format!(
                    "{name} {scaled} (with dpr {dpr}) is above the limit of {max}"
                ));
            }
            Ok(Some(scaled.max(1)))
        };
        let width = side("width", &raw.width, limits.max_width)?;
        let height = side("height", &raw.height, limits.max_height)?;
        let fit_word = raw.fit.trim().to_ascii_lowercase();
        let fit_word = aliases.get(&fit_word).cloned().unwrap_or(fit_word);
        let fit = match fit_word.as_str() {
            "" | "contain" => Fit::Contain,
            "cover" => Fit::Cover,
            "fill" => Fit::Fill,
            other => return Err(format!("fit {other:?} is not contain, cover or fill")),
        };
        if fit != Fit::Contain && (width.is_none() || height.is_none()) {
            return Err(format!(
                "fit {} needs both a width and a height",
                fit_word.as_str()
            ));
        }
        let gravity = match raw.gravity.trim().to_ascii_lowercase().as_str() {
            "" | "c" | "center" | "ce" => Gravity::Center,
            "n" | "north" | "no" => Gravity::North,
            "s" | "south" | "so" => Gravity::South,
            "e" | "east" | "ea" => Gravity::East,
            "w" | "west" | "we" => Gravity::West,
            "ne" | "northeast" | "noea" => Gravity::NorthEast,
            "nw" | "northwest" | "nowe" => Gravity::NorthWest,
            "se" | "southeast" | "soea" => Gravity::SouthEast,
            "sw" | "southwest" | "sowe" => Gravity::SouthWest,
            other => return Err(format!("gravity {other:?} is not a compass point")),
        };
        let quality = match raw.quality.trim() {
            "" => limits.default_quality,
            s => match s.parse::<u8>() {
                Ok(q) if (1..=limits.max_quality).contains(&q) => q,
                _ => {
                    return Err(format!(
                        "quality {s:?} must be from 1 to {}",
                        limits.max_quality
                    ));
                }
            },
        };
        let format = match raw.format.trim().to_ascii_lowercase().as_str() {
            "" => OutputFormat::Source,
            "auto" | "best" => OutputFormat::Auto,
            s => OutputFormat::Fixed(
                Format::parse(s)
                    .ok_or_else(|| format!("format {s:?} is not jpeg, png, webp, avif or auto"))?,
            ),
        };
        Ok(Params {
            width,
            height,
            fit,
            gravity,
            quality,
            format,
        })
    }

    /// The output for a client sending `accept`.
    pub fn choose(&self, accept: Option<&str>) -> Chosen {
        match self.format {
            OutputFormat::Fixed(f) => Chosen::Fixed(f),
            OutputFormat::Source => Chosen::Source,
            OutputFormat::Auto => crate::negotiate::best(accept),
        }
    }

    /// The text equivalent parameters share, for the output `chosen`.
    pub fn canonical(&self, chosen: Chosen) -> String {
        format!(
            "w={},h={},fit={:?},g={:?},q={},f={}",
            self.width.unwrap_or(0),
            self.height.unwrap_or(0),
            self.fit,
            self.gravity,
            self.quality,
            chosen.label()
        )
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(w: &str, h: &str) -> Raw {
        Raw {
            width: w.into(),
            height: h.into(),
            ..Default::default()
        }
    }

    #[test]
    fn dpr_is_folded_into_the_size_so_equivalent_urls_share_a_key() {
        let l = ImageLimits::default();
        let a = Params::parse(
            &Raw {
                dpr: "2".into(),
                ..raw("300", "")
            },
            &l,
            &BTreeMap::new(),
        )
        .unwrap();
        let b = Params::parse(&raw("600", ""), &l, &BTreeMap::new()).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.canonical(Chosen::Fixed(Format::Jpeg)),
            b.canonical(Chosen::Fixed(Format::Jpeg))
        );
        assert_eq!(a.quality, 75);
    }

    #[test]
    fn out_of_range_parameters_are_refused_with_a_reason() {
        let l = ImageLimits::default();
        let none = BTreeMap::new();
        for (r, want) in [
            (raw("4000", ""), "above the limit of 1920"),
            (raw("", "2000"), "above the limit of 1080"),
            (raw("abc", ""), "not a whole number"),
            (
                Raw {
                    quality: "95".into(),
                    ..raw("10", "")
                },
                "from 1 to 90",
            ),
            (
                Raw {
                    fit: "cover".into(),
                    ..raw("10", "")
                },
                "needs both",
            ),
            (
                Raw {
                    format: "bmp".into(),
                    ..raw("10", "")
                },
                "not jpeg",
            ),
            (
                Raw {
                    dpr: "9".into(),
                    ..raw("10", "")
                },
                "dpr",
            ),
        ] {
            let e = Params::parse(&r, &l, &none).unwrap_err();
            assert!(e.0.contains(want), "{e} / {want}");
        }
    }

    #[test]
    fn aliases_name_fits() {
        let mut aliases = BTreeMap::new();
        aliases.insert("f".to_string(), "fill".to_string());
        let p = Params::parse(
            &Raw {
                fit: "f".into(),
                ..raw("30", "20")
            },
            &ImageLimits::default(),
            &aliases,
        )
        .unwrap();
        assert_eq!(p.fit, Fit::Fill);
    }
}
