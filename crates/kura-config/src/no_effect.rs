//! Fields that would be read and then ignored where they are written: each is an error naming
//! the field and saying what it needs to apply. A setting that does nothing is one the operator
//! believes in (Katana's `cache_path_*` written as `cache.key` on an image rule was accepted and
//! never used), so kura refuses it rather than keep a silent default. What the *whole* file
//! holds is checked elsewhere; this module only knows the combinations in which a field is dead.
//! `tests/fields_read.rs` checks the other half: that every field is read by something.

use crate::file::{FileConfig, FileRule, FileRuleResize, FileRuleShadow};
use crate::validate::Errors;
use crate::{Action, DEFAULT_SHADOW_SAMPLE_PERCENT};

/// A rule's fields that its action never reads.
pub(crate) fn rule(field: &str, r: &FileRule, action: Action, errs: &mut Errors) {
    if action != Action::Resize {
        return;
    }
    // An image rule answers GET and HEAD itself and fetches its original as kura's own request:
    // nothing of the client's request is forwarded.
    if r.rewrite.is_some() {
        errs.push(
            format!("{field}.rewrite"),
            "an image rule fetches its original from resize.source; rewrite applies to proxy and cache rules",
        );
    }
    let e = &r.request_headers;
    if !(e.set.is_empty() && e.add.is_empty() && e.remove.is_empty()) {
        errs.push(
            format!("{field}.request_headers"),
            "an image rule's source requests are kura's own: header edits apply to proxy and cache rules (a Katana origin's headers go in pools.<name>.clusters[].headers)",
        );
    }
    if r.upgrades.is_some() {
        errs.push(
            format!("{field}.upgrades"),
            "an image rule answers GET and HEAD only and relays no upgrade",
        );
    }
    if let Some(c) = &r.cache {
        if c.key.is_some() {
            errs.push(
                format!("{field}.cache.key"),
                "an image rule stores two things: write resize.variant_key (Katana's cache_path_resized) and resize.source_key (cache_path_source)",
            );
        }
        if c.cookies.is_some() {
            errs.push(
                format!("{field}.cache.cookies"),
                "an image rule's cache requests never carry the client's Cookie",
            );
        }
    }
}

/// An image rule's settings that the rest of its table leaves without effect.
pub(crate) fn resize(field: &str, r: &FileRuleResize, errs: &mut Errors) {
    let mut dead = |name: &str, why: &str| errs.push(format!("{field}.{name}"), why);
    if r.not_found_as_200.is_some() && r.not_found_source.is_none() {
        dead(
            "not_found_as_200",
            "sets the status of the not-found image: needs not_found_source",
        );
    }
    if r.source.starts_with('/') {
        let why = "applies to absolute source URLs; this rule's source is a path on its pool";
        if r.allowed_sources.is_some() {
            dead("allowed_sources", why);
        }
        if r.allow_local_sources.is_some() {
            dead("allow_local_sources", why);
        }
    }
    if r.max_dpr.is_some() && r.dpr.is_none() {
        dead("max_dpr", "limits dpr, which this rule does not set");
    }
    if !r.fit_aliases.is_empty() && r.fit.is_none() {
        dead("fit_aliases", "words for fit, which this rule does not set");
    }
    if r.gravity.is_some() && r.fit.is_none() {
        dead(
            "gravity",
            "where fit = \"cover\" crops; without fit every image is contained",
        );
    }
    // A parameter written as a fixed value never falls back on its default.
    let fixed = |t: &Option<String>| {
        t.as_ref()
            .is_some_and(|t| !t.contains('{') && !t.trim().is_empty())
    };
    if r.default_format.is_some() && fixed(&r.format) {
        dead("default_format", "format is a fixed value, never absent");
    }
    if r.default_quality.is_some() && fixed(&r.quality) {
        dead("default_quality", "quality is a fixed value, never absent");
    }
}

/// A rule's shadow settings that its other settings leave without effect.
pub(crate) fn shadow(field: &str, s: &FileRuleShadow, errs: &mut Errors) {
    if s.name.is_some() && s.group_by.as_deref() == Some("path") {
        errs.push(
            format!("{field}.name"),
            "names the endpoint when group_by = \"rule\"; with \"path\" the path names it",
        );
    }
    let percent = s.sample_percent.unwrap_or(DEFAULT_SHADOW_SAMPLE_PERCENT);
    if s.sample_by.is_some() && (percent == 0.0 || percent == 100.0) {
        errs.push(
            format!("{field}.sample_by"),
            "chooses who is in a sample: set sample_percent between 0 and 100",
        );
    }
    if s.allow_unsafe == Some(true)
        && let Some(methods) = &s.methods
        && methods.iter().all(|m| {
            http::Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                .is_ok_and(|m| crate::is_safe_method(&m))
        })
    {
        errs.push(
            format!("{field}.allow_unsafe"),
            "methods lists no unsafe method",
        );
    }
}

/// Pool settings no backend uses.
pub(crate) fn pools(file: &FileConfig, errs: &mut Errors) {
    let template = file.redis.as_ref().and_then(|r| r.pool_template.as_deref());
    for (name, p) in &file.pools {
        if p.clusters.is_none() {
            for (f, set) in [
                ("whohas_ttl", p.whohas_ttl.is_some()),
                ("whohas_entries", p.whohas_entries.is_some()),
            ] {
                if set {
                    errs.push(
                        format!("pools.{name}.{f}"),
                        "applies to a pool of clusters (who-has); this pool has backends",
                    );
                }
            }
        }
        // A template's own backends are replaced by each Redis frontend's, which may be https.
        let https = p
            .backends
            .iter()
            .chain(p.clusters.iter().flatten().flat_map(|c| &c.nodes))
            .any(|b| b.trim_start().to_ascii_lowercase().starts_with("https://"));
        if p.tls_ca.is_some() && !https && template != Some(name.as_str()) {
            errs.push(
                format!("pools.{name}.tls_ca"),
                "trusts CAs for https:// backends; this pool has none",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{Config, ConfigError};

    fn errors(text: &str) -> Vec<(String, String)> {
        match Config::from_toml(text, Path::new(".")) {
            Ok(_) => Vec::new(),
            Err(ConfigError { errors }) => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
        }
    }

    fn config(pool: &str, rule: &str) -> String {
        format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"
[pools.p]
backends = ["http://127.0.0.1:1"]
{pool}
[[vhosts]]
hosts = ["*"]
[[vhosts.rules]]
pool = "p"
path = "^/(?P<w>[0-9]+)/(?P<src>.+)$"
{rule}
"#
        )
    }

    const RESIZE: &str =
        "action = \"resize\"\n[vhosts.rules.resize]\nsource = \"/{src}\"\nwidth = \"{w}\"\n";

    /// Asserts that `rule` (after the rule's first lines) is refused for exactly `fields`.
    fn refused(pool: &str, rule: &str, fields: &[&str]) {
        let errs = errors(&config(pool, rule));
        let got: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        let want: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        assert_eq!(got, want, "{errs:?}");
        for (_, m) in &errs {
            assert!(!m.is_empty());
        }
    }

    #[test]
    fn what_an_image_rule_never_reads_is_refused() {
        let r = "vhosts[0].rules[0]";
        refused(
            "",
            &format!(
                "rewrite = \"/x\"\nupgrades = [\"websocket\"]\nrequest_headers.set = {{ x-a = \"1\" }}\n{RESIZE}[vhosts.rules.cache]\nkey = \"img/{{src}}\"\ncookies = \"pass\"\n"
            ),
            &[
                &format!("{r}.rewrite"),
                &format!("{r}.request_headers"),
                &format!("{r}.upgrades"),
                &format!("{r}.cache.key"),
                &format!("{r}.cache.cookies"),
            ],
        );
        // The message names the fields to use instead.
        let errs = errors(&config(
            "",
            &format!("{RESIZE}[vhosts.rules.cache]\nkey = \"img/{{src}}\"\n"),
        ));
        assert!(errs[0].1.contains("resize.variant_key"), "{errs:?}");
        // The same fields on a cache rule are read.
        refused(
            "",
            "action = \"cache\"\nrewrite = \"/x\"\nupgrades = [\"websocket\"]\nrequest_headers.set = { x-a = \"1\" }\n[vhosts.rules.cache]\nkey = \"img/{src}\"\ncookies = \"pass\"\n",
            &[],
        );
    }

    #[test]
    fn image_settings_without_what_they_modify_are_refused() {
        let f = "vhosts[0].rules[0].resize";
        refused(
            "",
            &format!(
                "{RESIZE}not_found_as_200 = true\nallowed_sources = [\"a.test\"]\nallow_local_sources = true\nmax_dpr = 2.0\nfit_aliases = {{ f = \"fill\" }}\ngravity = \"north\"\nformat = \"webp\"\ndefault_format = \"png\"\nquality = \"80\"\ndefault_quality = 70\n"
            ),
            &[
                &format!("{f}.not_found_as_200"),
                &format!("{f}.allowed_sources"),
                &format!("{f}.allow_local_sources"),
                &format!("{f}.max_dpr"),
                &format!("{f}.fit_aliases"),
                &format!("{f}.gravity"),
                &format!("{f}.default_format"),
                &format!("{f}.default_quality"),
            ],
        );
        // With what they modify, the same settings are taken.
        refused(
            "",
            "action = \"resize\"\n[vhosts.rules.resize]\nsource = \"{src}\"\nwidth = \"{w}\"\nallowed_sources = [\"a.test\"]\nallow_local_sources = true\ndpr = \"2\"\nmax_dpr = 2.0\nfit = \"{w}\"\nfit_aliases = { f = \"fill\" }\ngravity = \"north\"\nformat = \"{w}\"\ndefault_format = \"png\"\nquality = \"{w}\"\ndefault_quality = 70\n",
            &[],
        );
    }

    #[test]
    fn shadow_settings_without_effect_are_refused() {
        let f = "vhosts[0].rules[0].shadow";
        refused(
            "",
            "[vhosts.rules.shadow]\ntargets = [{ pool = \"p\" }]\ngroup_by = \"path\"\nname = \"users\"\nsample_by = \"x-user\"\nallow_unsafe = true\nmethods = [\"GET\"]\n",
            &[
                &format!("{f}.name"),
                &format!("{f}.sample_by"),
                &format!("{f}.allow_unsafe"),
            ],
        );
        refused(
            "",
            "[vhosts.rules.shadow]\ntargets = [{ pool = \"p\" }]\nname = \"users\"\nsample_percent = 10\nsample_by = \"x-user\"\nallow_unsafe = true\nmethods = [\"GET\", \"POST\"]\n",
            &[],
        );
    }

    #[test]
    fn etcd_settings_with_static_peers_are_refused() {
        let errs = errors(&format!(
            "{}[cluster]\npeering_address = \"127.0.0.1:7000\"\nsecret = \"0123456789abcdef\"\npeers = [\"127.0.0.1:7001\"]\netcd_prefix = \"/x/\"\nlease_ttl = \"5s\"\netcd_password = \"pw\"\n",
            config("", "")
        ));
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "cluster.etcd_prefix",
                "cluster.lease_ttl",
                "cluster.etcd_password"
            ],
            "{errs:?}"
        );
    }

    #[test]
    fn pool_settings_no_backend_uses_are_refused() {
        refused(
            "whohas_ttl = \"1m\"\nwhohas_entries = 10\ntls_ca = \"/nonexistent/ca.pem\"",
            "",
            &[
                "pools.p.tls_ca",
                "pools.p.whohas_ttl",
                "pools.p.whohas_entries",
                "pools.p.tls_ca",
            ],
        );
    }
}
