#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for N seconds (default 60), then minimises its corpus.
# Needs the nightly toolchain; installs cargo-fuzz from crates.io when missing.
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Findings land in fuzz/artifacts/<target>/; copy each into fuzz/corpus/<target>/ once fixed,
# so `cargo test -p kura-fuzz` replays it on stable from then on.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cache_policy range authority config image_params peer_wire)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 -max_len=4096 \
    2>&1 | tee "/tmp/kura-fuzz-$t.log" | grep -E "^(#[0-9]+ +DONE|Done [0-9]+ runs|==[0-9]+==|SUMMARY)" || true
  cargo +nightly fuzz cmin "$t" "corpus/$t" >/dev/null 2>&1 || true
done
