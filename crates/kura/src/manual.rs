//! `kura man` and `kura completions`: the manual pages and the shell completion scripts,
//! generated from the clap definitions in `cli.rs`, so they cannot drift from the command
//! line. The package ships copies of them from `packaging/`, which
//! `tests/generated_docs.rs` keeps equal to what this binary prints.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The command line as clap sees it, with the name the pages and scripts use.
fn command() -> clap::Command {
    Cli::command().name("kura").bin_name("kura")
}

/// kura(1) on standard output, or with `dir` kura.1 and one page per subcommand
/// (kura-serve.1, kura-routes-add.1…) written there.
pub fn man(dir: Option<&Path>) -> ExitCode {
    let result = match dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command(), dir))
            .map_err(|e| format!("{}: {e}", dir.display())),
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command())
                .render(&mut out)
                .and_then(|()| out.flush())
                .map_err(|e| format!("standard output: {e}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kura man: {e}");
            ExitCode::from(1)
        }
    }
}

/// The completion script for `shell` on standard output.
pub fn completions(shell: Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "kura", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kura completions: standard output: {e}");
            ExitCode::from(1)
        }
    }
}
