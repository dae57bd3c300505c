//! The dashboard: `GET /` on the admin listener serves one page (`dashboard.html`, with its
//! script and style sheet at `/dashboard.js` and `/dashboard.css`), built into the binary, that
//! needs nothing from the internet. The script polls the admin API's JSON endpoints (`/status`,
//! `/traffic`, `/backends`, `/cache`, `/cluster`, `/shadow`) and renders them.
//!
//! The page must not weaken the admin listener's protections:
//! - a strict Content-Security-Policy: scripts and styles from this listener only (no inline
//!   script or style), requests to this listener only, no forms posting anywhere, no framing
//!   (`frame-ancestors 'none'` and `X-Frame-Options: DENY`);
//! - the script inserts everything it reads as text (`textContent`), never as markup: vhost
//!   names, paths and backend URLs come from clients, Redis writers and configurations;
//! - the token (when reads need it) is asked for once, kept in `sessionStorage` and sent as
//!   `Authorization: Bearer`, never in a URL.
//!
//! The three files are static and hold no data, so they are served without the token even
//! with `admin.protect_reads` (a browser cannot send a header when it opens a URL); the `Host`
//! check still applies.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

const HTML: &str = include_str!("dashboard.html");
const JS: &str = include_str!("dashboard.js");
const CSS: &str = include_str!("dashboard.css");

/// The policy of every dashboard file: this listener's own script, style and API, nothing else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The dashboard file at `path`, if it is one.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", HTML)),
        "/dashboard.js" => Some(("text/javascript; charset=utf-8", JS)),
        "/dashboard.css" => Some(("text/css; charset=utf-8", CSS)),
        _ => None,
    }
}

/// The answer for a dashboard file, with the headers that keep it to itself.
pub fn serve(ctype: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, ctype),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

#[cfg(test)]
mod tests {
    /// The script never parses data as markup: no `innerHTML`, `outerHTML`,
    /// `insertAdjacentHTML`, `document.write` or `eval`-like calls, and the page has no inline
    /// script or style the policy would refuse.
    #[test]
    fn the_files_keep_to_text_and_to_the_policy() {
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('style'",
            "setAttribute(\"style\"",
            "javascript:",
        ] {
            assert!(!super::JS.contains(bad), "dashboard.js uses {bad}");
        }
        let html = super::HTML;
        assert!(!html.contains(" style="), "inline style in dashboard.html");
        let handler = regex::Regex::new(r"\son[a-z]+\s*=").unwrap();
        assert!(!handler.is_match(html), "inline handler in dashboard.html");
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script src=\"/dashboard.js\" defer></script>"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no outside URL"
        );
    }
}
