//! `kura import hipache` on Hipache's own sample configuration (its README's `config.json`) and
//! a `SETTINGS_FLAVOR` file beside it: the generated TOML passes kura's validation and carries
//! the listener, TLS certificate, access log, workers, Redis URL and pool settings; fields kura
//! does not carry are named on stderr and in the header; and a kura started with the generated
//! file proxies a frontend that `kura routes add` wrote to Redis.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kura_config::{AccessLogTarget, Config};
use kura_testkit::etcd::free_addr;
use kura_testkit::redis::Redis;
use kura_testkit::tls::Pki;
use kura_testkit::{KuraProcess, TestOrigin, eventually, get};

const BIN: &str = env!("CARGO_BIN_EXE_kura");

fn kura(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Hipache's README sample, with the certificate paths pointing at real files in `dir`.
fn sample(dir: &Path) -> String {
    let leaf = Pki::new().leaf(dir, "ssl", &["www.example.test"]);
    format!(
        r#"{{
    "server": {{
        "accessLog": "/var/log/hipache_access.log",
        "port": 80,
        "workers": 5,
        "maxSockets": 100,
        "deadBackendTTL": 30,
        "https": {{
            "port": 443,
            "key": "{}",
            "cert": "{}"
        }}
    }},
    "redis": {{
        "port": 6379,
        "host": "127.0.0.1"
    }}
}}"#,
        leaf.key.display(),
        leaf.cert.display()
    )
}

#[test]
fn hipache_sample_config_becomes_a_valid_kura_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, sample(dir.path())).unwrap();

    let (code, toml, err) = kura(&["import", "hipache", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("not carried"), "{err}");
    let c = Config::from_toml(&toml, dir.path()).unwrap_or_else(|e| panic!("{e}\n{toml}"));

    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].address.to_string(), "0.0.0.0:80");
    assert!(c.listeners[0].tls.is_none());
    assert_eq!(c.listeners[1].address.to_string(), "0.0.0.0:443");
    let tls = c.listeners[1].tls.as_ref().unwrap();
    assert_eq!(tls.certificates[0].cert, dir.path().join("ssl.crt"));
    assert_eq!(tls.certificates[0].key, dir.path().join("ssl.key"));
    match &c.access_log.as_ref().unwrap().target {
        AccessLogTarget::File(p) => assert_eq!(p, Path::new("/var/log/hipache_access.log")),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.server.workers, Some(5));
    let redis = c.redis.unwrap();
    assert_eq!(redis.url, "redis://127.0.0.1:6379/0");
    assert_eq!(redis.dead_backend_ttl, Duration::from_secs(30));
    // maxSockets is per worker in Hipache: 100 × 5 workers in one kura process.
    assert_eq!(redis.pool_template.max_connections_per_backend, 500);
    assert_eq!(
        redis.pool_template.dead_backend_ttl,
        Duration::from_secs(30)
    );
}

#[test]
fn flavor_picks_the_flavor_file_and_names_every_field_not_carried() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, sample(dir.path())).unwrap();
    // The test flavor, with the settings of later Hipache releases and some kura lacks.
    std::fs::write(
        dir.path().join("config_test.json"),
        r#"{
    "server": {
        "accessLog": "/tmp/proxy2_access.log",
        "port": 1080,
        "workers": 2,
        "maxSockets": 10,
        "deadBackendTTL": 5,
        "tcpTimeout": 20,
        "retryOnError": 4,
        "deadBackendOn500": true,
        "httpKeepAlive": false,
        "debug": true,
        "staticDir": "/usr/share/hipache/static"
    },
    "redis": {
        "port": 6380,
        "host": "10.0.0.7",
        "db": 3,
        "password": "s3cret",
        "master": {"host": "10.0.0.8", "port": 6379}
    },
    "driver": "redis://"
}"#,
    )
    .unwrap();
    let out = dir.path().join("kura.toml");

    let (code, stdout, err) = kura(&[
        "import",
        "hipache",
        config.to_str().unwrap(),
        "--flavor",
        "test",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty(), "{stdout}");
    let toml = std::fs::read_to_string(&out).unwrap();
    assert!(toml.contains("config_test.json"), "{toml}");
    let c = Config::from_file(&out).unwrap_or_else(|e| panic!("{e}\n{toml}"));

    assert_eq!(c.listeners.len(), 1, "the flavor has no https section");
    assert_eq!(c.listeners[0].address.port(), 1080);
    assert_eq!(c.server.workers, Some(2));
    let redis = c.redis.unwrap();
    assert_eq!(redis.url, "redis://:s3cret@10.0.0.7:6380/3");
    assert_eq!(redis.dead_backend_ttl, Duration::from_secs(5));
    let pool = &redis.pool_template;
    assert_eq!(pool.max_connections_per_backend, 20);
    assert_eq!(pool.connect_timeout, Duration::from_secs(20));
    assert_eq!(pool.response_timeout, Duration::from_secs(20));
    assert_eq!(pool.retries, 4);
    assert!(pool.dead_on_status.contains(&500) && pool.dead_on_status.contains(&503));
    assert_eq!(pool.max_idle_per_backend, 0);

    for field in ["server.debug", "server.staticDir", "redis.master", "driver"] {
        assert!(
            err.contains(&format!("not carried: {field}:")),
            "{field} on stderr: {err}"
        );
        assert!(
            toml.contains(&format!("#   {field}:")),
            "{field} in the header: {toml}"
        );
    }
}

#[test]
fn missing_file_and_invalid_result_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"server": {"port": 80}}"#).unwrap();
    let (code, _, err) = kura(&[
        "import",
        "hipache",
        config.to_str().unwrap(),
        "--flavor",
        "nope",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("config_nope.json"), "{err}");

    // workers 0 passes the JSON reading but not kura's validation: nothing is written.
    std::fs::write(&config, r#"{"server": {"port": 80, "workers": 0}}"#).unwrap();
    let out = dir.path().join("kura.toml");
    let (code, _, err) = kura(&[
        "import",
        "hipache",
        config.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("server.workers"), "{err}");
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_config_serves_routes_added_to_redis() {
    let redis = Redis::start();
    let web = TestOrigin::fixed("web", 200, "web").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_addr("127.0.0.1").port();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{
    "server": {{"port": {port}, "address": "127.0.0.1", "workers": 1, "maxSockets": 100, "deadBackendTTL": 30}},
    "redis": {{"port": {}, "host": "127.0.0.1"}}
}}"#,
            redis.addr.port()
        ),
    )
    .unwrap();
    let out = dir.path().join("kura.toml");
    let (code, _, err) = kura(&[
        "import",
        "hipache",
        config.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = kura(&[
        "routes",
        "--config",
        out.to_str().unwrap(),
        "add",
        "www.example.test",
        &web.url(),
    ]);
    assert_eq!(code, 0, "{err}");

    let kura = KuraProcess::start(
        Path::new(BIN),
        &["serve", "--config", out.to_str().unwrap()],
        1,
    );
    assert_eq!(kura.addr().port(), port);
    assert!(
        eventually(Duration::from_secs(20), || async {
            get(kura.addr(), "www.example.test", "/").await.text() == "web"
        })
        .await,
        "{}",
        kura.log_text()
    );
}
