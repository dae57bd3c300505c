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
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${1:-10}
ROUNDS=${2:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
ANCHORS=${ANCHORS:-../shared/tools/anchors.sh}
OUT=bench/results
mkdir -p "$OUT"

[ -x "$ANCHORS" ] || { echo "anchors script not found at $ANCHORS (set ANCHORS=...)" >&2; exit 1; }
[ -x target/release/kura ] || cargo build --release -p kura

"$ANCHORS" stop >/dev/null 2>&1 || true
"$ANCHORS" start
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill ${KPIDS:-} 2>/dev/null || true; [ -f /tmp/kura-bench-nginx/nginx.pid ] && kill "$(cat /tmp/kura-bench-nginx/nginx.pid)" 2>/dev/null || true' EXIT

# A second nginx pass-through in its own processes (the anchors' nginx serves the origin and
# the proxy from the same two workers), same proxy configuration as the anchor's :8083.
SEP=/tmp/kura-bench-nginx
mkdir -p $SEP
cat > $SEP/nginx.conf <<CONF
worker_processes 2;
pid $SEP/nginx.pid;
error_log $SEP/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream up { server 127.0.0.1:9000; keepalive 64; }
  server { listen 127.0.0.1:8093; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c $SEP/nginx.conf

# kura variants: the default (one work-stealing runtime, a worker per core), thread-per-core
# with a worker per core, and thread-per-core with one worker (see README for why all three).
declare -A KARGS=( [kura]="--workers 2 --no-cache" [kura_pc2]="--workers 2 --per-core --no-cache" [kura_pc1]="--workers 1 --per-core --no-cache" )
declare -A KPORT=( [kura]=8090 [kura_pc2]=8091 [kura_pc1]=8092 )
KPIDS=""
for k in kura kura_pc2 kura_pc1; do
  # shellcheck disable=SC2086
  target/release/kura serve --listen 127.0.0.1:${KPORT[$k]} --upstream http://127.0.0.1:9000 ${KARGS[$k]} 2>"$OUT/$k.log" &
  KPIDS="$KPIDS $!"
  [ "$k" = kura ] && KPID=$!
done
for k in kura kura_pc2 kura_pc1; do
  for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:${KPORT[$k]}/1k.txt && break; sleep 0.1; done
done



NAMES="origin nginx nginx_sep kura kura_pc2 kura_pc1"
declare -A RPS P99
for name in $NAMES; do RPS[$name]=""; P99[$name]=""; done
url_of() { case $1 in origin) echo http://127.0.0.1:9000/1k.txt;; nginx) echo http://127.0.0.1:8083/1k.txt;; nginx_sep) echo http://127.0.0.1:8093/1k.txt;; *) echo "http://127.0.0.1:${KPORT[$1]}/1k.txt";; esac; }

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
T_KURA=$(big http://127.0.0.1:${KPORT[kura]}/1g.bin)
HWM_AFTER=$(hwm)

{
  echo
  echo "### Pass-through, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, median of $ROUNDS interleaved rounds, 1 KiB object;"
  echo "wrk, the origin and nginx (one nginx, 2 workers, serving both) and kura share the cores."
  echo
  echo "| path | req/s | p99 ms | req/s vs nginx |"
  echo "|---|---|---|---|"
  echo "| origin directly | ${RPS[origin]} | ${P99[origin]} | $(ratio "${RPS[origin]}" "${RPS[nginx]}") |"
  echo "| nginx proxy_pass (anchor :8083, shares workers with the origin) | ${RPS[nginx]} | ${P99[nginx]} | 1.00 |"
  echo "| nginx proxy_pass, own 2 workers | ${RPS[nginx_sep]} | ${P99[nginx_sep]} | $(ratio "${RPS[nginx_sep]}" "${RPS[nginx]}") |"
  echo "| kura default (work stealing, 2 workers) | ${RPS[kura]} | ${P99[kura]} | $(ratio "${RPS[kura]}" "${RPS[nginx]}") |"
  echo "| kura thread-per-core, 2 workers | ${RPS[kura_pc2]} | ${P99[kura_pc2]} | $(ratio "${RPS[kura_pc2]}" "${RPS[nginx]}") |"
  echo "| kura thread-per-core, 1 worker | ${RPS[kura_pc1]} | ${P99[kura_pc1]} | $(ratio "${RPS[kura_pc1]}" "${RPS[nginx]}") |"
  echo
  echo "1 GiB download (curl, seconds): origin $T_ORIGIN, nginx $T_NGINX, kura $T_KURA"
  echo "(kura default; kura/nginx time $(ratio "$T_KURA" "$T_NGINX")). kura RSS before ${RSS_BEFORE} KiB, peak after $HWM_AFTER KiB."
} | tee -a bench/README.md
