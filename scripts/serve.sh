#!/usr/bin/env bash
# Builds kura (release) and runs `kura serve` with the given arguments, on a fresh Debian
# machine with Rust installed: installs protoc (Debian protobuf-compiler) with apt first if it
# is missing, because the etcd client's build needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler
fi
exec cargo run --release -p kura -- serve "$@"
