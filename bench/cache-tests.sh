#!/usr/bin/env bash
# HTTP cache conformance: the public suite (npm http-cache-tests, through
# ../shared/tools/cache-tests.sh) against kura, nginx proxy_cache and Varnish, each with the
# suite's server as its origin, in one run; the counts are appended to bench/README.md.
#
# usage: bench/cache-tests.sh
# needs: node/npm, nginx-light, varnish (apt); builds kura (debug) if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

CT=${CT:-../shared/tools/cache-tests.sh}
ORIGIN_PORT=${ORIGIN_PORT:-8999}
D=/tmp/kura-ct
mkdir -p $D
[ -x "$CT" ] || { echo "suite script not found at $CT (set CT=...)" >&2; exit 1; }
command -v nginx >/dev/null && command -v varnishd >/dev/null \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light varnish >/dev/null
# Conformance does not depend on optimisation: build (incrementally) and use the current tree.
cargo build -q -p kura
KURA=target/debug/kura

cleanup() {
  [ -f $D/nginx.pid ] && kill "$(cat $D/nginx.pid)" 2>/dev/null || true
  [ -f $D/varnish.pid ] && kill "$(cat $D/varnish.pid)" 2>/dev/null || true
  [ -n "${KPID:-}" ] && kill "$KPID" 2>/dev/null || true
  pkill -f "cache-tests.*server" 2>/dev/null || true
}
trap cleanup EXIT

# The suite's origin.
"$CT" start "$ORIGIN_PORT"
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/" && break; sleep 0.2; done

# nginx proxy_cache: the anchor's proxy configuration, with no forced validity (the origin's
# headers decide), as kura runs with no default TTL.
cat > $D/nginx.conf <<CONF
worker_processes 1;
pid $D/nginx.pid;
error_log $D/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  proxy_cache_path $D/nginx-cache levels=1:2 keys_zone=ct:10m max_size=1g inactive=60m use_temp_path=off;
  server { listen 127.0.0.1:8581; location / {
    proxy_pass http://127.0.0.1:$ORIGIN_PORT; proxy_cache ct;
    proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c $D/nginx.conf
# Varnish with its built-in VCL.
printf 'vcl 4.1;\nbackend default { .host = "127.0.0.1"; .port = "%s"; }\n' "$ORIGIN_PORT" > $D/default.vcl
varnishd -a 127.0.0.1:8582 -f $D/default.vcl -s malloc,256m -n $D/varnish -P $D/varnish.pid >/dev/null
# kura quick mode: a caching mirror with its defaults (memory tier, no default TTL), but
# --min-ttl 0: quick mode skips objects fresh for under 60 s, which the suite tests store.
$KURA serve --listen 127.0.0.1:8583 --upstream "http://127.0.0.1:$ORIGIN_PORT" --min-ttl 0 2>$D/kura.log &
KPID=$!
sleep 1

declare -A R
for name in kura nginx varnish; do
  case $name in kura) port=8583;; nginx) port=8581;; varnish) port=8582;; esac
  R[$name]=$("$CT" run "http://127.0.0.1:$port")
  echo "$name: ${R[$name]}"
done

VERSION=$(node -e "console.log(require('/tmp/ct-suite/package/package.json').version)" 2>/dev/null || echo "?")
row() { echo "$1" | awk -v n="$2" '{printf "| %s |", n; for (i = 1; i <= NF; i += 2) printf " %s |", $(i+1); printf "\n"}'; }
{
  echo
  echo "### HTTP cache conformance, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "http-cache-tests $VERSION, counted as the suite's own report does (tools/cache-tests.sh);"
  echo "$(nginx -v 2>&1 | sed 's/nginx version: //'), $(varnishd -V 2>&1 | head -1 | sed 's/varnishd //'), kura $($KURA --version | awk '{print $2}')."
  echo
  echo "| cache | pass | fail | optional fail | yes | no | dependency fail | setup fail | untested |"
  echo "|---|---|---|---|---|---|---|---|---|"
  row "${R[kura]}" "kura (quick mode)"
  row "${R[nginx]}" "nginx proxy_cache"
  row "${R[varnish]}" "Varnish (built-in VCL)"
} | tee -a bench/README.md
