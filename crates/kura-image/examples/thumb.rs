//! Times kura's transform on one file, for bench/images.sh: `thumb SRC WIDTH COUNT [QUALITY]`
//! transforms SRC to WIDTH px wide JPEG COUNT times (serially, one thread) and prints the mean
//! milliseconds per image and the output size. `thumb --generate OUT W H` writes a photo-like
//! JPEG (gradients and fine noise, quality 90) to benchmark with.

use std::time::Instant;

use kura_image::{Chosen, Format, ImageLimits, Params, Raw};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--generate") {
        let (w, h): (u32, u32) = (args[3].parse().unwrap(), args[4].parse().unwrap());
        let mut px = Vec::with_capacity((w * h * 3) as usize);
        let mut seed = 0x9E37_79B9u32;
        for y in 0..h {
            for x in 0..w {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let n = (seed & 31) as i32 - 16;
                let r = ((x * 255 / w) as i32 + n).clamp(0, 255) as u8;
                let g = ((y * 255 / h) as i32 + n).clamp(0, 255) as u8;
                let b = (((x / 7 + y / 5) % 255) as i32 + n).clamp(0, 255) as u8;
                px.extend_from_slice(&[r, g, b]);
            }
        }
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        std::fs::write(&args[2], out).unwrap();
        return;
    }
    let src = std::fs::read(&args[1]).expect("SRC readable");
    let width = &args[2];
    let count: usize = args[3].parse().unwrap();
    let quality = args.get(4).cloned().unwrap_or_else(|| "75".into());
    let limits = ImageLimits::default();
    let params = Params::parse(
        &Raw {
            width: width.clone(),
            quality,
            ..Default::default()
        },
        &limits,
        &Default::default(),
    )
    .unwrap();
    let mut size = 0;
    let start = Instant::now();
    for _ in 0..count {
        let out =
            kura_image::transform(&src, &params, Chosen::Fixed(Format::Jpeg), &limits).unwrap();
        size = out.bytes.len();
        assert_eq!(out.width.to_string(), *width);
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / count as f64;
    println!("{ms:.1} {size}");
}
