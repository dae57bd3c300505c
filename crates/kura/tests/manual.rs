//! `kura man` and `kura completions`, run as a user would: the pages and scripts come from the
//! command line itself, so every subcommand has a page listed in kura(1), every flag of
//! `kura serve --help` is in kura-serve(1), and the bash script is valid bash that completes
//! every subcommand.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kura");

fn kura(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kura {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The subcommands `--help` lists (under "Commands:"), without `help`.
fn subcommands(args: &[&str]) -> Vec<String> {
    let mut help = args.to_vec();
    help.push("--help");
    let out = text(&kura(&help));
    out.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags a `--help` page names.
fn long_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for word in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        if let Some(name) = word.strip_prefix("--")
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        {
            flags.insert(word.to_string());
        }
    }
    flags
}

/// roff escapes `-` as `\-`.
fn roff(s: &str) -> String {
    s.replace('-', "\\-")
}

#[test]
fn kura_man_prints_kura_1_naming_every_subcommand() {
    let page = text(&kura(&["man"]));
    assert!(page.contains(".TH kura 1"), "{page}");
    let subs = subcommands(&[]);
    for expected in ["serve", "check", "routes", "import", "man", "completions"] {
        assert!(subs.iter().any(|s| s == expected), "{subs:?}");
    }
    for sub in &subs {
        assert!(
            page.contains(&format!("kura\\-{}(1)", roff(sub))),
            "kura.1 does not name kura-{sub}(1):\n{page}"
        );
    }
}

#[test]
fn kura_man_dir_writes_a_page_per_subcommand_with_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    kura(&["man", "--dir", out.to_str().unwrap()]);
    let mut expected: BTreeSet<String> = ["kura.1".to_string()].into();
    for sub in subcommands(&[]) {
        expected.insert(format!("kura-{sub}.1"));
        for nested in subcommands(&[&sub]) {
            expected.insert(format!("kura-{sub}-{nested}.1"));
        }
    }
    let written: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(written, expected);
    assert!(expected.contains("kura-routes-add.1"), "{expected:?}");

    let page = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let serve = page("kura-serve.1");
    let help = text(&kura(&["serve", "--help"]));
    let flags = long_flags(&help);
    assert!(
        flags.contains("--upstream") && flags.contains("--config"),
        "{flags:?}"
    );
    for flag in &flags {
        assert!(
            serve.contains(&roff(flag)),
            "kura-serve.1 lacks {flag} (shown by kura serve --help)"
        );
    }
    // Environment variables are named, and hidden (Casserole's) flags are no options there.
    assert!(serve.contains("KURA_UPSTREAM"), "{serve}");
    assert!(
        serve.contains(&format!("\\fB{}\\fR", roff("--upstream"))),
        "{serve}"
    );
    assert!(
        !serve.contains(&format!("\\fB{}", roff("--mirror-url"))),
        "{serve}"
    );
    assert!(page("kura-check.1").contains(&roff("--config")));
}

#[test]
fn kura_man_into_a_file_path_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let out = Command::new(BIN)
        .args(["man", "--dir", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain-file"), "{err}");
}

#[test]
fn bash_completion_is_valid_bash_and_completes_every_subcommand() {
    let script = text(&kura(&["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kura.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Sourced, it registers a completion for kura that offers the subcommands after `kura `.
    let complete = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(kura ''); COMP_CWORD=1; COMP_LINE='kura '; COMP_POINT=5; \
             _kura kura '' kura; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        ))
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&complete.stdout);
    assert!(offered.lines().any(|l| l == "serve"), "{offered}");
    for sub in subcommands(&[]) {
        assert!(
            offered.lines().any(|l| l == sub),
            "bash completion does not offer {sub}: {offered}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let script = text(&kura(&["completions", shell]));
        for sub in ["serve", "check", "routes", "import"] {
            assert!(script.contains(sub), "{shell}: {sub}");
        }
        assert!(script.contains("upstream"), "{shell}");
    }
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn pages_are_valid_roff_for_man() {
    // `man -l` renders a page file as a reader sees it (scripts/test.sh installs man-db).
    let dir = tempfile::tempdir().unwrap();
    kura(&["man", "--dir", dir.path().to_str().unwrap()]);
    let shown = Command::new("man")
        .arg("-l")
        .arg(Path::new(dir.path()).join("kura-serve.1"))
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(shown.status.success());
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("--upstream"), "{shown}");
    assert!(shown.contains("SYNOPSIS"), "{shown}");
}
