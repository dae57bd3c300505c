//! `format = auto`: the best output the client's `Accept` allows. WebP is preferred (it encodes
//! fast and every current browser takes it), then AVIF, then the source's kind (PNG when the
//! image has transparency, else JPEG). Only explicit media types count: `*/*` does not promise
//! WebP, and `q=0` refuses a type.

use crate::params::{Chosen, Format};

/// Whether `accept` explicitly accepts `mime` (with a non-zero quality).
pub fn accepts(accept: &str, mime: &str) -> bool {
    accept.split(',').any(|part| {
        let mut it = part.split(';');
        let ty = it.next().unwrap_or("").trim();
        if !ty.eq_ignore_ascii_case(mime) {
            return false;
        }
        it.all(|p| {
            let p = p.trim();
            match p.strip_prefix("q=") {
                Some(q) => q.trim().parse::<f32>().map(|q| q > 0.0).unwrap_or(false),
                None => true,
            }
        })
    })
}

/// What `auto` picks for `accept`. `Legacy` (JPEG, or PNG for images with transparency) is
/// decided once the source is decoded.
pub fn best(accept: Option<&str>) -> Chosen {
    let accept = accept.unwrap_or("");
    if accepts(accept, "image/webp") {
        Chosen::Fixed(Format::Webp)
    } else if accepts(accept, "image/avif") {
        Chosen::Fixed(Format::Avif)
    } else {
        Chosen::Legacy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_what_they_announce() {
        let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
        assert_eq!(best(Some(chrome)), Chosen::Fixed(Format::Webp));
        assert_eq!(best(Some("image/avif,*/*")), Chosen::Fixed(Format::Avif));
        assert_eq!(best(Some("*/*")), Chosen::Legacy);
        assert_eq!(best(None), Chosen::Legacy);
        assert_eq!(
            best(Some("image/webp;q=0, image/avif")),
            Chosen::Fixed(Format::Avif)
        );
        assert!(accepts("IMAGE/WEBP ; q=0.5", "image/webp"));
    }
}
