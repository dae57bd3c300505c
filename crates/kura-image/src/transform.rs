//! Decode, orient, resize, encode: one source image to one variant, on the calling thread (the
//! caller runs it on the bounded pool of `pool.rs`).
//!
//! - The source's size is read from its header first; more pixels than `max_source_pixels`
//!   are refused before any pixel buffer exists, so a decompression bomb never allocates.
//! - JPEG sources are decoded by jpeg-decoder with DCT scaling (shrink-on-load: 1/2, 1/4 or 1/8
//!   of the size, still at least the output), which is most of the cost of a large photo.
//!   Other formats go through the `image` crate with allocation limits. AVIF sources need
//!   dav1d ≥ 1.3, which Debian 12 does not ship: they are answered 415, not guessed at.
//! - EXIF orientation is applied; the ICC profile is kept (JPEG and PNG outputs carry it);
//!   every other piece of metadata is dropped.
//! - Resizing is fast_image_resize (SIMD convolution, Lanczos3), with the `cover` crop done in
//!   the same pass. JPEG is encoded by jpeg-encoder, WebP by libwebp (lossy), AVIF by ravif,
//!   PNG by the `image` crate.

use std::io::Cursor;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::params::{Chosen, Fit, Format, Gravity, ImageLimits, Params};

/// One encoded variant.
#[derive(Debug)]
pub struct Output {
    /// The encoded image, ready to send and cache.
    pub bytes: Vec<u8>,
    /// The format it was encoded in (`Source` and `Legacy` resolved), for `Content-Type`.
    pub format: Format,
    /// Its width in pixels; may be less than asked, as `contain` keeps the aspect ratio and
    /// only `cover` and `fill` enlarge a smaller source.
    pub width: u32,
    /// Its height in pixels, like `width`.
    pub height: u32,
}

/// Why a source could not be transformed; the message is what the client is told.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TransformError {
    /// The source is not an image, or is damaged (a proxy's 502).
    #[error("the source is not a decodable image: {0}")]
    NotAnImage(String),
    /// An image format kura cannot decode here (415).
    #[error("{0}")]
    Unsupported(String),
    /// The source exceeds `max_source_pixels` (checked before decoding).
    #[error("the source has {pixels} pixels, above the limit of {limit}")]
    TooManyPixels {
        /// The source's width times height, from its header.
        pixels: u64,
        /// The rule's `max_source_pixels`.
        limit: u64,
    },
    /// Resizing or encoding failed, or the transform task died: kura's fault, not the source's
    /// (a 500).
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// Decoded pixels: RGB or RGBA, 8 bits.
struct Pixels {
    data: Vec<u8>,
    width: u32,
    height: u32,
    alpha: bool,
}

/// Transforms `src` as `params` say, producing `chosen` (resolved against the source).
pub fn transform(
    src: &[u8],
    params: &Params,
    chosen: Chosen,
    limits: &ImageLimits,
) -> Result<Output, TransformError> {
    let kind = image::guess_format(src)
        .map_err(|_| TransformError::NotAnImage("unknown format".into()))?;
    let (pixels, orientation, icc) = match kind {
        ImageFormat::Jpeg => decode_jpeg(src, params, limits)?,
        ImageFormat::Avif => {
            return Err(TransformError::Unsupported(
                "AVIF sources cannot be decoded here (needs dav1d 1.3 or later)".into(),
            ));
        }
        ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif => decode_other(src, kind, limits)?,
        other => {
            return Err(TransformError::Unsupported(format!(
                "{other:?} sources are not supported (JPEG, PNG, WebP, GIF are)"
            )));
        }
    };
    let pixels = orient(pixels, orientation);
    let (out_w, out_h, crop) = geometry(pixels.width, pixels.height, params);
    let resized = resize(&pixels, out_w, out_h, crop)?;
    let format = match chosen {
        Chosen::Fixed(f) => f,
        Chosen::Source => match kind {
            ImageFormat::Jpeg => Format::Jpeg,
            ImageFormat::WebP => Format::Webp,
            _ => Format::Png,
        },
        Chosen::Legacy if resized.alpha => Format::Png,
        Chosen::Legacy => Format::Jpeg,
    };
    let bytes = encode(&resized, format, params.quality, icc.as_deref())?;
    Ok(Output {
        bytes,
        format,
        width: resized.width,
        height: resized.height,
    })
}

fn check_pixels(w: u32, h: u32, limits: &ImageLimits) -> Result<(), TransformError> {
    let pixels = w as u64 * h as u64;
    if pixels > limits.max_source_pixels {
        return Err(TransformError::TooManyPixels {
            pixels,
            limit: limits.max_source_pixels,
        });
    }
    if pixels == 0 {
        return Err(TransformError::NotAnImage("zero-sized image".into()));
    }
    Ok(())
}

type Decoded = (Pixels, Orientation, Option<Vec<u8>>);

fn decode_jpeg(
    src: &[u8],
    params: &Params,
    limits: &ImageLimits,
) -> Result<Decoded, TransformError> {
    let bad = |e: jpeg_decoder::Error| TransformError::NotAnImage(e.to_string());
    let mut dec = jpeg_decoder::Decoder::new(Cursor::new(src));
    dec.read_info().map_err(bad)?;
    let info = dec
        .info()
        .ok_or_else(|| TransformError::NotAnImage("no JPEG header".into()))?;
    let (w, h) = (info.width as u32, info.height as u32);
    check_pixels(w, h, limits)?;
    let orientation = dec
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let icc = dec.icc_profile();
    // The size the resize needs, in the file's own (unrotated) orientation.
    let swapped = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (ow, oh) = if swapped { (h, w) } else { (w, h) };
    let (nw, nh) = needed_source(ow, oh, params);
    let (nw, nh) = if swapped { (nh, nw) } else { (nw, nh) };
    if nw < w || nh < h {
        dec.scale(nw.max(1) as u16, nh.max(1) as u16).map_err(bad)?;
    }
    let data = dec.decode().map_err(bad)?;
    let info = dec
        .info()
        .ok_or_else(|| TransformError::NotAnImage("no JPEG header".into()))?;
    let (w, h) = (info.width as u32, info.height as u32);
    let data = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => data,
        jpeg_decoder::PixelFormat::L8 => data.iter().flat_map(|&v| [v, v, v]).collect(),
        jpeg_decoder::PixelFormat::L16 => data
            .chunks_exact(2)
            .flat_map(|c| [c[0], c[0], c[0]])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => data
            .chunks_exact(4)
            .flat_map(|c| {
                // Adobe CMYK JPEGs are stored inverted; this is the usual approximation.
                let k = c[3] as u16;
                [
                    (c[0] as u16 * k / 255) as u8,
                    (c[1] as u16 * k / 255) as u8,
                    (c[2] as u16 * k / 255) as u8,
                ]
            })
            .collect(),
    };
    if data.len() != w as usize * h as usize * 3 {
        return Err(TransformError::NotAnImage("truncated JPEG".into()));
    }
    Ok((
        Pixels {
            data,
            width: w,
            height: h,
            alpha: false,
        },
        orientation,
        icc,
    ))
}

fn decode_other(
    src: &[u8],
    kind: ImageFormat,
    limits: &ImageLimits,
) -> Result<Decoded, TransformError> {
    let bad = |e: image::ImageError| TransformError::NotAnImage(e.to_string());
    let mut reader = ImageReader::with_format(Cursor::new(src), kind);
    let mut lim = image::Limits::default();
    lim.max_alloc = Some(limits.max_source_pixels.saturating_mul(8));
    reader.limits(lim);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    let alpha = img.color().has_alpha();
    let (data, width, height) = if alpha {
        let i = img.into_rgba8();
        let (w, h) = i.dimensions();
        (i.into_raw(), w, h)
    } else {
        let i = img.into_rgb8();
        let (w, h) = i.dimensions();
        (i.into_raw(), w, h)
    };
    Ok((
        Pixels {
            data,
            width,
            height,
            alpha,
        },
        orientation,
        icc,
    ))
}

/// Applies an EXIF orientation to decoded pixels.
fn orient(p: Pixels, orientation: Orientation) -> Pixels {
    if orientation == Orientation::NoTransforms {
        return p;
    }
    let mut img = if p.alpha {
        DynamicImage::ImageRgba8(
            image::RgbaImage::from_raw(p.width, p.height, p.data).unwrap_or_default(),
        )
    } else {
        DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(p.width, p.height, p.data).unwrap_or_default(),
        )
    };
    img.apply_orientation(orientation);
    let (width, height) = (img.width(), img.height());
    Pixels {
        data: img.into_bytes(),
        width,
        height,
        alpha: p.alpha,
    }
}

/// The smallest source size (in display orientation) the output needs: what shrink-on-load
/// may decode down to without losing detail.
fn needed_source(w: u32, h: u32, params: &Params) -> (u32, u32) {
    let (ow, oh, crop) = geometry(w, h, params);
    let (cw, ch) = crop.map(|c| (c.2, c.3)).unwrap_or((w as f64, h as f64));
    // Scale factor from the (cropped) source to the output, per axis.
    let sx = ow as f64 / cw;
    let sy = oh as f64 / ch;
    (
        ((w as f64) * sx).ceil().min(w as f64) as u32,
        ((h as f64) * sy).ceil().min(h as f64) as u32,
    )
}

/// A crop box in source pixels: left, top, width, height.
type Crop = (f64, f64, f64, f64);

/// Output size and, for `cover`, the crop box.
fn geometry(w: u32, h: u32, p: &Params) -> (u32, u32, Option<Crop>) {
    let (wf, hf) = (w as f64, h as f64);
    let round = |v: f64| (v.round() as u32).max(1);
    // Without a box on both sides (or with `contain`) the image is never enlarged.
    let scaled = |s: f64| {
        let s = s.min(1.0);
        (round(wf * s), round(hf * s), None)
    };
    match (p.width, p.height, p.fit) {
        (None, None, _) => (w, h, None),
        (Some(tw), None, _) => scaled(tw as f64 / wf),
        (None, Some(th), _) => scaled(th as f64 / hf),
        (Some(tw), Some(th), Fit::Fill) => (tw, th, None),
        (Some(tw), Some(th), Fit::Contain) => {
            let (a, b, c) = scaled((tw as f64 / wf).min(th as f64 / hf));
            (a.min(tw), b.min(th), c)
        }
        (Some(tw), Some(th), Fit::Cover) => {
            let target = tw as f64 / th as f64;
            let (cw, ch) = if wf / hf > target {
                (hf * target, hf)
            } else {
                (wf, wf / target)
            };
            let (fx, fy) = match p.gravity {
                Gravity::Center => (0.5, 0.5),
                Gravity::North => (0.5, 0.0),
                Gravity::South => (0.5, 1.0),
                Gravity::East => (1.0, 0.5),
                Gravity::West => (0.0, 0.5),
                Gravity::NorthEast => (1.0, 0.0),
                Gravity::NorthWest => (0.0, 0.0),
                Gravity::SouthEast => (1.0, 1.0),
                Gravity::SouthWest => (0.0, 1.0),
            };
            let crop = ((wf - cw) * fx, (hf - ch) * fy, cw, ch);
            (tw, th, Some(crop))
        }
    }
}

fn resize(p: &Pixels, w: u32, h: u32, crop: Option<Crop>) -> Result<Pixels, TransformError> {
    let ptype = if p.alpha {
        PixelType::U8x4
    } else {
        PixelType::U8x3
    };
    if w == p.width && h == p.height && crop.is_none() {
        return Ok(Pixels {
            data: p.data.clone(),
            ..*p
        });
    }
    let src = fast_image_resize::images::ImageRef::new(p.width, p.height, &p.data, ptype)
        .map_err(|e| TransformError::Encode(e.to_string()))?;
    let mut dst = Image::new(w, h, ptype);
    let mut opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if let Some((l, t, cw, ch)) = crop {
        opts = opts.crop(l, t, cw, ch);
    }
    Resizer::new()
        .resize(&src, &mut dst, &opts)
        .map_err(|e| TransformError::Encode(e.to_string()))?;
    Ok(Pixels {
        data: dst.into_vec(),
        width: w,
        height: h,
        alpha: p.alpha,
    })
}

fn encode(
    p: &Pixels,
    format: Format,
    quality: u8,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>, TransformError> {
    let err = |e: &dyn std::fmt::Display| TransformError::Encode(e.to_string());
    let mut out = Vec::with_capacity(p.data.len() / 8);
    match format {
        Format::Jpeg => {
            let rgb;
            let data = if p.alpha {
                rgb = drop_alpha(&p.data);
                &rgb
            } else {
                &p.data
            };
            let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
            if let Some(icc) = icc {
                enc.add_icc_profile(icc).map_err(|e| err(&e))?;
            }
            enc.encode(
                data,
                p.width as u16,
                p.height as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .map_err(|e| err(&e))?;
        }
        Format::Png => {
            use image::ImageEncoder;
            let mut enc = image::codecs::png::PngEncoder::new(&mut out);
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc.to_vec());
            }
            let color = if p.alpha {
                image::ExtendedColorType::Rgba8
            } else {
                image::ExtendedColorType::Rgb8
            };
            enc.write_image(&p.data, p.width, p.height, color)
                .map_err(|e| err(&e))?;
        }
        Format::Webp => {
            let enc = if p.alpha {
                webp::Encoder::from_rgba(&p.data, p.width, p.height)
            } else {
                webp::Encoder::from_rgb(&p.data, p.width, p.height)
            };
            let mem = enc
                .encode_simple(false, quality as f32)
                .map_err(|e| TransformError::Encode(format!("webp: {e:?}")))?;
            out.extend_from_slice(&mem);
        }
        Format::Avif => {
            use image::ImageEncoder;
            let enc =
                image::codecs::avif::AvifEncoder::new_with_speed_quality(&mut out, 8, quality);
            let color = if p.alpha {
                image::ExtendedColorType::Rgba8
            } else {
                image::ExtendedColorType::Rgb8
            };
            enc.write_image(&p.data, p.width, p.height, color)
                .map_err(|e| err(&e))?;
        }
    }
    Ok(out)
}

fn drop_alpha(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|c| [c[0], c[1], c[2]])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(w: Option<u32>, h: Option<u32>, fit: Fit) -> Params {
        Params {
            width: w,
            height: h,
            fit,
            gravity: Gravity::Center,
            quality: 80,
            format: crate::params::OutputFormat::Source,
        }
    }

    #[test]
    fn geometry_follows_the_fit() {
        let p = params(Some(300), Some(300), Fit::Contain);
        assert_eq!(geometry(4000, 3000, &p).0, 300);
        assert_eq!(geometry(4000, 3000, &p).1, 225);
        let p = params(Some(300), Some(300), Fit::Cover);
        let (w, h, crop) = geometry(4000, 3000, &p);
        assert_eq!((w, h), (300, 300));
        let c = crop.unwrap();
        assert_eq!((c.0, c.2, c.3), (500.0, 3000.0, 3000.0));
        let p = params(Some(300), Some(100), Fit::Fill);
        assert_eq!(geometry(4000, 3000, &p), (300, 100, None));
        let p = params(None, Some(150), Fit::Contain);
        assert_eq!(geometry(4000, 3000, &p).0, 200);
    }

    #[test]
    fn shrink_on_load_keeps_at_least_the_output_size() {
        let p = params(Some(800), None, Fit::Contain);
        let (w, h) = needed_source(4000, 3000, &p);
        assert_eq!((w, h), (800, 600));
        let p = params(Some(300), Some(300), Fit::Cover);
        // The crop is 3000x3000 of the 4000x3000 source; 300/3000 = 0.1 of each side.
        assert_eq!(needed_source(4000, 3000, &p), (400, 300));
    }
}
