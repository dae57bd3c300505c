#!/usr/bin/env bash
# Builds kura (release) and runs `kura serve` with the given arguments, on a machine with Rust
# installed: nothing else is needed (the etcd client ships its protobuf code, no protoc).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -p kura -- serve "$@"
