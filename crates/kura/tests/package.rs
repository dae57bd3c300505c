//! The Debian package as scripts/package.sh builds it (with the debug binary the tests already
//! built, so no second build): its control data, its files (binary, systemd unit, conffile,
//! manual pages, completions), the packaged binary checking the packaged configuration, the
//! unit as `systemd-analyze verify` reads it, and unit and configuration agreeing on the
//! directories the service may write. Needs cargo-deb, dpkg-deb and systemd-analyze
//! (scripts/test.sh installs what is missing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kura");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package, built into `dir`.
fn build_package(dir: &Path) -> PathBuf {
    let deb_version = Command::new("cargo").args(["deb", "--version"]).output();
    assert!(
        deb_version.is_ok_and(|o| o.status.success()),
        "cargo-deb is needed: cargo install cargo-deb --locked (scripts/test.sh does)"
    );
    run(Command::new(repo().join("scripts/package.sh"))
        .arg("--binary")
        .arg(BIN)
        .arg("--output")
        .arg(dir)
        .arg("--fast"));
    let debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs.into_iter().next().unwrap()
}

/// `key=value` lines of a systemd unit, keys repeated in order.
fn unit_settings(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

#[test]
fn the_package_installs_a_working_kura_as_a_hardened_service() {
    let work = tempfile::tempdir().unwrap();
    let deb = build_package(&work.path().join("out"));

    // Control data: the package, its conffile, and maintainer scripts that neither enable nor
    // start the service on install (its configuration proxies to a placeholder) but restart a
    // running one on upgrade.
    let info = stdout(&run(Command::new("dpkg-deb").arg("-f").arg(&deb)));
    assert!(info.contains("Package: kura"), "{info}");
    assert!(info.contains("Version: 0.1.0"), "{info}");
    let control = work.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/kura/kura.toml");
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("daemon-reload"), "{postinst}");
    assert!(postinst.contains("try-restart kura.service"), "{postinst}");
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");

    // Files.
    let listing = stdout(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for expected in [
        "./usr/bin/kura",
        "./usr/lib/systemd/system/kura.service",
        "./etc/kura/kura.toml",
        "./usr/share/man/man1/kura.1.gz",
        "./usr/share/man/man1/kura-serve.1.gz",
        "./usr/share/man/man1/kura-check.1.gz",
        "./usr/share/bash-completion/completions/kura",
        "./usr/share/zsh/vendor-completions/_kura",
        "./usr/share/fish/vendor_completions.d/kura.fish",
        "./usr/share/doc/kura/configuration.md",
        "./usr/share/doc/kura/contrib/grafana/kura.json",
        "./usr/share/doc/kura/contrib/prometheus/alerts.yml",
    ] {
        assert!(files.contains(&expected), "{expected} missing:\n{listing}");
    }
    let binary_line = listing
        .lines()
        .find(|l| l.ends_with(" ./usr/bin/kura"))
        .unwrap();
    assert!(binary_line.starts_with("-rwxr-xr-x"), "{binary_line}");

    let root = work.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let kura = root.join("usr/bin/kura");
    let config = root.join("etc/kura/kura.toml");

    // The packaged binary accepts the packaged configuration.
    let check = stdout(&run(Command::new(&kura)
        .arg("check")
        .arg("--config")
        .arg(&config)));
    assert!(check.contains(": ok ("), "{check}");
    // ... and is this build's kura (the pages it ships are the ones it prints).
    let page = stdout(&run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/kura-serve.1.gz"))));
    let printed = work.path().join("printed");
    run(Command::new(&kura).args(["man", "--dir"]).arg(&printed));
    assert_eq!(
        page,
        std::fs::read_to_string(printed.join("kura-serve.1")).unwrap()
    );
    assert!(page.contains("\\-\\-upstream"), "{page}");

    // The unit: hardened as promised, running the packaged paths.
    let unit_path = root.join("usr/lib/systemd/system/kura.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let s = unit_settings(&unit);
    let one = |k: &str| -> &str {
        let v = s
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing from kura.service"));
        &v[v.len() - 1]
    };
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/kura serve --config /etc/kura/kura.toml --upgrade-socket /run/kura/upgrade.sock"
    );
    assert_eq!(
        one("ExecStartPre"),
        "/usr/bin/kura check --config /etc/kura/kura.toml"
    );
    // The packaged binary takes the flags the unit gives it.
    let serve_help = stdout(&run(Command::new(&kura).args(["serve", "--help"])));
    for flag in one("ExecStart")
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
    {
        assert!(serve_help.contains(flag), "kura serve does not take {flag}");
    }
    // kura notifies READY=1, and after SIGUSR2 its successor notifies MAINPID= itself.
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "all");
    assert_eq!(one("RuntimeDirectory"), "kura");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("NoNewPrivileges"), "yes");
    let nofile: u64 = one("LimitNOFILE").parse().unwrap();
    assert!(nofile >= 65536, "LimitNOFILE {nofile}");
    // Unit and configuration agree on where the service may write.
    let conf: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let cache_dir = conf["cache"]["dir"].as_str().unwrap();
    assert_eq!(cache_dir, format!("/var/cache/{}", one("CacheDirectory")));
    let access_log = conf["access_log"]["path"].as_str().unwrap();
    assert!(
        access_log.starts_with(&format!("/var/log/{}/", one("LogsDirectory"))),
        "{access_log}"
    );
    assert!(s.contains_key("StateDirectory"));

    // systemd's own reading of the unit: no unknown key, no bad value, commands that exist.
    // The packaged binary is used where the unit names /usr/bin/kura (not installed here).
    let verify_copy = work.path().join("kura.service");
    std::fs::write(
        &verify_copy,
        unit.replace("/usr/bin/kura", kura.to_str().unwrap()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&verify_copy)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}
