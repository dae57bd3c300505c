//! The transform pipeline on images these tests generate: output sizes and formats checked by
//! decoding the result, each fit, EXIF rotation, alpha, AVIF output, a 1×1 source, bombs
//! refused before allocating (a counting allocator watches the peak), truncated and non-image
//! sources, and the pool's bounds.

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use kura_image::{
    Chosen, Fit, Format, ImageLimits, OutputFormat, Params, PoolError, Raw, TransformError,
    Transformer, transform,
};

/// Counts live heap bytes and their peak, to see a bomb never allocate.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(now, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A gradient photo-like RGB image.
fn rgb(w: u32, h: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            v.extend_from_slice(&[
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) % 256) as u8,
            ]);
        }
    }
    v
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&rgb(w, h), w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

fn png_rgba(w: u32, h: u32) -> Vec<u8> {
    let mut img = image::RgbaImage::new(w, h);
    for (x, _, p) in img.enumerate_pixels_mut() {
        *p = image::Rgba([200, 10, 10, if x < w / 2 { 0 } else { 255 }]);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6).
fn rotated_jpeg(w: u32, h: u32) -> Vec<u8> {
    let plain = jpeg(w, h);
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&6u16.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

/// A real small JPEG whose frame header claims `w`×`h`.
fn jpeg_bomb(w: u16, h: u16) -> Vec<u8> {
    let mut b = jpeg(16, 16);
    let sof = b.windows(2).position(|x| x == [0xFF, 0xC0]).unwrap();
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

/// A PNG whose header claims `w`×`h`, with almost no data after it.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut b = png_rgba(4, 4);
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    // Fix the IHDR CRC so the header itself is valid.
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &byte in data {
        c ^= byte as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn params(w: &str, h: &str, fit: &str) -> Params {
    Params::parse(
        &Raw {
            width: w.into(),
            height: h.into(),
            fit: fit.into(),
            ..Default::default()
        },
        &ImageLimits::default(),
        &BTreeMap::new(),
    )
    .unwrap()
}

fn decoded(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

#[test]
fn each_fit_gives_the_size_it_promises() {
    let src = jpeg(1200, 800);
    let limits = ImageLimits::default();
    let cases = [
        (params("300", "", ""), (300, 200)),
        (params("", "100", ""), (150, 100)),
        (params("300", "300", "contain"), (300, 200)),
        (params("300", "300", "cover"), (300, 300)),
        (params("300", "100", "fill"), (300, 100)),
    ];
    for (p, (w, h)) in cases {
        let out = transform(&src, &p, Chosen::Source, &limits).unwrap();
        assert_eq!(out.format, Format::Jpeg);
        let img = decoded(&out.bytes);
        assert_eq!((img.width(), img.height()), (w, h), "{p:?}");
        assert_eq!((out.width, out.height), (w, h));
    }
}

#[test]
fn formats_are_produced_as_asked_and_verified_by_decoding() {
    let src = jpeg(640, 480);
    let limits = ImageLimits::default();
    for (chosen, kind) in [
        (Chosen::Fixed(Format::Png), image::ImageFormat::Png),
        (Chosen::Fixed(Format::Webp), image::ImageFormat::WebP),
        (Chosen::Fixed(Format::Jpeg), image::ImageFormat::Jpeg),
        (Chosen::Legacy, image::ImageFormat::Jpeg),
    ] {
        let out = transform(&src, &params("200", "", ""), chosen, &limits).unwrap();
        assert_eq!(image::guess_format(&out.bytes).unwrap(), kind);
        let img = decoded(&out.bytes);
        assert_eq!((img.width(), img.height()), (200, 150));
    }
    // AVIF encodes here (ravif); decoding it back needs dav1d, so the container is checked.
    let out = transform(
        &src,
        &params("64", "", ""),
        Chosen::Fixed(Format::Avif),
        &limits,
    )
    .unwrap();
    assert_eq!(&out.bytes[4..12], b"ftypavif");
    assert_eq!((out.width, out.height), (64, 48));
    // And an AVIF source is refused with 415's reason, not misread.
    let e = transform(&out.bytes, &params("32", "", ""), Chosen::Source, &limits).unwrap_err();
    assert!(
        matches!(e, TransformError::Unsupported(ref m) if m.contains("dav1d")),
        "{e}"
    );
}

#[test]
fn transparency_survives_to_png_and_webp_and_picks_png_for_legacy() {
    let src = png_rgba(100, 50);
    let limits = ImageLimits::default();
    let out = transform(&src, &params("50", "", ""), Chosen::Legacy, &limits).unwrap();
    assert_eq!(out.format, Format::Png);
    let img = decoded(&out.bytes).into_rgba8();
    assert_eq!(img.dimensions(), (50, 25));
    assert_eq!(img.get_pixel(2, 10)[3], 0, "left half transparent");
    assert_eq!(img.get_pixel(47, 10)[3], 255, "right half opaque");
    let out = transform(
        &src,
        &params("50", "", ""),
        Chosen::Fixed(Format::Webp),
        &limits,
    )
    .unwrap();
    let img = decoded(&out.bytes).into_rgba8();
    assert!(img.get_pixel(2, 10)[3] < 20);
}

#[test]
fn exif_orientation_is_applied_and_metadata_dropped() {
    let src = rotated_jpeg(400, 200);
    let out = transform(
        &src,
        &params("100", "", ""),
        Chosen::Source,
        &ImageLimits::default(),
    )
    .unwrap();
    let img = decoded(&out.bytes);
    // Displayed upright the image is 200 wide and 400 tall: 100 wide → 200 tall.
    assert_eq!((img.width(), img.height()), (100, 200));
    assert!(
        !out.bytes.windows(4).any(|w| w == b"Exif"),
        "EXIF is not copied to the output"
    );
}

#[test]
fn a_one_pixel_source_is_not_enlarged_unless_a_box_is_forced() {
    let src = jpeg(1, 1);
    let limits = ImageLimits::default();
    let out = transform(&src, &params("300", "", ""), Chosen::Source, &limits).unwrap();
    assert_eq!(
        (decoded(&out.bytes).width(), decoded(&out.bytes).height()),
        (1, 1)
    );
    let out = transform(&src, &params("30", "20", "fill"), Chosen::Source, &limits).unwrap();
    assert_eq!(decoded(&out.bytes).width(), 30);
}

#[test]
fn bombs_are_refused_from_the_header_without_allocating() {
    let limits = ImageLimits::default();
    for bomb in [jpeg_bomb(16000, 16000), png_bomb(16000, 16000)] {
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let e = transform(&bomb, &params("100", "", ""), Chosen::Source, &limits).unwrap_err();
        assert_eq!(
            e,
            TransformError::TooManyPixels {
                pixels: 256_000_000,
                limit: 50_000_000
            }
        );
        let grew = PEAK.load(Relaxed) - before;
        assert!(grew < 4 * 1024 * 1024, "the refusal allocated {grew} bytes");
    }
}

#[test]
fn damaged_and_non_images_are_errors_not_panics() {
    let limits = ImageLimits::default();
    let p = params("100", "", "");
    let e = transform(b"hello, I am text in a .jpg", &p, Chosen::Source, &limits).unwrap_err();
    assert!(matches!(e, TransformError::NotAnImage(_)), "{e:?}");
    let full = jpeg(800, 600);
    for cut in [full.len() / 2, 300, 3] {
        // A truncated JPEG decodes to an error or to a picture; it never panics.
        let _ = transform(&full[..cut], &p, Chosen::Source, &limits);
    }
    let png = png_rgba(64, 64);
    let e = transform(&png[..png.len() - 20], &p, Chosen::Source, &limits);
    assert!(e.is_err(), "a truncated PNG is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_bounds_concurrency_and_time() {
    let src = bytes::Bytes::from(jpeg(2000, 1500));
    let pool = Arc::new(Transformer::new(2));
    let p = params("200", "", "");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (pool, src, p) = (pool.clone(), src.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            pool.run(
                src,
                p,
                Chosen::Source,
                ImageLimits::default(),
                Duration::from_secs(30),
            )
            .await
        }));
    }
    let mut max_busy = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        max_busy = max_busy.max(pool.busy());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(max_busy <= 2, "{max_busy} transforms at once");
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().width, 200);
    }
    // A timeout too short for the work is reported as such.
    let e = pool
        .run(
            jpeg(3000, 2000).into(),
            params("1900", "", ""),
            Chosen::Fixed(Format::Png),
            ImageLimits::default(),
            Duration::from_millis(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PoolError::TimedOut(_)), "{e:?}");
    let _ = OutputFormat::Auto;
    let _ = Fit::Cover;
}

#[test]
fn the_colour_profile_is_kept_in_jpeg_output() {
    // jpeg-encoder embeds any bytes as the ICC profile (APP2 ICC_PROFILE); the transform must
    // carry the same bytes to its output.
    let profile: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut src = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut src, 85);
    enc.add_icc_profile(&profile).unwrap();
    enc.encode(&rgb(300, 200), 300, 200, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let out = transform(
        &src,
        &params("100", "", ""),
        Chosen::Source,
        &ImageLimits::default(),
    )
    .unwrap();
    let mut dec = jpeg_decoder::Decoder::new(std::io::Cursor::new(&out.bytes));
    dec.read_info().unwrap();
    assert_eq!(dec.icc_profile(), Some(profile));
}

#[test]
fn webp_and_png_sources_are_resized_too() {
    let limits = ImageLimits::default();
    let webp_src = webp::Encoder::from_rgb(&rgb(320, 240), 320, 240)
        .encode(80.0)
        .to_vec();
    assert_eq!(
        image::guess_format(&webp_src).unwrap(),
        image::ImageFormat::WebP
    );
    let out = transform(&webp_src, &params("160", "", ""), Chosen::Source, &limits).unwrap();
    assert_eq!(out.format, Format::Webp, "a WebP source stays WebP");
    assert_eq!(
        (decoded(&out.bytes).width(), decoded(&out.bytes).height()),
        (160, 120)
    );
    let png_src = png_rgba(64, 32);
    let out = transform(
        &png_src,
        &params("32", "", ""),
        Chosen::Fixed(Format::Jpeg),
        &limits,
    )
    .unwrap();
    assert_eq!(
        image::guess_format(&out.bytes).unwrap(),
        image::ImageFormat::Jpeg
    );
    assert_eq!(decoded(&out.bytes).width(), 32);
}
