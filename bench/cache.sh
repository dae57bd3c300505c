#!/usr/bin/env bash
# Cache benchmark, in one run on one machine: 1 KiB hits through nginx proxy_cache (:8081),
# Varnish (:8082) and kura; then a 1 GiB cold miss and a 1 GiB hit from disk through nginx and
# kura. The anchors' origin (nginx static, :9000) serves the files. Results are appended to
# bench/README.md.
#
# usage: bench/cache.sh [seconds-per-run] [rounds]
# needs: nginx-light varnish wrk curl (the anchors script installs them), a release build of
# kura (built here if missing), ../shared/tools/anchors.sh (or ANCHORS=path).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${1:-8}
ROUNDS=${2:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
ANCHORS=${ANCHORS:-../shared/tools/anchors.sh}
OUT=bench/results
CACHE_DIR=/tmp/kura-bench-cache
mkdir -p "$OUT"
[ -x "$ANCHORS" ] || { echo "anchors script not found at $ANCHORS (set ANCHORS=...)" >&2; exit 1; }
cargo build --release -q -p kura

"$ANCHORS" stop >/dev/null 2>&1 || true
"$ANCHORS" start
rm -rf "$CACHE_DIR"
KPIDS=""
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill $KPIDS 2>/dev/null || true' EXIT

# kura: the default runtime with a disk tier, and one thread-per-core worker (memory only).
target/release/kura serve --listen 127.0.0.1:8094 --upstream http://127.0.0.1:9000 \
  --workers 2 --cache-dir "$CACHE_DIR" --max-disk 4GiB 2>"$OUT/kura-cache.log" &
KPIDS="$KPIDS $!"; KPID=$!
target/release/kura serve --listen 127.0.0.1:8095 --upstream http://127.0.0.1:9000 \
  --workers 1 --per-core 2>"$OUT/kura-cache1.log" &
KPIDS="$KPIDS $!"
sleep 1

NAMES="nginx varnish kura kura_pc1"
declare -A PORT=( [nginx]=8081 [varnish]=8082 [kura]=8094 [kura_pc1]=8095 )
for n in $NAMES; do
  for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:${PORT[$n]}/1k.txt" && break; sleep 0.1; done
  # Warm: the object is stored and a second request is a hit.
  curl -fs -o /dev/null "http://127.0.0.1:${PORT[$n]}/1k.txt"
done
echo "hit check: nginx $(curl -sI http://127.0.0.1:8081/1k.txt | grep -i x-cache | tr -d '\r'), kura $(curl -sI http://127.0.0.1:8094/1k.txt | grep -i cache-status | tr -d '\r')"

declare -A RPS P99
for n in $NAMES; do RPS[$n]=""; P99[$n]=""; done
for n in $NAMES; do wrk -t1 -c10 -d2s "http://127.0.0.1:${PORT[$n]}/1k.txt" >/dev/null 2>&1; done
for r in $(seq "$ROUNDS"); do
  for n in $NAMES; do
    read -r rps p99 < <(run_wrk "http://127.0.0.1:${PORT[$n]}/1k.txt")
    echo "round $r $n: $rps req/s, p99 $p99 ms"
    RPS[$n]+="$rps"$'\n'; P99[$n]+="$p99"$'\n'
  done
done
for n in $NAMES; do
  RPS[$n]=$(printf '%s' "${RPS[$n]}" | median); P99[$n]=$(printf '%s' "${P99[$n]}" | median)
done

# 1 GiB: a cold miss (a new URL for each), then a hit of the same URL. kura's memory tier
# (256 MiB) cannot hold it: the hit comes from its disk tier (and the page cache, as nginx's).
big() { curl -s -o /dev/null -w '%{time_total}' "$1"; }
rss() { awk '/^VmRSS:/ {print $2}' /proc/"$KPID"/status; }
RSS0=$(rss)
COLD_N="" COLD_K="" HIT_N="" HIT_K=""
for i in 1 2 3; do
  TAG=$RANDOM$RANDOM
  COLD_N+="$(big "http://127.0.0.1:8081/1g.bin?c=$TAG")"$'\n'
  COLD_K+="$(big "http://127.0.0.1:8094/1g.bin?c=$TAG")"$'\n'
  sleep 3  # let both finish writing their files
  HIT_N+="$(big "http://127.0.0.1:8081/1g.bin?c=$TAG")"$'\n'
  HIT_K+="$(big "http://127.0.0.1:8094/1g.bin?c=$TAG")"$'\n'
done
T_NGINX_COLD=$(printf '%s' "$COLD_N" | median); T_KURA_COLD=$(printf '%s' "$COLD_K" | median)
T_NGINX_HIT=$(printf '%s' "$HIT_N" | median); T_KURA_HIT=$(printf '%s' "$HIT_K" | median)
HWM=$(awk '/^VmHWM:/ {print $2}' /proc/"$KPID"/status)
KURA_HIT_CS=$(curl -s -o /dev/null -D - "http://127.0.0.1:8094/1g.bin?c=$TAG" | grep -i cache-status | tr -d '\r')

{
  echo
  echo "### Cache, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "1 KiB hits: wrk -t$THREADS -c$CONNS -d${DURATION}s, median of $ROUNDS interleaved rounds;"
  echo "wrk and the cache share the cores (the origin is idle once the object is stored)."
  echo
  echo "| cache | req/s | p99 ms | vs nginx | vs Varnish |"
  echo "|---|---|---|---|---|"
  for n in $NAMES; do
    label=$n
    case $n in nginx) label="nginx proxy_cache";; varnish) label="Varnish (malloc)";; kura) label="kura default (2 workers, memory+disk)";; kura_pc1) label="kura thread-per-core, 1 worker";; esac
    echo "| $label | ${RPS[$n]} | ${P99[$n]} | $(ratio "${RPS[$n]}" "${RPS[nginx]}") | $(ratio "${RPS[$n]}" "${RPS[varnish]}") |"
  done
  echo
  echo "1 GiB (curl, seconds, median of 3 new URLs; lower is better): cold miss nginx $T_NGINX_COLD, kura $T_KURA_COLD"
  echo "(kura is $(ratio "$T_NGINX_COLD" "$T_KURA_COLD")× nginx's speed); hit nginx $T_NGINX_HIT, kura $T_KURA_HIT"
  echo "($(ratio "$T_NGINX_HIT" "$T_KURA_HIT")× nginx's speed; kura's answer: $KURA_HIT_CS)."
  echo "kura RSS: ${RSS0} KiB before, peak ${HWM} KiB."
} | tee -a bench/README.md
