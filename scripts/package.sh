#!/usr/bin/env bash
# Builds kura's Debian package into target/debian/: the release binary, then the manual pages
# and shell completions that this binary generates from its own command line (`kura man`,
# `kura completions`: they cannot drift from it), then `cargo deb` (its metadata is in
# crates/kura/Cargo.toml). Needs cargo-deb: cargo install cargo-deb --locked.
#
#   scripts/package.sh                          build (release) and package
#   scripts/package.sh --binary PATH [...]      package this kura binary instead of building
#                                               one (the tests package their debug build)
#
# Other arguments go to cargo deb (--output DIR, --fast, --deb-version V...).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
deb_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    *) deb_args+=("$1"); shift ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "scripts/package.sh: needs cargo-deb (cargo install cargo-deb --locked)" >&2
  exit 1
fi
target=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
if [ -z "$binary" ]; then
  cargo build --locked --release -p kura
else
  # cargo deb takes the binary from <target>/release/: stage the given one in a target
  # directory of its own rather than overwrite a release build.
  binary=$(realpath "$binary")
  target="$target/package-staging"
  mkdir -p "$target/release"
  ln -f "$binary" "$target/release/kura" 2>/dev/null || cp "$binary" "$target/release/kura"
  export CARGO_TARGET_DIR="$target"
fi

out="$target/release/packaging"
rm -rf "$out"
mkdir -p "$out/completions"
bin="$target/release/kura"
"$bin" man --dir "$out/man"
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/kura.bash"
"$bin" completions zsh >"$out/completions/_kura"
"$bin" completions fish >"$out/completions/kura.fish"

exec cargo deb -p kura --no-build --strip "${deb_args[@]}"
