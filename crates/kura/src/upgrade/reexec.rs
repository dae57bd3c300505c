//! SIGUSR2, as nginx: the running kura starts its binary again (the file at the path it was
//! started from, so a package that replaced it starts the new version) with its own command
//! line plus `--takeover SOCKET`. The new process inherits the environment (systemd's
//! `NOTIFY_SOCKET` included), standard output and error; it takes the sockets over and the old
//! one drains and exits. If the new one fails, it exits and the old one serves on.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// How to start this program again.
pub struct Exec {
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Exec {
    /// This process's binary and arguments, without a `--takeover`; read at start, before a
    /// package can replace the file (afterwards `/proc/self/exe` names a deleted file).
    pub fn current() -> std::io::Result<Exec> {
        let exe = std::env::current_exe()?;
        let args = without_takeover(std::env::args_os().skip(1));
        Ok(Exec { exe, args })
    }

    /// Starts the binary with `--takeover socket`.
    pub fn spawn(&self, socket: &Path) -> std::io::Result<Child> {
        Command::new(&self.exe)
            .args(&self.args)
            .arg("--takeover")
            .arg(socket)
            .spawn()
    }

    /// The binary's path.
    pub fn exe(&self) -> &Path {
        &self.exe
    }
}

/// `args` less any `--takeover PATH` or `--takeover=PATH`.
fn without_takeover(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        if a == "--takeover" {
            skip_value = true;
        } else if !a.as_encoded_bytes().starts_with(b"--takeover=") {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_takeover_is_left_out() {
        let args = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            without_takeover(
                args(&["serve", "--takeover", "/a", "--config", "k.toml"]).into_iter()
            ),
            args(&["serve", "--config", "k.toml"])
        );
        assert_eq!(
            without_takeover(args(&["serve", "--takeover=/a", "-c", "k.toml"]).into_iter()),
            args(&["serve", "-c", "k.toml"])
        );
    }
}
