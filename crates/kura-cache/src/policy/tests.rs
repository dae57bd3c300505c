use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, StatusCode};
use kura_config::RuleCache;

use super::*;

fn rule() -> RuleCache {
    RuleCache {
        key: None,
        min_ttl: Duration::ZERO,
        default_ttl: None,
        force_ttl: None,
        client_max_age: None,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        accel_redirect: None,
        cookies: kura_config::CookiePolicy::Origin,
        targeted_cache_control: vec![http::HeaderName::from_static("cdn-cache-control")],
    }
}

fn req() -> http::request::Parts {
    Request::get("http://a.com/x")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn ttl(v: &Verdict, now: SystemTime) -> u64 {
    v.fresh_until.duration_since(now).unwrap().as_secs()
}

#[test]
fn freshness_sources() {
    let now = SystemTime::now();
    let date = httpdate::fmt_http_date(now);
    let v = evaluate(
        &req(),
        StatusCode::OK,
        &headers(&[("cache-control", "max-age=100")]),
        &rule(),
        now,
    )
    .unwrap();
    assert_eq!(ttl(&v, now), 100);
    let v = evaluate(
        &req(),
        StatusCode::OK,
        &headers(&[("cache-control", "max-age=100, s-maxage=300")]),
        &rule(),
        now,
    )
    .unwrap();
    assert_eq!(ttl(&v, now), 300, "s-maxage wins in a shared cache");
    let expires = httpdate::fmt_http_date(now + Duration::from_secs(50));
    let v = evaluate(
        &req(),
        StatusCode::OK,
        &headers(&[("date", &date), ("expires", &expires)]),
        &rule(),
        now,
    )
    .unwrap();
    assert!((49..=50).contains(&ttl(&v, now)));
}

#[test]
fn not_storable_responses() {
    let now = SystemTime::now();
    for h in [
        headers(&[("cache-control", "no-store, max-age=100")]),
        headers(&[("cache-control", "private, max-age=100")]),
        headers(&[("cache-control", "max-age=100"), ("vary", "*")]),
        headers(&[("cache-control", "max-age=100"), ("set-cookie", "a=b")]),
    ] {
        assert!(
            evaluate(&req(), StatusCode::OK, &h, &rule(), now).is_err(),
            "{h:?}"
        );
    }
    // Set-Cookie with public is a deliberate shared document.
    let h = headers(&[
        ("cache-control", "public, max-age=100"),
        ("set-cookie", "a=b"),
    ]);
    assert!(evaluate(&req(), StatusCode::OK, &h, &rule(), now).is_ok());
    // Authorization requests need an explicit permission.
    let mut r = req();
    r.headers
        .insert("authorization", "Basic eA==".parse().unwrap());
    let h = headers(&[("cache-control", "max-age=100")]);
    assert_eq!(
        evaluate(&r, StatusCode::OK, &h, &rule(), now).err(),
        Some(NoStore::Authorization)
    );
    let h = headers(&[("cache-control", "public, max-age=100")]);
    assert!(
        evaluate(&r, StatusCode::OK, &h, &rule(), now)
            .unwrap()
            .allows_auth
    );
}

#[test]
fn no_store_and_private_are_refused_before_a_policy_with_the_same_reasons() {
    let now = SystemTime::now();
    for cc in [
        "no-store",
        "No-Store, max-age=100",
        "private",
        "max-age=100, PRIVATE",
    ] {
        let h = headers(&[("cache-control", cc)]);
        assert_eq!(
            evaluate(&req(), StatusCode::OK, &h, &rule(), now).err(),
            Some(NoStore::NotStorable),
            "{cc}"
        );
    }
    // The checks about the request and Set-Cookie still come first.
    let h = headers(&[("cache-control", "no-store"), ("set-cookie", "a=b")]);
    assert_eq!(
        evaluate(&req(), StatusCode::OK, &h, &rule(), now).err(),
        Some(NoStore::SetCookie)
    );
    // A qualified private only hides the fields it names.
    let h = headers(&[("cache-control", "private=\"x-user\", max-age=100")]);
    assert!(evaluate(&req(), StatusCode::OK, &h, &rule(), now).is_ok());
}

#[test]
fn rule_ttls() {
    let now = SystemTime::now();
    let short = headers(&[("cache-control", "max-age=10")]);
    let mut r = rule();
    r.min_ttl = Duration::from_secs(60);
    assert_eq!(
        evaluate(&req(), StatusCode::OK, &short, &r, now).err(),
        Some(NoStore::BelowMinTtl)
    );

    let mut r = rule();
    r.default_ttl = Some(Duration::from_secs(300));
    let none = headers(&[("content-type", "text/plain")]);
    assert_eq!(
        ttl(
            &evaluate(&req(), StatusCode::OK, &none, &r, now).unwrap(),
            now
        ),
        300
    );
    // A default does not override the origin's own freshness.
    assert_eq!(
        ttl(
            &evaluate(&req(), StatusCode::OK, &short, &r, now).unwrap(),
            now
        ),
        10
    );

    let mut r = rule();
    r.force_ttl = Some(Duration::from_secs(900));
    assert_eq!(
        ttl(
            &evaluate(&req(), StatusCode::OK, &short, &r, now).unwrap(),
            now
        ),
        900
    );
    // Forcing a TTL still respects no-store.
    let nostore = headers(&[("cache-control", "no-store")]);
    assert!(evaluate(&req(), StatusCode::OK, &nostore, &r, now).is_err());
}

#[test]
fn stale_windows_and_revalidation_flags() {
    let now = SystemTime::now();
    let h = headers(&[(
        "cache-control",
        "max-age=1, stale-while-revalidate=30, stale-if-error=60",
    )]);
    let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
    assert_eq!(v.stale_while_revalidate, Duration::from_secs(30));
    assert_eq!(v.stale_if_error, Duration::from_secs(60));
    assert!(!v.must_revalidate);
    let mut r = rule();
    r.stale_if_error = Duration::from_secs(5);
    let h = headers(&[("cache-control", "max-age=1, must-revalidate")]);
    let v = evaluate(&req(), StatusCode::OK, &h, &r, now).unwrap();
    assert!(v.must_revalidate);
    assert_eq!(v.stale_if_error, Duration::from_secs(5), "rule default");
}

#[test]
fn directive_parsing_handles_quotes() {
    let d = directives(&headers(&[
        ("cache-control", "no-cache=\"set-cookie, foo\", max-age=5"),
        ("cache-control", "Public"),
    ]));
    assert_eq!(d.len(), 3);
    assert_eq!(d[0].0, "no-cache");
    assert_eq!(d[1], ("max-age".to_string(), Some("5".to_string())));
    assert_eq!(d[2].0, "public");
}

#[test]
fn client_conditionals() {
    let stored = headers(&[
        ("etag", "\"v1\""),
        ("last-modified", "Sun, 01 Nov 2026 00:00:00 GMT"),
    ]);
    assert!(not_modified(
        &headers(&[("if-none-match", "\"v0\", W/\"v1\"")]),
        &stored
    ));
    assert!(!not_modified(
        &headers(&[("if-none-match", "\"v2\"")]),
        &stored
    ));
    assert!(not_modified(&headers(&[("if-none-match", "*")]), &stored));
    assert!(not_modified(
        &headers(&[("if-modified-since", "Mon, 02 Nov 2026 00:00:00 GMT")]),
        &stored
    ));
    assert!(!not_modified(
        &headers(&[("if-modified-since", "Sat, 31 Oct 2026 00:00:00 GMT")]),
        &stored
    ));
    // If-None-Match wins over If-Modified-Since.
    assert!(!not_modified(
        &headers(&[
            ("if-none-match", "\"v2\""),
            ("if-modified-since", "Mon, 02 Nov 2026 00:00:00 GMT")
        ]),
        &stored
    ));
    assert!(!not_modified(&HeaderMap::new(), &stored));
}

#[test]
fn merging_a_304() {
    let stored = headers(&[
        ("etag", "\"v1\""),
        ("cache-control", "max-age=1"),
        ("x-a", "1"),
        ("content-length", "10"),
    ]);
    let fresh = headers(&[
        ("etag", "\"v1\""),
        ("cache-control", "max-age=100"),
        ("x-b", "2"),
        ("content-length", "0"),
    ]);
    assert!(validator_matches(&stored, &fresh));
    let m = merge_304(&stored, &fresh);
    assert_eq!(m["cache-control"], "max-age=100");
    assert_eq!(m["x-a"], "1");
    assert_eq!(m["x-b"], "2");
    assert_eq!(m["content-length"], "10", "a 304 cannot change the length");
    assert!(!validator_matches(&stored, &headers(&[("etag", "\"v2\"")])));
}

#[test]
fn cache_status_values() {
    let s = CacheStatus {
        hit: true,
        ttl: Some(42),
        ..Default::default()
    };
    assert_eq!(s.value(), "kura; hit; ttl=42");
    let s = CacheStatus {
        fwd: Some("miss"),
        fwd_status: Some(200),
        stored: true,
        collapsed: true,
        ..Default::default()
    };
    assert_eq!(
        s.value(),
        "kura; fwd=miss; fwd-status=200; stored; collapsed"
    );
}

#[test]
fn directive_names_are_case_insensitive() {
    let now = SystemTime::now();
    let h = headers(&[("cache-control", "MaX-AgE=100")]);
    assert_eq!(
        ttl(
            &evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap(),
            now
        ),
        100
    );
    let h = headers(&[("cache-control", "No-CaChE, max-age=100")]);
    let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
    assert!(v.must_revalidate);
    assert!(v.fresh_until <= now, "no-cache: stale at once");
}

#[test]
fn qualified_no_cache_and_private_drop_only_the_named_fields() {
    let now = SystemTime::now();
    let h = headers(&[
        ("cache-control", "max-age=100, no-cache=\"x-a, x-b\""),
        ("x-a", "1"),
    ]);
    let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
    assert!(!v.must_revalidate);
    assert_eq!(ttl(&v, now), 100);
    assert_eq!(
        v.strip,
        vec![
            http::HeaderName::from_static("x-a"),
            http::HeaderName::from_static("x-b")
        ]
    );
    let h = headers(&[("cache-control", "max-age=100, private=\"set-me\"")]);
    let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
    assert_eq!(v.strip, vec![http::HeaderName::from_static("set-me")]);
}

#[test]
fn an_invalid_age_makes_the_response_stale() {
    let now = SystemTime::now();
    for age in ["abc", "-1", "1.5", "0, 0", "7200;x=1"] {
        let h = headers(&[("cache-control", "max-age=3600"), ("age", age)]);
        let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
        assert!(v.fresh_until <= now, "Age: {age}");
    }
    let h = headers(&[("cache-control", "max-age=3600"), ("age", "100")]);
    let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
    assert!((3499..=3500).contains(&ttl(&v, now)));
}

#[test]
fn a_304_does_not_replace_validators_or_body_fields() {
    let stored = headers(&[("etag", "\"abcdef\""), ("content-md5", "A"), ("x-c", "1")]);
    let fresh = headers(&[("etag", "\"ghijkl\""), ("content-md5", "B"), ("x-c", "2")]);
    let m = merge_304(&stored, &fresh);
    assert_eq!(m["etag"], "\"abcdef\"");
    assert_eq!(m["content-md5"], "A");
    assert_eq!(m["x-c"], "2");
}

#[test]
fn operator_ttls_never_share_what_the_origin_did_not() {
    let now = SystemTime::now();
    let mut with_default = rule();
    with_default.default_ttl = Some(Duration::from_secs(300));
    let mut with_force = rule();
    with_force.force_ttl = Some(Duration::from_secs(300));
    let mut auth = req();
    auth.headers
        .insert("authorization", "Bearer alice".parse().unwrap());
    for r in [&with_default, &with_force] {
        // No Cache-Control at all, or a plain max-age: not the origin's leave to share.
        for h in [headers(&[]), headers(&[("cache-control", "max-age=60")])] {
            assert_eq!(
                evaluate(&auth, StatusCode::OK, &h, r, now).err(),
                Some(NoStore::Authorization),
                "{h:?}"
            );
        }
        for ok in ["public", "s-maxage=60", "must-revalidate, max-age=60"] {
            let h = headers(&[("cache-control", ok)]);
            let v = evaluate(&auth, StatusCode::OK, &h, r, now).unwrap();
            assert!(v.allows_auth, "{ok}");
        }
    }
    // The same response to an anonymous request is stored under the rule's TTL, and may not
    // answer authenticated requests later.
    let v = evaluate(&req(), StatusCode::OK, &headers(&[]), &with_default, now).unwrap();
    assert_eq!(ttl(&v, now), 300);
    assert!(!v.allows_auth);
}

#[test]
fn cookie_requests_follow_the_rules_cookie_policy() {
    let now = SystemTime::now();
    let mut r = rule();
    r.default_ttl = Some(Duration::from_secs(300));
    let mut cookie = req();
    cookie
        .headers
        .insert("cookie", "session=1".parse().unwrap());
    let bare = headers(&[]);
    let lm = headers(&[("last-modified", "Mon, 01 Jan 2001 00:00:00 GMT")]);
    // origin (default): only the origin's own explicit freshness stores it.
    assert_eq!(
        evaluate(&cookie, StatusCode::OK, &bare, &r, now).err(),
        Some(NoStore::Cookie)
    );
    assert_eq!(
        evaluate(&cookie, StatusCode::OK, &lm, &r, now).err(),
        Some(NoStore::Cookie)
    );
    let own = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        ttl(
            &evaluate(&cookie, StatusCode::OK, &own, &r, now).unwrap(),
            now
        ),
        60
    );
    // force_ttl does not stretch it either.
    let mut forced = r.clone();
    forced.force_ttl = Some(Duration::from_secs(9999));
    assert_eq!(
        ttl(
            &evaluate(&cookie, StatusCode::OK, &own, &forced, now).unwrap(),
            now
        ),
        60
    );
    // ignore: the rule's TTLs apply as to any request.
    r.cookies = kura_config::CookiePolicy::Ignore;
    assert_eq!(
        ttl(
            &evaluate(&cookie, StatusCode::OK, &bare, &r, now).unwrap(),
            now
        ),
        300
    );
}

#[test]
fn time_arithmetic_saturates() {
    let now = SystemTime::now();
    for h in [
        headers(&[("cache-control", "max-age=9999999999999999999")]),
        headers(&[("cache-control", "max-age=999999999999999999999999")]),
        headers(&[("cache-control", "s-maxage=18446744073709551615")]),
        headers(&[
            ("cache-control", "max-age=60"),
            ("age", "18446744073709551615"),
        ]),
        headers(&[
            ("cache-control", "max-age=60"),
            ("age", "99999999999999999999999"),
        ]),
        headers(&[(
            "cache-control",
            "max-age=60, stale-while-revalidate=99999999999999999999",
        )]),
    ] {
        // No panic, and every time is representable.
        if let Ok(v) = evaluate(&req(), StatusCode::OK, &h, &rule(), now) {
            let _ = v.policy.age(now + Duration::from_secs(86400 * 365));
            let _ = v.policy.time_to_live(now);
            assert!(v.fresh_until >= now, "{h:?}");
        }
    }
    // A huge Age is the greatest age: stale on arrival.
    let h = headers(&[
        ("cache-control", "max-age=60"),
        ("age", "18446744073709551615"),
    ]);
    let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
    assert_eq!(ttl(&v, now), 0);
    // A huge max-age is 2^31 seconds.
    let h = headers(&[("cache-control", "max-age=9999999999999999999")]);
    let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
    assert_eq!(ttl(&v, now), MAX_DELTA_SECONDS);
}

#[test]
fn invalid_age_is_stale_and_interim_answers_are_never_stored() {
    let now = SystemTime::now();
    for age in [
        "abc",
        "-7200",
        "7200.0",
        "0, 0",
        "1, 3600",
        "",
        "7200;foo=1",
        "7200,0",
        "0,",
    ] {
        let mut h = headers(&[("cache-control", "max-age=3600")]);
        h.insert("age", age.parse().unwrap());
        let v = evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap();
        assert_eq!(ttl(&v, now), 0, "Age: {age:?}");
    }
    let mut h = headers(&[("cache-control", "max-age=3600")]);
    h.append("age", "0".parse().unwrap());
    h.append("age", "0".parse().unwrap());
    assert_eq!(
        ttl(
            &evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap(),
            now
        ),
        0
    );
    let h = headers(&[("cache-control", "max-age=3600"), ("age", "100")]);
    assert_eq!(
        ttl(
            &evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap(),
            now
        ),
        3500
    );
    for code in [100, 102, 103] {
        let h = headers(&[("cache-control", "max-age=3600")]);
        assert!(
            evaluate(
                &req(),
                StatusCode::from_u16(code).unwrap(),
                &h,
                &rule(),
                now
            )
            .is_err()
        );
    }
}

#[test]
fn invalid_expires_is_in_the_past() {
    let now = SystemTime::now();
    for e in ["0", "-1", "yesterday", "Mon, 99 Jan 2001 00:00:00 GMT", ""] {
        let mut h = headers(&[]);
        h.insert("expires", e.parse().unwrap());
        // Stored or not, never fresh.
        if let Ok(v) = evaluate(&req(), StatusCode::OK, &h, &rule(), now) {
            assert_eq!(ttl(&v, now), 0, "Expires: {e:?}");
        }
    }
}

#[test]
fn a_targeted_field_wins_over_cache_control_and_expires() {
    let now = SystemTime::now();
    let h = headers(&[
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=120"),
    ]);
    assert_eq!(
        ttl(
            &evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap(),
            now
        ),
        120
    );
    let h = headers(&[
        ("cache-control", "max-age=600"),
        ("expires", "Mon, 01 Jan 2001 00:00:00 GMT"),
        ("cdn-cache-control", "no-store"),
    ]);
    assert!(evaluate(&req(), StatusCode::OK, &h, &rule(), now).is_err());
    // An invalid targeted field is ignored: Cache-Control applies.
    let h = headers(&[
        ("cache-control", "max-age=30"),
        ("cdn-cache-control", "Max-Age=999"),
    ]);
    assert_eq!(
        ttl(
            &evaluate(&req(), StatusCode::OK, &h, &rule(), now).unwrap(),
            now
        ),
        30
    );
    // A kura-specific field listed first wins over CDN-Cache-Control.
    let mut r = rule();
    r.targeted_cache_control = vec![
        http::HeaderName::from_static("kura-cache-control"),
        http::HeaderName::from_static("cdn-cache-control"),
    ];
    let h = headers(&[
        ("kura-cache-control", "max-age=7"),
        ("cdn-cache-control", "max-age=120"),
        ("cache-control", "max-age=1"),
    ]);
    assert_eq!(
        ttl(&evaluate(&req(), StatusCode::OK, &h, &r, now).unwrap(), now),
        7
    );
}
