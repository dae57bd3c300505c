//! Hit-for-pass: what the origin said about a key that may not be stored, remembered for a
//! while, so the next requests for it are plain passes (Varnish's hit-for-pass, nginx's
//! `proxy_no_cache` by response).
//!
//! Without it every request for a `no-store` URL goes through the fill machinery: a coalesced
//! flight (requests for the same URL wait on each other, then each goes alone), and a Range
//! request for the first segment that a large answer has to repeat without the Range. With it,
//! the first answer that may not be stored marks the key, and later requests go straight to
//! the origin as the client sent them, until the mark expires or a passed answer turns out to
//! be storable (the object changed: the next request fills again).
//!
//! Such a pass says `Cache-Status: kura; fwd=miss; detail=pass-remembered`: not Varnish's name,
//! so that nothing matching `hit` in the field takes a pass for a hit.
//!
//! A remembered pass whose answer still may not be stored renews the mark, but at most once in
//! half its lifetime: the marks' cache is written once a minute per key, not at every request.
//!
//! Only a whole `200` answer that says something about the object marks it: `no-store`,
//! `private`, `Vary: *`, a TTL below `min_ttl`, a `Set-Cookie`. An error status (a `400` one
//! client's headers caused, an origin's `503` for a second) marks nothing: the next request
//! fills again. Nor does an answer refused because of what this request carried
//! (`Authorization`, `Cookie`), nor one shaped by it (`206`, `304`, `412`, `416` to a pass),
//! so no client can keep a URL uncached for others; and any storable answer to a pass, a `206`
//! included, lifts the mark. The marks are 64-bit keyed hashes of the cache key in a
//! bounded moka cache: a client inventing URLs costs at most [`MAX_MARKS`] entries of a few
//! dozen bytes, and a hash collision can only turn a cacheable request into a pass, never
//! serve one client's answer to another.

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::key::PrimaryKey;
use crate::policy::NoStore;

/// How many keys are remembered at most (the least recently used go first).
pub const MAX_MARKS: u64 = 65_536;

/// How long a mark lasts without being renewed (Varnish's default for hit-for-pass objects).
pub const MARK_TTL: Duration = Duration::from_secs(120);

/// The remembered keys.
pub(crate) struct HitForPass {
    /// When each key was marked.
    marks: moka::sync::Cache<u64, Instant>,
    /// How long a mark lasts.
    ttl: Duration,
    /// Seeded per process: nobody outside can aim URLs at one hash.
    hasher: std::collections::hash_map::RandomState,
}

impl HitForPass {
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        HitForPass {
            marks: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            ttl,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn hash(&self, key: &PrimaryKey) -> u64 {
        self.hasher.hash_one(key.as_str())
    }

    /// Whether requests for `key` should pass (an earlier answer for it could not be stored):
    /// when its mark was made, if so.
    pub(crate) fn remembers(&self, key: &PrimaryKey) -> Option<Instant> {
        self.marks.get(&self.hash(key))
    }

    /// Notes why an answer (of `status`) for `key` was not stored; marks the key when it was a
    /// whole `200` and the reason is the object's own. Returns whether it did.
    pub(crate) fn note(&self, key: &PrimaryKey, status: StatusCode, reason: NoStore) -> bool {
        if status != StatusCode::OK || !marks_object(reason) {
            return false;
        }
        self.marks.insert(self.hash(key), Instant::now());
        true
    }

    /// As [`HitForPass::note`] for the answer to a remembered pass, whose key was marked at
    /// `marked`: the mark is renewed only once half its lifetime has gone.
    pub(crate) fn renew(
        &self,
        key: &PrimaryKey,
        status: StatusCode,
        reason: NoStore,
        marked: Instant,
    ) -> bool {
        if status == StatusCode::OK && marks_object(reason) && marked.elapsed() < self.ttl / 2 {
            return true;
        }
        self.note(key, status, reason)
    }

    /// A passed answer could have been stored: the next request fills again.
    pub(crate) fn forget(&self, key: &PrimaryKey) {
        self.marks.invalidate(&self.hash(key));
    }

    /// Marks held now (tests and reports; approximate while moka has pending work).
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.marks.run_pending_tasks();
        self.marks.entry_count()
    }
}

/// Whether a refusal is about the object (any request would get it) rather than about this
/// request's credentials.
fn marks_object(reason: NoStore) -> bool {
    match reason {
        NoStore::NotStorable | NoStore::VaryStar | NoStore::BelowMinTtl | NoStore::SetCookie => {
            true
        }
        NoStore::Authorization | NoStore::Cookie => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::RuleId;

    const OK: StatusCode = StatusCode::OK;

    fn key(path: &str) -> PrimaryKey {
        PrimaryKey::template(RuleId(7), path)
    }

    #[test]
    fn marks_only_what_the_object_says() {
        let h = HitForPass::new(16, Duration::from_secs(60));
        assert!(h.note(&key("/a"), OK, NoStore::NotStorable));
        assert!(!h.note(&key("/b"), OK, NoStore::Authorization));
        assert!(!h.note(&key("/c"), OK, NoStore::Cookie));
        for status in [400, 404, 503, 206, 304, 416] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                !h.note(&key("/d"), status, NoStore::NotStorable),
                "{status}"
            );
        }
        assert!(h.remembers(&key("/d")).is_none());
        assert!(h.remembers(&key("/a")).is_some());
        assert!(h.remembers(&key("/b")).is_none());
        assert!(h.remembers(&key("/c")).is_none());
        h.forget(&key("/a"));
        assert!(h.remembers(&key("/a")).is_none());
    }

    #[test]
    fn a_mark_is_renewed_once_half_its_life_has_gone() {
        // Times far apart, so that a test thread stalled for a second or two on a loaded
        // machine still sees each step where it should be.
        let ttl = Duration::from_secs(6);
        let h = HitForPass::new(16, ttl);
        // Renewed early: nothing written, so the mark ends when it would have.
        assert!(h.note(&key("/early"), OK, NoStore::NotStorable));
        let marked = h.remembers(&key("/early")).unwrap();
        assert!(h.renew(&key("/early"), OK, NoStore::NotStorable, marked));
        assert_eq!(h.remembers(&key("/early")), Some(marked));
        // Renewed late (the mark's time says it was made more than 3 s ago): written again.
        assert!(h.note(&key("/late"), OK, NoStore::NotStorable));
        let marked = h.remembers(&key("/late")).unwrap();
        std::thread::sleep(Duration::from_millis(3500));
        assert!(h.renew(&key("/late"), OK, NoStore::NotStorable, marked));
        let renewed = h.remembers(&key("/late")).unwrap();
        assert!(renewed > marked);
        // Once the early one has expired (6 s after the first marks), the renewed one lives:
        // it ends 6 s after its renewal, 3.5 s later.
        let deadline = Instant::now() + Duration::from_secs(60);
        while h.remembers(&key("/early")).is_some() {
            assert!(Instant::now() < deadline, "the early mark never expired");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(h.remembers(&key("/late")), Some(renewed));
        // A renewal refused for this request's own reasons marks nothing, as a note.
        assert!(!h.renew(&key("/x"), OK, NoStore::Cookie, Instant::now()));
        assert!(!h.renew(
            &key("/x"),
            StatusCode::NOT_FOUND,
            NoStore::NotStorable,
            Instant::now()
        ));
        assert!(h.remembers(&key("/x")).is_none());
    }

    #[test]
    fn bounded_by_count() {
        let h = HitForPass::new(100, Duration::from_secs(60));
        for i in 0..10_000 {
            h.note(&key(&format!("/x/{i}")), OK, NoStore::NotStorable);
        }
        assert!(h.len() <= 100, "{} marks", h.len());
    }

    #[test]
    fn marks_expire() {
        // Long enough to be seen at once by a stalled test thread; its end is waited for.
        let h = HitForPass::new(16, Duration::from_secs(3));
        h.note(&key("/a"), OK, NoStore::BelowMinTtl);
        assert!(h.remembers(&key("/a")).is_some());
        let marked = Instant::now();
        let deadline = marked + Duration::from_secs(60);
        while h.remembers(&key("/a")).is_some() {
            assert!(Instant::now() < deadline, "the mark never expired");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            marked.elapsed() >= Duration::from_millis(2900),
            "it lasted its TTL"
        );
    }
}
