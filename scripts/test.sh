#!/usr/bin/env bash
# Runs kura's whole test suite on a fresh Debian machine with Rust installed.
# Installs, with apt, the system packages the tests need when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# command -> Debian package providing it: etcd runs in the cluster tests, redis-server in the
# Redis route tests, ip and tc (iproute2) make the network namespaces of the cluster fault
# tests, chromium (headless) loads the admin dashboard, systemd-socket-activate (systemd) starts
# kura as a socket-activated service would be; the package test reads the .deb with dpkg-deb,
# the unit with systemd-analyze, the manual pages with man (man-db); cargo-deb strips with strip.
for pair in ${KURA_TEST_PACKAGES:-etcd:etcd-server redis-server:redis-server ip:iproute2 tc:iproute2 chromium:chromium systemd-socket-activate:systemd systemd-analyze:systemd dpkg-deb:dpkg man:man-db strip:binutils}; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# cargo-deb builds the Debian package in the package test (scripts/package.sh); building it
# takes about two minutes, once per machine.
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked --version '^3.8'

# As root (CI), the network-namespace tests must run: they fail instead of skipping.
if [ "$(id -u)" -eq 0 ]; then export KURA_REQUIRE_NETNS=${KURA_REQUIRE_NETNS:-1}; fi

# Building needs no protoc (README: Rust alone builds kura). A build script that looks for one
# gets this path, which does not exist, and fails here rather than on a user's machine.
export PROTOC=/nonexistent/kura-needs-no-protoc

# A clean build gains nothing from incremental state, which alone took ~9 GB of disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

# The habits every change keeps: formatted, and no clippy warning (they are errors here).
for c in rustfmt clippy; do
  cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
