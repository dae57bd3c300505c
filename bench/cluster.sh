#!/usr/bin/env bash
# Cluster benchmark: how many bytes the origin serves per byte clients receive, when three
# clients each download one 256 MiB object from a different cache: through three kura nodes
# sharing one cache (a cluster), through one kura node, and through three independent nginx
# proxy_cache instances (each fetches the object itself). Then the aggregate throughput of the
# three kura nodes on the now-hot object against one node. Results go to bench/README.md.
#
# usage: bench/cluster.sh [seconds-per-throughput-run]
# needs: nginx-light wrk curl, a release build of kura (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${1:-10}
W=/tmp/kura-bench-cluster
OUT=bench/results
SIZE_MB=256
SECRET=bench-secret-0123456789
# Clients reach every node under one name (as behind DNS): the cache key includes the host.
HOST=downloads.test
mkdir -p "$W/www" "$OUT"
[ -x target/release/kura ] || cargo build --release -p kura
PIDS=""
cleanup() {
  kill $PIDS 2>/dev/null || true
  for d in "$W"/nginx*; do [ -f "$d/nginx.pid" ] && kill "$(cat "$d/nginx.pid")" 2>/dev/null || true; done
}
trap cleanup EXIT
[ -f "$W/www/big.bin" ] || head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$W/www/big.bin"

# The origin: nginx serving the file, logging the body bytes of every answer.
nginx_conf() { # dir, http-block body
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<CONF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 1024; }
http {
  $2
}
CONF
}
nginx_conf "$W/nginx-origin" "log_format b '\$body_bytes_sent'; access_log $W/nginx-origin/bytes.log b;
  server { listen 127.0.0.1:9100; root $W/www; location / { add_header Cache-Control \"public, max-age=3600\"; } }"
nginx -c "$W/nginx-origin/nginx.conf"
origin_bytes() { awk '{s+=$1} END {print s+0}' "$W/nginx-origin/bytes.log"; }
reset_origin_log() { : > "$W/nginx-origin/bytes.log"; kill -USR1 "$(cat "$W/nginx-origin/nginx.pid")"; sleep 0.2; : > "$W/nginx-origin/bytes.log"; }

wait_up() { for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
# Three downloads at once, one per URL; prints the client bytes.
three_downloads() {
  local total=0 pids=() f
  for u in "$@"; do f=$(mktemp); curl -s -H "Host: $HOST" -o /dev/null -w '%{size_download}' "$u" > "$f" & pids+=($!); FILES+=("$f"); done
  wait "${pids[@]}"
  for f in "${FILES[@]}"; do total=$((total + $(cat "$f"))); rm -f "$f"; done
  FILES=()
  echo "$total"
}
FILES=()

# --- three kura nodes, one cluster ---
PEERS=(127.0.0.1:7101 127.0.0.2:7102 127.0.0.3:7103)
peer_args=(); for p in "${PEERS[@]}"; do peer_args+=(--peer "$p"); done
for i in 1 2 3; do
  target/release/kura serve --listen 127.0.0.$i:810$i --upstream http://127.0.0.1:9100 \
    --admin 127.0.0.$i:991$i --max-memory 512MiB --peering-address "${PEERS[$((i-1))]}" \
    "${peer_args[@]}" --cluster-secret "$SECRET" 2>"$OUT/kura-cluster-$i.log" &
  PIDS="$PIDS $!"
done
for i in 1 2 3; do wait_up "http://127.0.0.$i:991$i/healthz"; done
reset_origin_log
C3=$(three_downloads http://127.0.0.1:8101/big.bin http://127.0.0.2:8102/big.bin http://127.0.0.3:8103/big.bin)
O3=$(origin_bytes)

# Aggregate throughput on the hot object: three nodes, then one node, same total connections.
wrk_bytes() { # url conns -> bytes/s
  wrk -t1 -c"$2" -d"${DURATION}s" -H "Host: $HOST" "$1" 2>/dev/null | awk '/^Transfer\/sec:/ {v=$2; if (v ~ /GB$/) {sub(/GB$/,"",v); v*=1024} else if (v ~ /MB$/) {sub(/MB$/,"",v)} else if (v ~ /KB$/) {sub(/KB$/,"",v); v/=1024}; print v}'
}
for i in 1 2 3; do curl -s -H "Host: $HOST" -o /dev/null "http://127.0.0.$i:810$i/big.bin"; done
T=$(mktemp -d)
WP=()
for i in 1 2 3; do wrk_bytes "http://127.0.0.$i:810$i/big.bin" 2 > "$T/$i" & WP+=($!); done
wait "${WP[@]}"
AGG3=$(cat "$T"/1 "$T"/2 "$T"/3 | awk '{s+=$1} END {printf "%.0f", s}')
AGG1=$(wrk_bytes http://127.0.0.1:8101/big.bin 6 | awk '{printf "%.0f", $1}')
kill $PIDS 2>/dev/null || true; PIDS=""; sleep 0.5

# --- one kura node, three clients ---
target/release/kura serve --listen 127.0.0.1:8101 --upstream http://127.0.0.1:9100 --admin 127.0.0.1:9911 \
  --max-memory 512MiB 2>"$OUT/kura-single.log" &
PIDS="$!"
wait_up http://127.0.0.1:9911/healthz
reset_origin_log
C1=$(three_downloads http://127.0.0.1:8101/big.bin http://127.0.0.1:8101/big.bin http://127.0.0.1:8101/big.bin)
O1=$(origin_bytes)
kill $PIDS 2>/dev/null || true; PIDS=""

# --- three independent nginx caches ---
for i in 1 2 3; do
  nginx_conf "$W/nginx$i" "access_log off; proxy_cache_path $W/nginx$i/cache keys_zone=c$i:10m max_size=2g;
  server { listen 127.0.0.$i:820$i; location / { proxy_pass http://127.0.0.1:9100; proxy_cache c$i; proxy_cache_valid 200 1h; proxy_http_version 1.1; } }"
  rm -rf "$W/nginx$i/cache"; nginx -c "$W/nginx$i/nginx.conf"
done
reset_origin_log
CN=$(three_downloads http://127.0.0.1:8201/big.bin http://127.0.0.2:8202/big.bin http://127.0.0.3:8203/big.bin)
ON=$(origin_bytes)

{
  echo
  echo "### Cluster, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "Three clients each download one ${SIZE_MB} MiB object at once, from a cold cache; the"
  echo "origin (nginx, one worker) logs the body bytes it sends. Nodes on 127.0.0.1-3, static peers."
  echo
  echo "| caches | client bytes | origin bytes | origin bytes per client byte |"
  echo "|---|---|---|---|"
  echo "| 3 kura nodes, one cluster | $C3 | $O3 | $(ratio "$O3" "$C3") |"
  echo "| 1 kura node | $C1 | $O1 | $(ratio "$O1" "$C1") |"
  echo "| 3 nginx proxy_cache, independent | $CN | $ON | $(ratio "$ON" "$CN") |"
  echo
  echo "Hot object, wrk ${DURATION}s: 3 nodes (2 connections each) ${AGG3} MB/s in all; 1 node (6 connections)"
  echo "${AGG1} MB/s ($(ratio "$AGG3" "$AGG1")× with three nodes on the same two cores)."
} | tee -a bench/README.md
