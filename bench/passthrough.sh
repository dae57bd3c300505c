#!/usr/bin/env bash
# Pass-through benchmark: wrk against the origin directly, through nginx (proxy_pass with
# upstream keepalive) and through kura, in one run, on the same machine; then a 1 GiB download
# through each with kura's memory measured. Results are appended to bench/README.md.
#
# usage: bench/passthrough.sh [seconds-per-run] [rounds]
# needs: nginx-light varnish wrk curl (installed by the anchors script), a release build of kura
# (built here if missing), and ../shared/tools/anchors.sh (or ANCHORS=path).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10}
ROUNDS=${2:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
ANCHORS=${ANCHORS:-../shared/tools/anchors.sh}
KURA_PORT=8090
OUT=bench/results
mkdir -p "$OUT"

[ -x "$ANCHORS" ] || { echo "anchors script not found at $ANCHORS (set ANCHORS=...)" >&2; exit 1; }
[ -x target/release/kura ] || cargo build --release -p kura

"$ANCHORS" stop >/dev/null 2>&1 || true
"$ANCHORS" start
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill ${KPID:-} ${K1PID:-} 2>/dev/null || true' EXIT

# Two kura instances: one worker per core (the default, as nginx's two workers), and one
# worker (on this shared 2-core machine fewer threads batch more per wakeup; see README).
KURA1_PORT=8091
target/release/kura serve --listen 127.0.0.1:$KURA_PORT --upstream http://127.0.0.1:9000 \
  --workers 2 2>"$OUT/kura.log" &
KPID=$!
target/release/kura serve --listen 127.0.0.1:$KURA1_PORT --upstream http://127.0.0.1:9000 \
  --workers 1 2>"$OUT/kura1.log" &
K1PID=$!
for port in $KURA_PORT $KURA1_PORT; do
  for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:$port/1k.txt && break; sleep 0.1; done
done

# wrk → "req/s p99_ms"
run_wrk() {
  local url=$1
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url" > "$OUT/wrk.txt" 2>&1
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/wrk.txt")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$OUT/wrk.txt")
  if grep -q "Non-2xx\|Socket errors" "$OUT/wrk.txt"; then
    echo "warning: errors in run against $url:" >&2; grep "Non-2xx\|Socket errors" "$OUT/wrk.txt" >&2
  fi
  echo "$rps $p99"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

NAMES="origin nginx kura kura1"
declare -A RPS P99
for name in $NAMES; do RPS[$name]=""; P99[$name]=""; done
url_of() { case $1 in origin) echo http://127.0.0.1:9000/1k.txt;; nginx) echo http://127.0.0.1:8083/1k.txt;; kura) echo http://127.0.0.1:$KURA_PORT/1k.txt;; kura1) echo http://127.0.0.1:$KURA1_PORT/1k.txt;; esac; }

# Warm-up, then interleaved rounds so that drift on a shared machine hits all alike.
for name in $NAMES; do wrk -t1 -c10 -d2s "$(url_of $name)" >/dev/null 2>&1; done
for r in $(seq "$ROUNDS"); do
  for name in $NAMES; do
    read -r rps p99 < <(run_wrk "$(url_of $name)")
    echo "round $r $name: $rps req/s, p99 $p99 ms"
    RPS[$name]+="$rps"$'\n'; P99[$name]+="$p99"$'\n'
  done
done
for name in $NAMES; do
  RPS[$name]=$(printf '%s' "${RPS[$name]}" | median)
  P99[$name]=$(printf '%s' "${P99[$name]}" | median)
done

# 1 GiB download through each; kura's resident memory before and at its peak.
rss() { awk '/^VmRSS:/ {print $2}' /proc/"$KPID"/status; }
hwm() { awk '/^VmHWM:/ {print $2}' /proc/"$KPID"/status; }
big() { curl -s -o /dev/null -w '%{time_total}' "$1"; }
RSS_BEFORE=$(rss)
T_ORIGIN=$(big http://127.0.0.1:9000/1g.bin)
T_NGINX=$(big http://127.0.0.1:8083/1g.bin)
T_KURA=$(big http://127.0.0.1:$KURA_PORT/1g.bin)
HWM_AFTER=$(hwm)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
CPU=$(awk -F: '/model name/ {gsub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo)
{
  echo
  echo "### Pass-through, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores ($CPU), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)."
  echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, median of $ROUNDS interleaved rounds, 1 KiB object;"
  echo "wrk, the origin and nginx (one nginx, 2 workers, serving both) and kura share the cores."
  echo
  echo "| path | req/s | p99 ms | req/s vs nginx |"
  echo "|---|---|---|---|"
  echo "| origin directly | ${RPS[origin]} | ${P99[origin]} | $(ratio "${RPS[origin]}" "${RPS[nginx]}") |"
  echo "| nginx proxy_pass | ${RPS[nginx]} | ${P99[nginx]} | 1.00 |"
  echo "| kura, 2 workers (default) | ${RPS[kura]} | ${P99[kura]} | $(ratio "${RPS[kura]}" "${RPS[nginx]}") |"
  echo "| kura, 1 worker | ${RPS[kura1]} | ${P99[kura1]} | $(ratio "${RPS[kura1]}" "${RPS[nginx]}") |"
  echo
  echo "1 GiB download (curl, seconds): origin $T_ORIGIN, nginx $T_NGINX, kura $T_KURA"
  echo "(kura/nginx time $(ratio "$T_KURA" "$T_NGINX")). kura RSS before ${RSS_BEFORE} KiB, peak after $HWM_AFTER KiB."
} | tee -a bench/README.md
