#!/usr/bin/env bash
# Abuse runs, kura and nginx side by side as plain proxies of one static origin: while an
# abusive client runs, a normal client (wrk, 4 connections, 15 s) measures what service is
# left. Abuses: slowloris (slowhttptest), 4,000 idle connections, HTTP/2 clients with zero
# flow-control windows (h2load -w 0 -W 0), HTTP/2 rapid reset (abuse.py, CVE-2023-44487).
# Results are appended to bench/README.md.
#
# usage: bench/abuse.sh
# needs: nginx-light, wrk, slowhttptest, nghttp2-client (h2load), python3 with `h2` (pip);
# builds kura --release.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

D=/tmp/kura-abuse
OUT=bench/results
THREADS=1; CONNS=4; DURATION=15
mkdir -p "$D/www" "$OUT"
for c in nginx wrk slowhttptest h2load; do
  command -v $c >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk slowhttptest nghttp2-client >/dev/null
done
python3 -c 'import h2' 2>/dev/null || pip install -q h2
cargo build --release -q -p kura
ulimit -n 65536 || true
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$D/www/1k.txt"

# Origin :9400; nginx proxy HTTP/1.1 :8401 and h2c :8402; kura HTTP/1.1 + h2c :8403.
cat > "$D/nginx.conf" <<CONF
worker_processes 2;
pid $D/nginx.pid;
error_log $D/nginx-error.log;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  upstream up { server 127.0.0.1:9400; keepalive 64; }
  server { listen 127.0.0.1:9400; root $D/www; }
  server { listen 127.0.0.1:8401; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:8402 http2; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
cat > "$D/kura.toml" <<CONF
[[listeners]]
address = "127.0.0.1:8403"
http2 = true
[limits]
max_connections = 20000
[pools.up]
backends = ["http://127.0.0.1:9400"]
[[vhosts]]
hosts = ["*"]
pool = "up"
CONF
nginx -c "$D/nginx.conf"
target/release/kura serve --config "$D/kura.toml" 2>"$D/kura.log" &
KPID=$!
trap 'kill $KPID 2>/dev/null; kill "$(cat $D/nginx.pid)" 2>/dev/null; pkill -f "bench/abuse.py" 2>/dev/null; pkill slowhttptest 2>/dev/null; pkill h2load 2>/dev/null; true' EXIT
sleep 1

# The normal client: "req/s p50_ms p99_ms errors".
probe() {
  wrk -t1 -c4 -d${DURATION}s --latency -H 'Host: abuse.test' "http://127.0.0.1:$1/1k.txt" > "$D/probe.txt" 2>&1 || true
  local rps p50 p99 err
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$D/probe.txt")
  ms() { awk -v k="$1" '$1==k {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.2f", v}' "$D/probe.txt"; }
  p50=$(ms "50%"); p99=$(ms "99%")
  err=$(awk '/Socket errors|Non-2xx/ {sub(/^ +/, ""); printf "%s; ", $0}' "$D/probe.txt")
  echo "${rps:-0} ${p50:-?} ${p99:-?} ${err:-none}"
}

declare -A R
run() { # name port-h1 port-h2 command-template
  local abuse=$1 server=$2 h1=$3 h2=$4
  case $abuse in
    baseline) ;;
    slowloris) slowhttptest -c 2000 -H -i 5 -r 400 -t GET -u "http://127.0.0.1:$h1/1k.txt" -x 24 -p 3 -l $((DURATION + 15)) >"$D/slow-$server.txt" 2>&1 & ;;
    idle) python3 bench/abuse.py idle "127.0.0.1:$h1" 4000 $((DURATION + 15)) >"$D/idle-$server.txt" 2>&1 & ;;
    zero-window) h2load -c 50 -m 100 -w 0 -W 0 -D $((DURATION + 15)) "http://127.0.0.1:$h2/1k.txt" >"$D/h2zero-$server.txt" 2>&1 & ;;
    rapid-reset) python3 bench/abuse.py reset "127.0.0.1:$h2" $((DURATION + 15)) >"$D/reset-$server.txt" 2>&1 & ;;
  esac
  local apid=$!
  [ "$abuse" = baseline ] || sleep 10
  R[$abuse/$server]=$(probe "$h1")
  echo "$abuse $server: ${R[$abuse/$server]}"
  [ "$abuse" = baseline ] || wait $apid 2>/dev/null || true
  sleep 2
}

for abuse in baseline slowloris idle zero-window rapid-reset; do
  run $abuse kura 8403 8403
  run $abuse nginx 8401 8402
done
rss=$(awk '/VmRSS/ {print $2}' /proc/$KPID/status)

{
  echo
  echo "### Abuse runs, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo
  echo "kura and nginx as plain proxies of one static origin (bench/abuse.sh). While each abuse"
  echo "runs, a normal client (wrk, 4 connections, ${DURATION} s, 1 KiB) measures the service left:"
  echo "requests/s, p50 and p99 latency in ms, and its errors. Abuses: slowloris (slowhttptest,"
  echo "2,000 connections), 4,000 idle connections, 50 HTTP/2 connections with zero windows and"
  echo "100 streams each (h2load -w 0 -W 0), HTTP/2 rapid reset on 4 connections. kura's RSS at"
  echo "the end: ${rss} KiB."
  echo
  echo "| abuse | kura req/s | kura p50 | kura p99 | kura errors | nginx req/s | nginx p50 | nginx p99 | nginx errors |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for abuse in baseline slowloris idle zero-window rapid-reset; do
    read -r kr k50 k99 kerr <<< "${R[$abuse/kura]}"
    read -r nr n50 n99 nerr <<< "${R[$abuse/nginx]}"
    echo "| $abuse | $kr | $k50 | $k99 | $kerr | $nr | $n50 | $n99 | $nerr |"
  done
} | tee -a bench/README.md
