//! Upstream pools through a real server: balancing, passive and active health, retries,
//! timeouts, keep-alive reuse and the per-backend connection cap.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use kura_testkit::{Client, Resetting, TestKura, TestOrigin, closed_addr, eventually};

/// How long a test waits for what must happen: far more than it takes on a loaded machine,
/// so only a failure runs into it.
const WAIT: Duration = Duration::from_secs(10);

fn config(backends: &[String], pool_extra: &str) -> String {
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[pools.p]
backends = [{list}]
{pool_extra}
[[vhosts]]
hosts = ["*"]
pool = "p"
"#
    )
}

async fn spread(kura: &TestKura, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = kura.get("a.com", "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        *seen
            .entry(r.header("x-origin").unwrap_or("?").to_string())
            .or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let (a, b, c) = (
        TestOrigin::fixed("a", 200, "a").await,
        TestOrigin::fixed("b", 200, "b").await,
        TestOrigin::fixed("c", 200, "c").await,
    );
    let kura = TestKura::start(&config(&[a.url(), b.url(), c.url()], "")).await;
    let seen = spread(&kura, 30).await;
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{seen:?}"
    );
}

#[tokio::test]
async fn random_reaches_every_backend() {
    let (a, b, c) = (
        TestOrigin::fixed("a", 200, "a").await,
        TestOrigin::fixed("b", 200, "b").await,
        TestOrigin::fixed("c", 200, "c").await,
    );
    let kura = TestKura::start(&config(
        &[a.url(), b.url(), c.url()],
        "balance = \"random\"",
    ))
    .await;
    let seen = spread(&kura, 300).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    // Each expects 100; 50 is far outside any plausible random spread.
    assert!(seen.values().all(|&n| n > 50), "{seen:?}");
}

#[tokio::test]
async fn least_conn_avoids_the_busy_backend() {
    // The slow backend holds its answer until released: busy for as long as the test looks.
    let (slow, release) = TestOrigin::held("slow", "slow").await;
    let fast = TestOrigin::fixed("fast", 200, "fast").await;
    let kura = TestKura::start(&config(
        &[slow.url(), fast.url()],
        "balance = \"least_conn\"",
    ))
    .await;
    // Occupy the slow backend, then send more while it is busy.
    let addr = kura.addr;
    let held = tokio::spawn(async move { kura_testkit::get(addr, "a.com", "/").await });
    assert!(eventually(WAIT, || async { slow.requests() == 1 }).await);
    // A request sent to the busy backend would wait for the release: bounded, not hung.
    let seen = tokio::time::timeout(WAIT, spread(&kura, 20))
        .await
        .expect("a request went to the busy backend");
    assert_eq!(seen.get("fast"), Some(&20), "{seen:?}");
    release.release();
    assert_eq!(held.await.unwrap().text(), "slow");
}

#[tokio::test]
async fn dead_backend_is_retried_around_then_skipped_until_ttl() {
    let broken = Resetting::start().await;
    let good = TestOrigin::fixed("good", 200, "good").await;
    // The TTL outlasts the requests below on a loaded machine; its end is waited for.
    let kura = TestKura::start(&config(
        &[broken.url(), good.url()],
        "dead_backend_ttl = \"4s\"",
    ))
    .await;
    let seen = spread(&kura, 10).await;
    assert_eq!(
        seen.get("good"),
        Some(&10),
        "every request succeeds: {seen:?}"
    );
    assert_eq!(
        broken.connections(),
        1,
        "tried once, then skipped while dead"
    );
    let b = kura.admin_json("/backends").await;
    assert_eq!(b["pools"]["p"]["backends"][0]["alive"], false);
    assert_eq!(b["pools"]["p"]["backends"][1]["alive"], true);

    let back = || async {
        kura.admin_json("/backends").await["pools"]["p"]["backends"][0]["alive"] == true
    };
    assert!(eventually(WAIT, back).await, "alive again after the TTL");
    spread(&kura, 4).await;
    assert_eq!(broken.connections(), 2, "retried after the TTL");
    let m = kura.metrics().await;
    assert!(m.contains("kura_backend_marked_dead_total"), "{m}");
    // Closed before or after the request was written: "connect" or "reset", both the backend's.
    assert!(
        m.lines()
            .any(|l| l.starts_with("kura_upstream_errors_total")
                && l.contains(&format!("backend=\"{}\"", broken.url()))),
        "{m}"
    );
}

#[tokio::test]
async fn refused_connection_is_retried_even_for_post() {
    let good = TestOrigin::echo("good").await;
    let kura = TestKura::start(&config(
        &[format!("http://{}", closed_addr()), good.url()],
        "",
    ))
    .await;
    for _ in 0..4 {
        let req = http::Request::post("/submit")
            .header("host", "a.com")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let r = kura_testkit::send(kura.addr, req).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["body_len"], 7);
    }
    assert_eq!(good.requests(), 4);
}

#[tokio::test]
async fn all_backends_dead_is_502() {
    let kura = TestKura::start(&config(
        &[
            format!("http://{}", closed_addr()),
            format!("http://{}", closed_addr()),
        ],
        "",
    ))
    .await;
    let r = kura.get("a.com", "/").await;
    assert_eq!(r.status, 502);
    // Both are now marked dead: the next request fails without trying anything.
    let r = kura.get("a.com", "/").await;
    assert_eq!(r.status, 502);
    let b = kura.admin_json("/backends").await;
    for be in b["pools"]["p"]["backends"].as_array().unwrap() {
        assert_eq!(be["alive"], false);
    }
}

#[tokio::test]
async fn response_timeout_is_504_and_marks_dead() {
    // Origins far slower than any stall of a loaded machine: only the 200 ms timeout ends the
    // request before the bound below.
    let slow = TestOrigin::slow("slow", Duration::from_secs(60), "late").await;
    let slower = TestOrigin::slow("slower", Duration::from_secs(60), "later").await;
    let kura = TestKura::start(&config(
        &[slow.url(), slower.url()],
        "response_timeout = \"200ms\"\nretries = 0",
    ))
    .await;
    let t = Instant::now();
    let r = kura.get("a.com", "/").await;
    assert_eq!(r.status, 504);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let b = kura.admin_json("/backends").await;
    let dead = b["pools"]["p"]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["alive"] == false)
        .count();
    assert_eq!(dead, 1, "{b}");
}

#[tokio::test]
async fn the_only_backend_is_never_marked_dead() {
    // As nginx: with nowhere else to go, a failure must not become an outage.
    let addr = closed_addr();
    let kura = TestKura::start(&config(&[format!("http://{addr}")], "")).await;
    assert_eq!(kura.get("a.com", "/").await.status, 502);
    let b = kura.admin_json("/backends").await;
    assert_eq!(b["pools"]["p"]["backends"][0]["alive"], true);
    // The backend comes up on that address: served at once, no TTL to wait out.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_r| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        "up",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    assert_eq!(kura.get("a.com", "/").await.text(), "up");
}

/// An origin that, like a server closing an idle keep-alive connection at the moment a request
/// arrives, drops (unanswered) any request that comes on a connection idle for more than
/// 400 ms. It announces `Keep-Alive: timeout=1` when `announce`. Returns its address and a
/// count of the connections it accepted.
async fn racy_origin(announce: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    kura_testkit::origin::raw(move |s| async move {
        let last = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let svc = hyper::service::service_fn(move |r: http::Request<hyper::body::Incoming>| {
            let last = last.clone();
            async move {
                use http_body_util::BodyExt;
                let idle = last.lock().unwrap().map(|t| t.elapsed());
                if idle.is_some_and(|d| d > Duration::from_millis(400)) {
                    return Err("closed while idle");
                }
                let n = r
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes().len())
                    .unwrap_or(0);
                let mut resp = http::Response::new(Full::new(Bytes::from(format!("got {n}"))));
                if announce {
                    resp.headers_mut()
                        .insert("keep-alive", "timeout=1".parse().unwrap());
                }
                *last.lock().unwrap() = Some(Instant::now());
                Ok(resp)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
            .await;
    })
    .await
}

#[tokio::test]
async fn an_announced_keep_alive_timeout_is_honoured() {
    let (addr, conns) = racy_origin(true).await;
    let kura = TestKura::start(&config(&[format!("http://{addr}")], "")).await;
    for i in 0..3 {
        // A PUT with a body cannot be replayed: it must not go out on a connection the origin
        // is closing.
        let req = http::Request::put("/doc")
            .header("host", "a.com")
            .body(Full::new(Bytes::from("payload")))
            .unwrap();
        let r = kura_testkit::send(kura.addr, req).await;
        assert_eq!((r.status, r.text().as_str()), (200, "got 7"), "request {i}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        conns.load(SeqCst),
        3,
        "no connection reused past the announced timeout"
    );
}

#[tokio::test]
async fn a_stale_kept_alive_connection_is_retried_without_blame() {
    // The origin drops requests on connections idle for 400 ms without saying so: each GET
    // below goes out on such a connection, fails, and is retried on a fresh one.
    let (addr, conns) = racy_origin(false).await;
    let kura = TestKura::start(&config(
        &[
            format!("http://{addr}"),
            format!("http://{}", closed_addr()),
        ],
        "balance = \"least_conn\"",
    ))
    .await;
    kura.get("a.com", "/").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = kura.get("a.com", "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "got 0");
    }
    let b = kura.admin_json("/backends").await;
    assert_eq!(b["pools"]["p"]["backends"][0]["alive"], true, "{b}");
    assert!(conns.load(SeqCst) >= 4);
}

#[tokio::test]
async fn connect_timeout_is_504() {
    let hole = kura_testkit::Blackhole::start();
    let kura = TestKura::start(&config(&[hole.url()], "connect_timeout = \"200ms\"")).await;
    let t = Instant::now();
    let r = kura.get("a.com", "/").await;
    assert_eq!(r.status, 504);
    // The system's own connect timeout is minutes: any bound far below it shows the 200 ms.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(kura.metrics().await.contains("kind=\"connect_timeout\""));
}

#[tokio::test]
async fn configured_5xx_marks_dead_and_retries_idempotent_requests() {
    let bad = TestOrigin::failing("bad", 503).await;
    let good = TestOrigin::fixed("good", 200, "good").await;
    let kura = TestKura::start(&config(&[bad.url(), good.url()], "dead_on_status = [503]")).await;
    let seen = spread(&kura, 6).await;
    assert_eq!(seen.get("good"), Some(&6), "{seen:?}");
    assert_eq!(bad.requests(), 1);

    // Without dead_on_status, a 503 is just an answer, passed to the client.
    let kura = TestKura::start(&config(&[bad.url()], "")).await;
    assert_eq!(kura.get("a.com", "/").await.status, 503);
    assert_eq!(kura.get("a.com", "/").await.status, 503);
}

#[tokio::test]
async fn post_is_not_replayed_after_it_was_sent() {
    let broken = Resetting::after_request().await;
    let good = TestOrigin::echo("good").await;
    let kura = TestKura::start(&config(&[broken.url(), good.url()], "")).await;
    let req = http::Request::post("/pay")
        .header("host", "a.com")
        .body(Full::new(Bytes::from_static(b"once")))
        .unwrap();
    let r = kura_testkit::send(kura.addr, req).await;
    assert_eq!(r.status, 502, "a sent POST is not retried elsewhere");
    assert_eq!(good.requests(), 0);
}

async fn keep_alive_reuse(server: &str, max_upstream_connections: usize) {
    let o = TestOrigin::fixed("o", 200, "hello").await;
    let kura = TestKura::start(&config(&[o.url()], server)).await;
    let mut client = Client::connect(kura.addr).await;
    for _ in 0..50 {
        let r = client.get("a.com", "/").await.unwrap();
        assert_eq!(r.text(), "hello");
    }
    // Fresh client connections too: the upstream side stays on kept-alive connections.
    for _ in 0..50 {
        assert_eq!(kura.get("a.com", "/").await.status, 200);
    }
    assert_eq!(o.requests(), 100);
    assert!(
        o.connections() <= max_upstream_connections,
        "100 sequential requests used {} upstream connections",
        o.connections()
    );
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    // Work stealing: one shared idle stack, so one connection.
    keep_alive_reuse("[server]\nworkers = 2", 1).await;
}

#[tokio::test]
async fn keep_alive_connections_are_reused_per_core() {
    // Thread-per-core: idle upstream connections are kept per worker, at most one each here.
    keep_alive_reuse("[server]\nworkers = 2\nwork_stealing = false", 2).await;
}

#[tokio::test]
async fn per_core_workers_serve_every_connection() {
    let o = TestOrigin::echo("o").await;
    let kura = TestKura::start(&config(
        &[o.url()],
        "[server]\nworkers = 3\nwork_stealing = false",
    ))
    .await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let addr = kura.addr;
        tasks.push(tokio::spawn(async move {
            kura_testkit::get(addr, "a.com", &format!("/{i}")).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["uri"], format!("/{i}"));
    }
}

#[tokio::test]
async fn connection_cap_per_backend_holds_under_concurrency() {
    let o = TestOrigin::slow("o", Duration::from_millis(100), "ok").await;
    let kura = TestKura::start(&config(
        &[o.url()],
        "max_connections_per_backend = 2\n[server]\nworkers = 1",
    ))
    .await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let addr = kura.addr;
        tasks.push(tokio::spawn(async move {
            kura_testkit::get(addr, "a.com", "/").await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(o.requests(), 10);
    assert_eq!(o.max_in_flight(), 2, "never more than the cap at once");
    assert_eq!(
        o.connections(),
        2,
        "one worker: its connections are the cap"
    );
}

#[tokio::test]
async fn active_health_checks_take_a_backend_out_and_back() {
    // The backend answers 500 on /health until told otherwise.
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let flaky = TestOrigin::start(
        "flaky",
        std::sync::Arc::new(move |seen: kura_testkit::origin::Seen| {
            let ok = h.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if seen.uri == "/health" && !ok {
                    kura_testkit::origin::full(500, "sick")
                } else {
                    kura_testkit::origin::full(200, "flaky")
                }
            })
        }),
    )
    .await;
    let steady = TestOrigin::fixed("steady", 200, "steady").await;
    let kura = TestKura::start(&config(
        &[flaky.url(), steady.url()],
        "[pools.p.health_check]\npath = \"/health\"\ninterval = \"50ms\"\nunhealthy_threshold = 2\nhealthy_threshold = 2\n",
    ))
    .await;
    let down = || async {
        kura.admin_json("/backends").await["pools"]["p"]["backends"][0]["health_check_down"] == true
    };
    assert!(eventually(WAIT, down).await);
    let seen = spread(&kura, 6).await;
    assert_eq!(seen.get("steady"), Some(&6), "{seen:?}");

    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let up = || async {
        kura.admin_json("/backends").await["pools"]["p"]["backends"][0]["health_check_down"]
            == false
    };
    assert!(eventually(WAIT, up).await);
    let seen = spread(&kura, 6).await;
    assert_eq!(seen.get("flaky"), Some(&3), "{seen:?}");
}

/// An origin that answers one request per connection with `ok`, then closes the connection
/// 100 ms later as an idle keep-alive connection is closed (a FIN, no reset), but not before
/// `close` holds `true`. Returns its address and a count of the connections it accepted.
async fn closing_origin(
    close: tokio::sync::watch::Receiver<bool>,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    kura_testkit::origin::raw(move |mut s| {
        let mut close = close.clone();
        async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            let head_end = loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = close.wait_for(|close| *close).await;
            let _ = s.shutdown().await;
        }
    })
    .await
}

#[tokio::test]
async fn an_idle_connection_the_backend_closed_is_never_used_for_a_request() {
    // Kept connections have no task watching them: the close must be seen when one is taken,
    // before a request that cannot be replayed (a POST) goes out on it.
    let (_close, closes) = tokio::sync::watch::channel(true);
    let (addr, conns) = closing_origin(closes).await;
    let kura = TestKura::start(&config(&[format!("http://{addr}")], "")).await;
    for i in 0..3 {
        let req = http::Request::post("/form")
            .header("host", "a.com")
            .body(Full::new(Bytes::from("x")))
            .unwrap();
        let r = kura_testkit::send(kura.addr, req).await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "request {i}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(conns.load(SeqCst), 3, "a new connection for each request");
    let b = kura.admin_json("/backends").await;
    assert_eq!(b["pools"]["p"]["backends"][0]["alive"], true, "{b}");
}

#[tokio::test]
async fn an_answer_with_trailers_gives_its_connection_back() {
    // hyper's server stops reading a body at its trailers (they end it), so the body never
    // sees its end after them: the connection must be freed at the trailers, or every such
    // answer costs a new upstream connection.
    let (addr, conns) = kura_testkit::origin::trailers().await;
    let kura = TestKura::start(&config(&[format!("http://{addr}")], "")).await;
    for i in 0..3 {
        let r = kura.get("a.com", "/t").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello world"),
            "request {i}"
        );
    }
    assert_eq!(
        conns.load(SeqCst),
        1,
        "one kept-alive connection for all three"
    );
}

/// The idle connections `/backends` reports for the pool's first backend.
async fn idle_connections(kura: &TestKura) -> u64 {
    let b = kura.admin_json("/backends").await;
    b["pools"]["p"]["backends"][0]["idle_connections"]
        .as_u64()
        .unwrap_or_else(|| panic!("no idle_connections in {b}"))
}

#[tokio::test]
async fn an_idle_connection_the_backend_closed_is_closed_without_traffic() {
    // The origin closes its connection once told to, after the answer. With no request to
    // take it, the kept connection must still be let go of (not left in CLOSE_WAIT for ever).
    let (close, closes) = tokio::sync::watch::channel(false);
    let (addr, _) = closing_origin(closes).await;
    let kura = TestKura::start(&config(&[format!("http://{addr}")], "")).await;
    assert_eq!(kura.get("a.com", "/").await.text(), "ok");
    assert_eq!(idle_connections(&kura).await, 1, "kept after the answer");
    close.send_replace(true);
    assert!(
        eventually(WAIT, || async { idle_connections(&kura).await == 0 }).await,
        "the connection the backend closed is still kept"
    );
}

#[tokio::test]
async fn an_idle_connection_past_its_idle_timeout_is_closed_without_traffic() {
    // A backend that keeps connections open: kura closes its side once `idle_timeout` has
    // passed, as the backend sees (its connection ends).
    let ended = Arc::new(AtomicUsize::new(0));
    let e = ended.clone();
    let (addr, conns) = kura_testkit::origin::raw(move |s| {
        let e = e.clone();
        async move {
            let svc =
                hyper::service::service_fn(|_r: http::Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        "kept",
                    ))))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
            e.fetch_add(1, SeqCst);
        }
    })
    .await;
    // Long enough for the two checks right after the answer on a loaded machine.
    let kura = TestKura::start(&config(
        &[format!("http://{addr}")],
        "idle_timeout = \"4s\"",
    ))
    .await;
    assert_eq!(kura.get("a.com", "/").await.text(), "kept");
    assert_eq!(idle_connections(&kura).await, 1);
    assert_eq!(ended.load(SeqCst), 0, "open while idle");
    assert!(
        eventually(WAIT + Duration::from_secs(5), || async {
            ended.load(SeqCst) == 1
        })
        .await,
        "the backend's connection is still open past the idle timeout"
    );
    assert_eq!(idle_connections(&kura).await, 0);
    // The next request opens a new connection and is answered.
    assert_eq!(kura.get("a.com", "/").await.text(), "kept");
    assert_eq!(conns.load(SeqCst), 2);
}

/// What a client asking `GET /file` over HTTP/`version` reads, to the connection's close, from
/// kura in front of an origin that cuts its `answer` short.
async fn through_kura(answer: &'static [u8], version: &str) -> String {
    let (origin, _) = kura_testkit::origin::cut(answer).await;
    let kura = TestKura::start(&config(&[format!("http://{origin}")], "")).await;
    let request = format!("GET /file HTTP/{version}\r\nHost: a.com\r\n\r\n");
    kura_testkit::raw(kura.addr, request.as_bytes(), WAIT).await
}

#[tokio::test]
async fn an_answer_cut_after_its_head_reaches_the_client_cut() {
    // The client must see the status, headers and bytes that came, then a close before the
    // announced end (a length short, or no last chunk): not an empty reply, and never an
    // answer that looks whole.
    for (answer, seen) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"v1\"\r\n\r\nhello"[..],
            "hello",
        ),
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"v1\"\r\n\r\n"[..],
            "",
        ),
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"v1\"\r\n\r\n5\r\nhello\r\n"
                [..],
            "hello",
        ),
    ] {
        let got = through_kura(answer, "1.1").await;
        kura_testkit::origin::assert_cut_short(&got, seen);
        assert!(got.to_ascii_lowercase().contains("etag: \"v1\""), "{got:?}");
    }
}

#[tokio::test]
async fn an_answer_cut_for_an_http10_client_never_looks_whole() {
    // An HTTP/1.0 client's answer without a length ends with the connection, so a cut one
    // would look whole. The chunked answer breaks (a bad chunk size) in the bytes that came
    // with its head: the client gets no answer, never an empty 200.
    let broken = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"v1\"\r\n\r\nzz\r\n";
    let got = through_kura(broken, "1.0").await;
    assert!(!got.contains(" 200 "), "a cut answer looks whole: {got:?}");
    // An HTTP/1.1 client of the same answer sees the head, and no last chunk.
    kura_testkit::origin::assert_cut_short(&through_kura(broken, "1.1").await, "");
    // With a length the cut shows to an HTTP/1.0 client too: the head and the bytes come.
    let got = through_kura(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello",
        "1.0",
    )
    .await;
    assert!(got.starts_with("HTTP/1.0 200"), "{got:?}");
    kura_testkit::origin::assert_cut_short(&got, "hello");
}
