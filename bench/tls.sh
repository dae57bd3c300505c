#!/usr/bin/env bash
# TLS: new-connection rate (a full handshake per request: wrk with Connection: close) and
# HTTPS keep-alive throughput, kura against nginx on the same machine in the same run, both
# proxying to the anchors' origin with the same ECDSA P-256 certificate and 2 workers.
# Appends to bench/README.md.
#
# usage: bench/tls.sh [seconds-per-run] [rounds]
# needs: nginx-light (with ssl), wrk (built with OpenSSL), openssl, curl, the anchors script.
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
D=/tmp/kura-bench-tls
mkdir -p "$OUT" "$D"
[ -x target/release/kura ] || cargo build --release -p kura

self_signed "$D"

"$ANCHORS" stop >/dev/null 2>&1 || true
"$ANCHORS" start
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill ${KPID:-} 2>/dev/null || true; [ -f $D/nginx.pid ] && kill "$(cat $D/nginx.pid)" 2>/dev/null || true' EXIT

start_nginx "$D" "  server { listen 127.0.0.1:8443 ssl; $(nginx_tls "$D") $NGINX_PROXY }"

kura_tls_config "$D" "$D/kura.toml" $'[server]\nworkers = 2'
target/release/kura serve --config "$D/kura.toml" 2>"$OUT/kura-tls.log" &
KPID=$!
for port in 8443 8444; do
  for _ in $(seq 50); do curl -fsk -o /dev/null "https://localhost:$port/1k.txt" && break; sleep 0.1; done
done

declare -A RPS P99
for k in nginx_new kura_new nginx_ka kura_ka; do RPS[$k]=""; P99[$k]=""; done
port_of() { case $1 in nginx*) echo 8443;; *) echo 8444;; esac; }
for k in nginx_ka kura_ka; do wrk -t1 -c10 -d2s "https://localhost:$(port_of $k)/1k.txt" >/dev/null 2>&1; done
for r in $(seq "$ROUNDS"); do
  for k in nginx_new kura_new nginx_ka kura_ka; do
    extra=()
    case $k in *_new) extra=(-H "Connection: close");; esac
    read -r rps p99 < <(run_wrk "https://localhost:$(port_of $k)/1k.txt" "${extra[@]}")
    echo "round $r $k: $rps req/s p99 $p99 ms"
    RPS[$k]+="$rps"$'\n'; P99[$k]+="$p99"$'\n'
  done
done
for k in nginx_new kura_new nginx_ka kura_ka; do
  RPS[$k]=$(printf '%s' "${RPS[$k]}" | median); P99[$k]=$(printf '%s' "${P99[$k]}" | median)
done

{
  echo
  echo "### TLS, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "wrk -t$THREADS -c$CONNS -d${DURATION}s (OpenSSL client), median of $ROUNDS interleaved rounds, 1 KiB"
  echo "object, ECDSA P-256 certificate, nginx and kura with 2 workers each; wrk, the origin, nginx"
  echo "and kura share the cores. \"New connection\" sends Connection: close, so every request pays a"
  echo "TCP connect and a TLS handshake (wrk resumes sessions where the server allows it; nginx offers TLS 1.2 and 1.3)."
  echo
  echo "| test | nginx req/s | kura req/s | kura / nginx | nginx p99 ms | kura p99 ms |"
  echo "|---|---|---|---|---|---|"
  echo "| new connection per request | ${RPS[nginx_new]} | ${RPS[kura_new]} | $(ratio "${RPS[kura_new]}" "${RPS[nginx_new]}") | ${P99[nginx_new]} | ${P99[kura_new]} |"
  echo "| HTTPS keep-alive | ${RPS[nginx_ka]} | ${RPS[kura_ka]} | $(ratio "${RPS[kura_ka]}" "${RPS[nginx_ka]}") | ${P99[nginx_ka]} | ${P99[kura_ka]} |"
} | tee -a bench/README.md
