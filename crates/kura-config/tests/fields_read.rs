//! Every field of the configuration file is documented and read by something outside this crate,
//! so a field that is parsed and then ignored (Katana's `cache.key` on an image rule was one)
//! cannot be added without this test failing.
//!
//! How it works:
//!
//! 1. **The walk.** [`Walker`] is a serde `Deserializer` that holds no data and answers every
//!    request with a value of the asked shape. serde's derive hands `deserialize_struct` the
//!    name of the struct and the list of *all* its field names, so walking `FileConfig` visits
//!    every field of every table, whatever a file would hold: a field added anywhere in the tree
//!    is walked without this test knowing of it. Options are entered, a sequence yields one
//!    element (`[]`), a map one entry (`<name>`), and an untagged enum (`SizeValue`, read
//!    through `deserialize_any`) gets a number. (`serde-reflection` walks the same way but
//!    refuses `deserialize_any`, which kura's sizes need; hence the walker here.) Each field is
//!    recorded as (struct, field), with every path it was met at (`FileRuleCache.key` at
//!    `vhosts.cache.key` and `vhosts.rules.cache.key`), and whether its value is a table.
//! 2. **Documented.** Every field whose value is not a table must appear, at one of its paths,
//!    in `docs/configuration.md` as `` `path` `` (`[]` dropped, `...resize.` read as
//!    `vhosts.rules.resize.`, map keys as `<name>`).
//! 3. **Read.** Every such field must be read outside kura-config: its name appears as a field
//!    access (`.name`, not a method call) in the non-test source of another crate (the binary,
//!    the proxy, the cache...; not the test kit or the fuzz targets), or [`READ_AS`] says under
//!    which other name and where it is read, or [`VALIDATION_ONLY`] says why validation alone
//!    consumes it. An entry of either list that names no field, or whose other name is not found
//!    where it says, fails too, so the lists stay true.
//!
//! What it cannot prove: that a field read under a common name (`timeout`, `path`) is read for
//! *this* table; nor that a field is read for every rule kind. The second is validation's job:
//! a field that has no effect for some kind of rule is an error there (`src/no_effect.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kura_config::FileConfig;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Fields read by the runtime under another name: (struct, field, the file under `crates/`
/// that reads it, the text that reads it there).
const READ_AS: &[(&str, &str, &str, &str)] = &[
    // `redirect_to_https` and `https_port` become one `Option<u16>`, the port to redirect to.
    (
        "FileListener",
        "redirect_to_https",
        "kura-proxy/src/listen/connection.rs",
        "mode.redirect_https",
    ),
    (
        "FileListener",
        "https_port",
        "kura-proxy/src/listen/connection.rs",
        "mode.redirect_https",
    ),
    // Header edits are applied by `HeaderEdits::apply` (in kura-config), called per request.
    (
        "FileHeaderEdits",
        "add",
        "kura-proxy/src/request.rs",
        "rule.request_headers.apply(",
    ),
    (
        "FileHeaderEdits",
        "remove",
        "kura-proxy/src/request.rs",
        "rule.response_headers.apply(",
    ),
    // A cluster's nodes are its who-has sub-pool's backends.
    (
        "FileOriginCluster",
        "nodes",
        "kura-proxy/src/upstream/whohas.rs",
        "backends: c.backends",
    ),
    // The not-found image is read at load time; the bytes are `not_found`.
    (
        "FileRuleResize",
        "not_found_source",
        "kura-proxy/src/action/resize_origin.rs",
        "cfg.not_found.clone()",
    ),
    // etcd's settings are `MemberSource::Etcd`'s: prefix, TLS (ca, identity) and auth.
    (
        "FileCluster",
        "etcd_prefix",
        "kura-cluster/src/etcd.rs",
        "source.prefix",
    ),
    (
        "FileCluster",
        "etcd_ca",
        "kura-cluster/src/etcd.rs",
        "read(&t.ca)",
    ),
    (
        "FileCluster",
        "etcd_cert",
        "kura-cluster/src/etcd.rs",
        "&t.identity",
    ),
    (
        "FileCluster",
        "etcd_key",
        "kura-cluster/src/etcd.rs",
        "&t.identity",
    ),
    (
        "FileCluster",
        "etcd_user",
        "kura-cluster/src/etcd.rs",
        "source.auth",
    ),
    (
        "FileCluster",
        "etcd_password",
        "kura-cluster/src/etcd.rs",
        "source.auth",
    ),
    // Peer TLS is `PeerTls`: cert, key, ca, client_auth, server_name.
    (
        "FileCluster",
        "tls_key",
        "kura-cluster/src/tls.rs",
        "read_key(&t.key)",
    ),
    (
        "FileCluster",
        "tls_client_auth",
        "kura-cluster/src/tls.rs",
        "t.client_auth",
    ),
    (
        "FileCluster",
        "tls_server_name",
        "kura-cluster/src/tls.rs",
        "t.server_name",
    ),
];

/// Fields consumed by validation alone, with the reason.
const VALIDATION_ONLY: &[(&str, &str, &str)] = &[];

#[derive(Default, Debug)]
struct Field {
    paths: BTreeSet<String>,
    table: bool,
}

/// The walk's state: where it is, and what it found.
#[derive(Default)]
struct Walker {
    path: Vec<String>,
    /// The (struct, field) pairs being walked, innermost last.
    stack: Vec<(&'static str, &'static str)>,
    found: BTreeMap<(&'static str, &'static str), Field>,
}

type Error = de::value::Error;

impl<'de> Deserializer<'de> for &mut Walker {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u64(0)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_bool(false)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i8(0)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i16(0)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i32(0)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i64(0)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u8(0)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u16(0)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u32(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u64(0)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_f32(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_char('x')
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_string(String::new())
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_bytes(&[])
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_byte_buf(Vec::new())
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_seq(One {
            walker: self,
            done: false,
            key: "[]",
        })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_map(One {
            walker: self,
            done: false,
            key: "<name>",
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        if let Some(outer) = self.stack.last() {
            self.found.entry(*outer).or_default().table = true;
        }
        v.visit_map(Fields {
            walker: self,
            name,
            fields,
            next: 0,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "the walker does not handle the enum {name}: teach it before adding one"
        )))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_str("")
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
}

/// A sequence of one element, or a map of one entry (its key `<name>`).
struct One<'a> {
    walker: &'a mut Walker,
    done: bool,
    key: &'static str,
}

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(None);
        }
        self.walker.path.push(self.key.to_string());
        let value = seed.deserialize(&mut *self.walker);
        self.walker.path.pop();
        value.map(Some)
    }
}

impl<'de> MapAccess<'de> for One<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        seed.deserialize(de::value::StrDeserializer::<Error>::new(self.key))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.done = true;
        self.walker.path.push(self.key.to_string());
        let value = seed.deserialize(&mut *self.walker);
        self.walker.path.pop();
        value
    }
}

/// The fields of a struct, each recorded with the path it is met at, then walked.
struct Fields<'a> {
    walker: &'a mut Walker,
    name: &'static str,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(de::value::StrDeserializer::<Error>::new(field))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.fields[self.next];
        self.next += 1;
        let w = &mut *self.walker;
        w.path.push(field.to_string());
        let path = render(&w.path);
        w.found
            .entry((self.name, field))
            .or_default()
            .paths
            .insert(path);
        w.stack.push((self.name, field));
        let value = seed.deserialize(&mut *w);
        w.stack.pop();
        w.path.pop();
        value
    }
}

/// `vhosts`, `[]`, `rules`, `<name>`... as the docs write a path (sequences left out).
fn render(segments: &[String]) -> String {
    segments
        .iter()
        .filter(|s| *s != "[]")
        .cloned()
        .collect::<Vec<_>>()
        .join(".")
}

fn walk() -> BTreeMap<(&'static str, &'static str), Field> {
    let mut w = Walker::default();
    <FileConfig as serde::Deserialize>::deserialize(&mut w).expect("the walk covers FileConfig");
    w.found
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The non-test Rust source of every crate the runtime is made of (not this one, the test kit
/// or the fuzz targets), by crate folder: `kura-proxy/src/...` → text.
fn runtime_sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("crates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root().join("crates"))
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if ["kura-config", "kura-testkit", "kura-fuzz"]
                .iter()
                .any(|c| rel == *c)
                || rel.ends_with("/tests")
                || rel.ends_with("/benches")
            {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if rel.ends_with(".rs") && !rel.ends_with("tests.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit tests sit at the end of a file, after `#[cfg(test)]`.
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                out.push((rel, code));
            }
        }
    }
    out
}

#[test]
fn the_walk_finds_every_table_and_field() {
    let found = walk();
    // Spot checks that the walk goes everywhere: nested options, sequences, maps of tables.
    let paths: BTreeSet<&str> = found
        .values()
        .flat_map(|f| f.paths.iter().map(String::as_str))
        .collect();
    for p in [
        "listeners.tls.certificates.cert",
        "pools.<name>.health_check.interval",
        "pools.<name>.clusters.headers",
        "vhosts.rules.resize.signature.salts",
        "vhosts.rules.resize.variant_key",
        "vhosts.cache.key",
        "vhosts.rules.shadow.targets.request_headers.set",
        "limits.max_body_bytes",
    ] {
        assert!(paths.contains(p), "{p} not walked: {paths:?}");
    }
    assert!(found[&("FileVHost", "rules")].table);
    assert!(!found[&("FileRuleCache", "key")].table);
    assert!(found.len() > 150, "{}", found.len());
}

#[test]
fn every_field_is_documented() {
    let docs = std::fs::read_to_string(root().join("docs/configuration.md"))
        .unwrap()
        .replace("[]", "")
        .replace("`...resize.", "`vhosts.rules.resize.");
    let mut missing = Vec::new();
    for ((st, field), f) in walk() {
        if f.table {
            continue;
        }
        let documented = f.paths.iter().any(|p| {
            docs.contains(&format!("`{p}`"))
                || docs.contains(&format!("`[{p}]`"))
                || docs.contains(&format!("`[[{p}]]`"))
        });
        if !documented {
            missing.push(format!("{st}.{field} at {:?}", f.paths));
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md (write the field's path in backticks):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_field_is_read_outside_the_configuration() {
    let sources = runtime_sources();
    assert!(
        sources
            .iter()
            .any(|(p, _)| p.starts_with("kura-proxy/src/"))
    );
    let found = walk();
    let read = |name: &str| {
        let re = regex::Regex::new(&format!(r"\.{name}\b[^(]")).unwrap();
        sources.iter().any(|(_, code)| re.is_match(code))
    };
    let mut unread = Vec::new();
    for ((st, field), f) in &found {
        if f.table {
            continue;
        }
        let listed = READ_AS.iter().any(|(s, n, ..)| s == st && n == field)
            || VALIDATION_ONLY
                .iter()
                .any(|(s, n, _)| s == st && n == field);
        if !listed && !read(field) {
            unread.push(format!("{st}.{field} ({:?})", f.paths));
        }
    }
    assert!(
        unread.is_empty(),
        "parsed but never read outside kura-config (read it, or list it in READ_AS or VALIDATION_ONLY with the reason):\n{}",
        unread.join("\n")
    );
    // The lists name fields that exist, and what READ_AS says is read is there.
    for (st, field, dir, needle) in READ_AS {
        assert!(
            found.contains_key(&(*st, *field)),
            "READ_AS: no field {st}.{field}"
        );
        assert!(
            sources
                .iter()
                .any(|(p, code)| p == dir && code.contains(needle)),
            "READ_AS: {st}.{field}: {needle:?} is not in {dir}"
        );
    }
    for (st, field, _) in VALIDATION_ONLY {
        assert!(
            found.contains_key(&(*st, *field)),
            "VALIDATION_ONLY: no field {st}.{field}"
        );
    }
}
