//! Tests of the command line: its shape, quick mode's configuration, Casserole's spellings.

use std::path::Path;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use kura_config::{Action, Config, MemberSource};

use super::quick::*;
use super::*;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// `kura serve ARGV` with Casserole's variables `env`; `command` is `serve` or `server`.
fn resolve(command: &str, argv: &[&str], env: &[(&str, &str)]) -> Result<Quick, String> {
    let mut full = vec!["kura", command];
    full.extend_from_slice(argv);
    let m = Cli::command()
        .try_get_matches_from(full)
        .map_err(|e| e.to_string())?;
    let Command::Serve(args) = Cli::from_arg_matches(&m).unwrap().command else {
        panic!("serve expected")
    };
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    args.quick(m.subcommand_matches("serve").unwrap(), &|k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
}

fn quick(argv: &[&str]) -> Result<Quick, String> {
    resolve("serve", argv, &[])
}

fn valid(q: Result<Quick, String>) -> Config {
    let q = q.unwrap();
    kura_config::validate(&q.config(), Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}

fn min_ttl(cfg: &Config) -> Duration {
    cfg.routes.vhosts[0]
        .rules
        .last()
        .unwrap()
        .action
        .cache()
        .unwrap()
        .min_ttl
}

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
}

/// The quick-mode table of docs/configuration.md gives the defaults the code uses and each
/// flag's environment variable.
#[test]
fn documented_quick_mode_matches_the_code() {
    let doc = include_str!("../../../docs/configuration.md");
    let row = |flag: &str| -> Vec<String> {
        let line = doc
            .lines()
            .find(|l| {
                l.starts_with(&format!("| `--{flag} ")) || l.starts_with(&format!("| `--{flag}`"))
            })
            .unwrap_or_else(|| panic!("no row for --{flag}"));
        line.split('|')
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect()
    };
    assert_eq!(row("listen")[3], QUICK_LISTEN);
    assert_eq!(row("min-ttl")[3], QUICK_MIN_TTL);
    let size = |flag: &str| kura_config::parse_size(&row(flag)[3]).unwrap();
    assert_eq!(size("max-memory"), kura_config::DEFAULT_CACHE_MEMORY);
    assert_eq!(size("max-disk"), kura_config::DEFAULT_MAX_DISK);
    let cmd = Cli::command();
    let serve = cmd.find_subcommand("serve").unwrap();
    let mut checked = 0;
    for arg in serve.get_arguments() {
        if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
            let env = env.to_str().unwrap();
            assert!(row(long)[2].contains(env), "--{long}: {env} not documented");
            checked += 1;
        }
    }
    assert_eq!(checked, 15, "every quick-mode flag has a variable");
    // Casserole's hidden spellings are documented too.
    for flag in [
        "--address",
        "--mirror-url",
        "--max-memory-usage",
        "--max-disk-usage",
        "--cleaned-disk-usage",
        "--disk-cache-dir",
        "--disk-cache-enabled",
        "--passthrough",
    ] {
        assert!(
            doc.contains(&format!("| `{flag}")),
            "{flag} not in the Casserole table"
        );
    }
}

#[test]
fn quick_mode_is_a_valid_config() {
    let cfg = valid(quick(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9000",
        "--upstream",
        "http://127.0.0.1:9001",
        "--admin",
        "127.0.0.1:0",
    ]));
    assert_eq!(cfg.routes.pools["default"].backends.len(), 2);
    assert!(cfg.admin.is_some());
    assert_eq!(
        cfg.routes.vhosts[0].hosts,
        vec![kura_config::HostPattern::Any]
    );
    assert_eq!(cfg.routes.vhosts[0].rules[0].action.kind(), Action::Cache);
    // Nothing to serve is said so.
    assert!(
        quick(&["--listen", "127.0.0.1:0"])
            .unwrap_err()
            .contains("--upstream")
    );
}

#[test]
fn cluster_flags_become_cluster_fields() {
    let parse = |extra: &[&str]| {
        let mut argv = vec!["--upstream", "http://127.0.0.1:9000"];
        argv.extend_from_slice(extra);
        let q = quick(&argv).unwrap();
        kura_config::validate(&q.config(), Path::new("."))
    };
    let cfg = parse(&[
        "--peering-address",
        "127.0.0.2:7000",
        "--etcd",
        "http://127.0.0.1:2379",
        "--cluster-secret",
        "0123456789abcdef",
    ])
    .unwrap();
    let c = cfg.cluster.unwrap();
    assert_eq!(c.peering_address.to_string(), "127.0.0.2:7000");
    assert!(matches!(c.members, MemberSource::Etcd { .. }));
    let cfg = parse(&[
        "--peering-address",
        "127.0.0.2:7000",
        "--peer",
        "127.0.0.3:7000",
        "--cluster-secret",
        "0123456789abcdef",
    ])
    .unwrap();
    assert!(matches!(
        cfg.cluster.unwrap().members,
        MemberSource::Static(ref l) if l.len() == 2
    ));
    // Without a secret the field is named.
    let err = parse(&[
        "--peering-address",
        "127.0.0.2:7000",
        "--peer",
        "127.0.0.3:7000",
    ])
    .unwrap_err();
    assert!(
        err.errors.iter().any(|e| e.field == "cluster.secret"),
        "{err}"
    );
    // What clap's `requires` and `conflicts_with` used to say.
    let base = ["--upstream", "http://127.0.0.1:9000"];
    let with = |extra: &[&str]| quick(&[&base[..], extra].concat());
    assert!(
        with(&["--etcd", "http://e:2379"])
            .unwrap_err()
            .contains("--peering-address")
    );
    assert!(with(&["--cluster-secret", "0123456789abcdef"]).is_err());
    let err = with(&[
        "--peering-address",
        "127.0.0.2:7000",
        "--etcd",
        "http://e:2379",
        "--peer",
        "127.0.0.3:7000",
    ])
    .unwrap_err();
    assert!(err.contains("--etcd") && err.contains("--peer"), "{err}");
    let err = with(&["--no-cache", "--peering-address", "127.0.0.2:7000"]).unwrap_err();
    assert!(err.contains("--no-cache"), "{err}");
}

/// Casserole writes its peering address as a URL (`http://${HOSTNAME}:8080`): the
/// host:port is kura's peer listener, a name resolved at validation.
#[test]
fn peering_address_takes_casserole_url_form() {
    let cluster = |addr: &str| {
        quick(&[
            "--upstream",
            "http://127.0.0.1:9000",
            "--peering-address",
            addr,
            "--peer",
            "127.0.0.3:7000",
            "--cluster-secret",
            "0123456789abcdef",
        ])
    };
    let q = cluster("http://127.0.0.2:7000").unwrap();
    assert_eq!(
        q.cluster.as_ref().unwrap().peering_address,
        "127.0.0.2:7000"
    );
    let cfg = valid(cluster("http://localhost:7000/"));
    assert_eq!(
        cfg.cluster.unwrap().peering_address,
        "127.0.0.1:7000".parse().unwrap()
    );
    assert_eq!(
        valid(cluster("127.0.0.2:7000"))
            .cluster
            .unwrap()
            .peering_address,
        "127.0.0.2:7000".parse().unwrap()
    );
    let err = cluster("https://127.0.0.2:7000").unwrap_err();
    assert!(
        err.contains("--peering-address") && err.contains("tls_cert"),
        "{err}"
    );
    assert!(cluster("http://127.0.0.2:7000/peers").is_err());
}

#[test]
fn cache_flags_become_cache_fields() {
    let cfg = valid(quick(&[
        "--upstream",
        "http://127.0.0.1:9000",
        "--cache-dir",
        "/tmp/kc",
        "--max-memory",
        "100M",
        "--max-disk",
        "2G",
        "--cleaned-disk",
        "1G",
        "--min-ttl",
        "90s",
    ]));
    assert_eq!(cfg.cache.memory_bytes, 100_000_000);
    let disk = cfg.cache.disk.clone().unwrap();
    assert_eq!(
        (disk.max_bytes, disk.cleaned_bytes),
        (2_000_000_000, 1_000_000_000)
    );
    assert_eq!(min_ttl(&cfg), Duration::from_secs(90));

    let cfg = valid(quick(&["--upstream", "http://x:1", "--no-cache"]));
    assert_eq!(cfg.routes.vhosts[0].rules[0].action.kind(), Action::Proxy);
    let err = quick(&["--upstream", "http://x:1", "--no-cache", "--cache-dir", "d"]).unwrap_err();
    assert!(
        err.contains("--no-cache") && err.contains("--cache-dir"),
        "{err}"
    );
    // Disk sizes need a disk tier; cache flags need upstreams.
    let err = quick(&["--upstream", "http://x:1", "--max-disk", "2G"]).unwrap_err();
    assert!(
        err.contains("--max-disk") && err.contains("--cache-dir"),
        "{err}"
    );
    let err = quick(&["--redis", "redis://127.0.0.1/", "--max-memory", "1G"]).unwrap_err();
    assert!(
        err.contains("--max-memory") && err.contains("--upstream"),
        "{err}"
    );
    assert!(quick(&["--redis", "redis://127.0.0.1/", "--no-cache"]).is_err());
}

/// Casserole never caches what expires within 60 s: quick mode's `min_ttl` is 60 s unless
/// `--min-ttl` says otherwise (`0` turns it off); a file's rules keep `0s`.
#[test]
fn quick_min_ttl_defaults_to_60s() {
    let cfg = valid(quick(&["--upstream", "http://x:1"]));
    assert_eq!(min_ttl(&cfg), Duration::from_secs(60));
    let cfg = valid(quick(&["--upstream", "http://x:1", "--min-ttl", "0"]));
    assert_eq!(min_ttl(&cfg), Duration::ZERO);
    let cfg = valid(quick(&["--upstream", "http://x:1", "--min-ttl", "5m"]));
    assert_eq!(min_ttl(&cfg), Duration::from_secs(300));
    let file = Config::from_toml(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[pools.a]\nbackends = [\"http://x:1\"]\n[[vhosts]]\nhosts = [\"*\"]\npool = \"a\"\naction = \"cache\"\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(min_ttl(&file), Duration::ZERO);
}

#[test]
fn config_and_quick_flags_conflict() {
    let refused = |argv: &[&str]| {
        let mut full = vec!["kura", "serve"];
        full.extend_from_slice(argv);
        let m = Cli::command().try_get_matches_from(full).unwrap();
        let Command::Serve(args) = Cli::from_arg_matches(&m).unwrap().command else {
            panic!("serve expected")
        };
        args.refuse_quick_flags(m.subcommand_matches("serve").unwrap())
    };
    let err = refused(&["--config", "a.toml", "--upstream", "http://x"]).unwrap_err();
    assert!(err.contains("--upstream"), "{err}");
    let err = refused(&["--config", "a.toml", "--mirror-url", "http://x"]).unwrap_err();
    assert!(err.contains("--mirror-url"), "{err}");
    assert!(refused(&["--config", "a.toml", "--workers", "2", "--per-core"]).is_ok());
}

#[test]
fn bad_upstream_is_named() {
    let q = quick(&["--upstream", "localhost:9000"]).unwrap();
    let err = kura_config::validate(&q.config(), Path::new(".")).unwrap_err();
    assert_eq!(err.errors[0].field, "pools.default.backends[0]");
}

/// A Casserole command line as its README and Dockerfile write it.
#[test]
fn casserole_flags_map_onto_quick_mode() {
    let q = resolve(
        "server",
        &[
            "--address=localhost:8080",
            "--mirror-url=http://127.0.0.1:9000",
            "--max-memory-usage=100M",
            "--max-disk-usage",
            "2G",
            "--cleaned-disk-usage=800M",
            "--disk-cache-dir=/var/cache/casserole",
            "--disk-cache-enabled",
            "--passthrough=\\.pom$,\\.xml$",
        ],
        &[],
    );
    assert!(q.as_ref().unwrap().casserole);
    let cfg = valid(q);
    assert_eq!(cfg.listeners[0].address, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        cfg.routes.pools["default"].backends[0].authority,
        "127.0.0.1:9000"
    );
    // Casserole's sizes are powers of 1024 (Cloud Foundry's bytefmt).
    assert_eq!(cfg.cache.memory_bytes, 100 * MIB);
    let disk = cfg.cache.disk.as_ref().unwrap();
    assert_eq!(disk.dir, Path::new("/var/cache/casserole"));
    assert_eq!((disk.max_bytes, disk.cleaned_bytes), (2 * GIB, 800 * MIB));
    assert_eq!(min_ttl(&cfg), Duration::from_secs(60));
    // --passthrough paths are proxied, everything else cached.
    let rules = &cfg.routes.vhosts[0].rules;
    assert_eq!(rules[0].action.kind(), Action::Proxy);
    assert!(rules[0].path.is_match("/org/a/a-1.pom"));
    assert!(!rules[0].path.is_match("/org/a/a-1.jar"));
    assert_eq!(rules[1].action.kind(), Action::Cache);

    // Casserole's defaults: 100 MiB of memory and a disk tier in ./data (1 GiB, cleaned to
    // 80%), on unless --disk-cache-enabled=false.
    let cfg = valid(quick(&["--mirror-url", "http://127.0.0.1:9000"]));
    assert_eq!(cfg.cache.memory_bytes, 100 * MIB);
    let disk = cfg.cache.disk.unwrap();
    assert_eq!(disk.dir, Path::new("./data"));
    assert_eq!(disk.max_bytes, kura_config::DEFAULT_MAX_DISK);
    for off in ["--disk-cache-enabled=false", "--disk-cache-enabled=0"] {
        let cfg = valid(quick(&[
            "--mirror-url",
            "http://127.0.0.1:9000",
            "--disk-cache-dir",
            "/var/cache/casserole",
            "--max-disk-usage",
            "10G",
            off,
        ]));
        assert!(cfg.cache.disk.is_none(), "{off}");
        assert_eq!(cfg.cache.memory_bytes, 100 * MIB);
    }
    // Also over kura's own --cache-dir.
    let cfg = valid(quick(&[
        "--upstream",
        "http://x:1",
        "--cache-dir",
        "d",
        "--disk-cache-enabled=false",
    ]));
    assert!(cfg.cache.disk.is_none());
    // `--disk-cache-enabled false` (a space) is not Go's syntax either: refused, not ignored.
    assert!(
        quick(&[
            "--mirror-url",
            "http://x:1",
            "--disk-cache-enabled",
            "false"
        ])
        .is_err()
    );
    // Without Casserole's spellings, kura's defaults: 256 MiB, memory only.
    let cfg = valid(quick(&["--upstream", "http://x:1"]));
    assert_eq!(cfg.cache.memory_bytes, kura_config::DEFAULT_CACHE_MEMORY);
    assert!(cfg.cache.disk.is_none());
    // `--etcd a,b` is two endpoints (Casserole's string slice).
    let q = quick(&[
        "--mirror-url",
        "http://x:1",
        "--peering-address",
        "http://127.0.0.2:8000",
        "--etcd=http://e1:2379,http://e2:2379",
    ])
    .unwrap();
    let c = q.cluster.unwrap();
    assert_eq!(c.etcd.unwrap(), ["http://e1:2379", "http://e2:2379"]);
    assert_eq!(c.peering_address, "127.0.0.2:8000");
    // Two spellings of one setting on one command line.
    let err = quick(&[
        "--upstream",
        "http://x:1",
        "--max-memory",
        "1G",
        "--max-memory-usage",
        "1G",
    ])
    .unwrap_err();
    assert!(
        err.contains("--max-memory") && err.contains("--max-memory-usage"),
        "{err}"
    );
    assert!(quick(&["--mirror-url", "http://x:1", "--max-memory-usage", "lots"]).is_err());
}

/// Casserole's environment: UPSTREAM_SERVER, ETCD, MAX_MEMORY (`100m`: 100 MiB),
/// MAX_DISK; flags win over them.
#[test]
fn casserole_environment_fills_what_flags_leave_open() {
    let env = [
        ("UPSTREAM_SERVER", "http://127.0.0.1:9000"),
        ("ETCD", "http://127.0.0.1:2379"),
        ("MAX_MEMORY", "100m"),
        ("MAX_DISK", "100G"),
    ];
    let q = resolve("serve", &[], &env).unwrap();
    assert!(q.casserole);
    assert!(q.cluster.is_none(), "ETCD alone starts no cluster");
    let cfg = valid(Ok(q));
    assert_eq!(
        cfg.routes.pools["default"].backends[0].authority,
        "127.0.0.1:9000"
    );
    assert_eq!(cfg.cache.memory_bytes, 100 * MIB);
    let disk = cfg.cache.disk.unwrap();
    assert_eq!(
        (disk.dir.as_path(), disk.max_bytes),
        (Path::new("./data"), 100 * GIB)
    );

    // Flags win.
    let cfg = valid(resolve(
        "serve",
        &[
            "--upstream",
            "http://127.0.0.1:9100",
            "--max-memory",
            "64MiB",
            "--cache-dir",
            "d",
            "--max-disk",
            "2GiB",
        ],
        &env,
    ));
    let backends = &cfg.routes.pools["default"].backends;
    assert_eq!(backends.len(), 1);
    assert_eq!(backends[0].authority, "127.0.0.1:9100");
    assert_eq!(cfg.cache.memory_bytes, 64 * MIB);
    assert_eq!(cfg.cache.disk.unwrap().max_bytes, 2 * GIB);
    // With kura's own flags, MAX_DISK applies only to a disk tier there is.
    let cfg = valid(resolve("serve", &["--upstream", "http://x:1"], &env));
    assert!(cfg.cache.disk.is_none());
    assert_eq!(cfg.cache.memory_bytes, 100 * MIB);
    // ETCD with a peering address.
    let q = resolve(
        "serve",
        &["--peering-address", "http://127.0.0.2:8000"],
        &env,
    )
    .unwrap();
    assert_eq!(q.cluster.unwrap().etcd.unwrap(), ["http://127.0.0.1:2379"]);
    // ...but not over --peer.
    let q = resolve(
        "serve",
        &[
            "--peering-address",
            "127.0.0.2:8000",
            "--peer",
            "127.0.0.3:8000",
        ],
        &env,
    )
    .unwrap();
    let c = q.cluster.unwrap();
    assert!(c.etcd.is_none() && c.peers.is_some());
    // --no-cache turns Casserole's cache sizes off without complaint.
    let cfg = valid(resolve(
        "serve",
        &["--upstream", "http://x:1", "--no-cache"],
        &env,
    ));
    assert!(cfg.cache.disk.is_none());
    assert_eq!(cfg.routes.vhosts[0].rules[0].action.kind(), Action::Proxy);
    // A bad size is named by its variable when it is used.
    let err = resolve(
        "serve",
        &[],
        &[("UPSTREAM_SERVER", "http://x:1"), ("MAX_MEMORY", "lots")],
    )
    .unwrap_err();
    assert!(err.contains("MAX_MEMORY"), "{err}");
    assert!(
        resolve(
            "serve",
            &["--max-memory", "1G", "--upstream", "http://x:1"],
            &[("MAX_MEMORY", "lots")]
        )
        .is_ok()
    );
}
