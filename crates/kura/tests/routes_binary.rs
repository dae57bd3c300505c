//! `kura routes` against a real redis-server, and quick mode with `--redis`: a frontend added
//! by the command is served by a kura started with only `--redis`, removed again, listed, and a
//! config file loaded; errors exit 1 with the reason.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kura_testkit::redis::Redis;
use kura_testkit::{KuraProcess, TestOrigin, eventually, get};

const BIN: &str = env!("CARGO_BIN_EXE_kura");

/// How long a change written to Redis may take to be served: its notification, with room for
/// a loaded machine, yet well inside the 10 s resync that would bring it anyway.
const SEEN: Duration = Duration::from_secs(5);

fn routes(redis: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("routes")
        .args(args)
        .env("KURA_REDIS", redis)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_added_by_the_command_are_served_by_quick_mode_with_redis() {
    let redis = Redis::start();
    let web = TestOrigin::fixed("web", 200, "web").await;
    let kura = KuraProcess::start(
        Path::new(BIN),
        &["serve", "--listen", "127.0.0.1:0", "--redis", &redis.url],
        1,
    );
    assert!(kura.wait_for_log("redis routes in sync", Duration::from_secs(20)));

    let (code, out, err) = routes(
        &redis.url,
        &["add", "www.example.test", &web.url(), "--id", "web"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added 1 backend"), "{out}");
    assert!(
        eventually(SEEN, || async {
            get(kura.addr(), "www.example.test", "/").await.text() == "web"
        })
        .await
    );

    let (code, out, _) = routes(&redis.url, &["list", "--json"]);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(listed["host"], "www.example.test");
    assert_eq!(listed["id"], "web");
    assert_eq!(listed["backends"][0], web.url());

    let (code, _, err) = routes(&redis.url, &["add", "www.example.test", "localhost:80"]);
    assert_eq!(code, 1);
    assert!(err.contains("localhost:80"), "{err}");
    let (code, _, err) = routes(&redis.url, &["rm", "nothing.test"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such frontend"), "{err}");

    let (code, _, err) = routes(&redis.url, &["rm", "www.example.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        eventually(SEEN, || async {
            get(kura.addr(), "www.example.test", "/").await.status == 400
        })
        .await
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sites.toml");
    std::fs::write(
        &file,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[pools.p]\nbackends = [\"{}\"]\n[[vhosts]]\nname = \"blog\"\nhosts = [\"blog.test\"]\npool = \"p\"\n",
            web.url()
        ),
    )
    .unwrap();
    let (code, out, err) = routes(&redis.url, &["load", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"blog\""), "{out}");
    assert!(
        eventually(SEEN, || async {
            get(kura.addr(), "blog.test", "/").await.text() == "web"
        })
        .await
    );

    // No Redis given anywhere.
    let out = Command::new(BIN)
        .args(["routes", "list"])
        .env_remove("KURA_REDIS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis"));
}
