#!/usr/bin/env bash
# Before / after: two kura binaries side by side with nginx in one run, for a change that must
# not cost speed. Pass-through (kura --no-cache against nginx proxy_pass with keepalive) and
# 1 KiB cache hits (kura against nginx proxy_cache), interleaved rounds, medians; results
# appended to bench/README.md.
#
# usage: bench/ab.sh OLD_BINARY NEW_BINARY [seconds-per-run] [rounds]
#   e.g. git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=$PWD/target
#        cargo build --release -p kura) ; bench/ab.sh /tmp/kura-old target/release/kura
# needs: nginx-light varnish wrk curl (installed by the anchors script) and
# ../shared/tools/anchors.sh (or ANCHORS=path).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

OLD=${1:?old kura binary}
NEW=${2:?new kura binary}
DURATION=${3:-8}
ROUNDS=${4:-5}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
ANCHORS=${ANCHORS:-../shared/tools/anchors.sh}
OUT=bench/results
LABEL=${LABEL:-}
mkdir -p "$OUT"
[ -x "$ANCHORS" ] || { echo "anchors script not found at $ANCHORS (set ANCHORS=...)" >&2; exit 1; }

"$ANCHORS" stop >/dev/null 2>&1 || true
"$ANCHORS" start
KPIDS=""
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill $KPIDS 2>/dev/null || true' EXIT

start() { # binary port extra-args...
  local bin=$1 port=$2; shift 2
  "$bin" serve --listen "127.0.0.1:$port" --upstream http://127.0.0.1:9000 "$@" 2>"$OUT/ab-$port.log" &
  KPIDS="$KPIDS $!"
}
start "$OLD" 8096 --no-cache
start "$NEW" 8097 --no-cache
start "$OLD" 8098
start "$NEW" 8099
sleep 1

# name:port:path — nginx's 8083 is proxy_pass with upstream keepalive, 8081 proxy_cache.
PASS="nginx_pass:8083 old_pass:8096 new_pass:8097"
HIT="nginx_hit:8081 old_hit:8098 new_hit:8099"
declare -A PORT RPS P99
for e in $PASS $HIT; do
  n=${e%%:*}; PORT[$n]=${e##*:}; RPS[$n]=""; P99[$n]=""
  for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:${PORT[$n]}/1k.txt" && break; sleep 0.1; done
  curl -fs -o /dev/null "http://127.0.0.1:${PORT[$n]}/1k.txt"
  wrk -t1 -c10 -d1s "http://127.0.0.1:${PORT[$n]}/1k.txt" >/dev/null 2>&1
done
echo "hit check: old $(curl -sI http://127.0.0.1:8098/1k.txt | grep -i cache-status | tr -d '\r'), new $(curl -sI http://127.0.0.1:8099/1k.txt | grep -i cache-status | tr -d '\r')"

for r in $(seq "$ROUNDS"); do
  for e in $PASS $HIT; do
    n=${e%%:*}
    read -r rps p99 < <(run_wrk "http://127.0.0.1:${PORT[$n]}/1k.txt")
    echo "round $r $n: $rps req/s, p99 $p99 ms"
    RPS[$n]+="$rps"$'\n'; P99[$n]+="$p99"$'\n'
  done
done
for e in $PASS $HIT; do
  n=${e%%:*}
  RPS[$n]=$(printf '%s' "${RPS[$n]}" | median); P99[$n]=$(printf '%s' "${P99[$n]}" | median)
done

{
  echo
  echo "### Before / after${LABEL:+ ($LABEL)}, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, median of $ROUNDS interleaved rounds, 1 KiB object;"
  echo "old: \`$("$OLD" --version 2>/dev/null | head -1)\` ($OLD), new: \`$("$NEW" --version 2>/dev/null | head -1)\` ($NEW)."
  echo
  echo "| path | nginx req/s | old req/s | new req/s | old / nginx | new / nginx | new / old | p99 ms nginx / old / new |"
  echo "|---|---|---|---|---|---|---|---|"
  for kind in pass hit; do
    ng=nginx_$kind o=old_$kind nw=new_$kind
    label=$([ $kind = pass ] && echo "pass-through (--no-cache vs proxy_pass keepalive)" || echo "cache hit (vs proxy_cache)")
    echo "| $label | ${RPS[$ng]} | ${RPS[$o]} | ${RPS[$nw]} | $(ratio "${RPS[$o]}" "${RPS[$ng]}") | $(ratio "${RPS[$nw]}" "${RPS[$ng]}") | $(ratio "${RPS[$nw]}" "${RPS[$o]}") | ${P99[$ng]} / ${P99[$o]} / ${P99[$nw]} |"
  done
} | tee -a bench/README.md
