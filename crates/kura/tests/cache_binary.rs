//! The cache through the real binary: a gigabyte object streamed to its first client with
//! bounded memory and each 2 MiB segment fetched from the origin exactly once.

use std::collections::HashSet;
use std::path::Path;

use http_body_util::BodyExt;
use kura_testkit::origin::{pattern_buffer, ranged};
use kura_testkit::{Client, KuraProcess, get_request};

const GIB: u64 = 1024 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_object_streams_on_first_fetch_with_bounded_memory() {
    // What may be resident beyond the baseline: the 32 MiB memory tier, up to 2 × 4 + 1
    // segments of 2 MiB in flight (their received chunks, then the joined copy), 4 pooled
    // buffers, and what the allocator has freed but not yet returned (~25 MiB measured).
    // Unbounded buffering of the gigabyte would be far above it.
    gigabyte_through(&[], 128).await;
}

/// With a disk tier, fetched segments wait for the disk writer: a reader faster than the disk
/// is held back instead of piling segments up in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_object_through_a_disk_tier_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap().to_string();
    gigabyte_through(&["--cache-dir", &dir, "--max-disk", "2GiB"], 160).await;
}

async fn gigabyte_through(extra: &[&str], max_growth_mib: u64) {
    let (origin, st) = ranged("o", GIB, "max-age=3600").await;
    let url = origin.url();
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &url,
        "--max-memory",
        "32MiB",
    ];
    args.extend_from_slice(extra);
    let kura = KuraProcess::start(Path::new(env!("CARGO_BIN_EXE_kura")), &args, 1);
    // Warm up without touching the origin (every path of it is the gigabyte object).
    kura_testkit::get(kura.addr(), "__ping__", "/").await;
    let (baseline, _) = kura.memory();

    let mut client = Client::connect(kura.addr()).await;
    let resp = client
        .send_streaming(get_request("a.com", "/big.iso"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], GIB.to_string().as_str());
    let pattern = pattern_buffer(1, 1 << 20);
    let mut body = resp.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body streams whole");
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for chunk in data.chunks(1 << 20) {
            let at = (offset % 251) as usize;
            assert!(
                chunk == &pattern[at..at + chunk.len()],
                "wrong bytes at {offset}"
            );
            offset += chunk.len() as u64;
        }
    }
    assert_eq!(offset, GIB);

    let (_, peak) = kura.memory();
    eprintln!(
        "kura RSS baseline {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak < baseline + (max_growth_mib << 20),
        "peak RSS {} MiB over a {} MiB baseline (32 MiB memory tier, {extra:?})",
        peak >> 20,
        baseline >> 20
    );
    // Each 2 MiB segment came from the origin once, by range.
    let all = st.range_requests();
    assert!(all.iter().all(Option::is_some), "no whole-object request");
    let ranges: Vec<String> = all.into_iter().flatten().collect();
    let distinct: HashSet<&String> = ranges.iter().collect();
    let mut dups: Vec<&String> = ranges
        .iter()
        .filter(|r| ranges.iter().filter(|x| x == r).count() > 1)
        .collect();
    dups.dedup();
    assert!(dups.is_empty(), "fetched more than once: {dups:?}");
    assert_eq!(distinct.len() as u64, GIB / (2 << 20));
}
