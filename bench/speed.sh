#!/usr/bin/env bash
# Every row of the speed table (issue 14) in one run: kura against nginx (and Varnish for hits)
# on the same machine, interleaved rounds, each round's ratio kept so "3 out of 3" can be read.
#
#   pass      plain pass-through: kura --no-cache vs nginx proxy_pass with upstream keepalive
#   nostore   a no-store object through a caching rule: kura quick mode vs nginx proxy_cache
#   hit       cache hit: kura quick mode vs nginx proxy_cache and Varnish
#   tls_ka    HTTPS keep-alive (HTTP/1.1)
#   tls_new   HTTPS, a new connection per request (Connection: close; clients resume sessions)
#   h2        HTTP/2 over TLS, h2load 100 clients x 10 streams
#   cold      a 1 GiB cold miss with a disk tier (each round a new URL): kura quick mode with
#             --cache-dir vs nginx proxy_cache (on disk); seconds, and kura's RSS growth
#
# usage: bench/speed.sh [seconds-per-run] [rounds] [rows...]
#   KURA=path (default target/release/kura), KURA_ARGS="--per-core --workers 1" to try a mode,
#   THREADS/CONNS for wrk (default 1 and 64, as the issue measured).
# needs: nginx-light (with ssl and http2), varnish, wrk, nghttp2-client (h2load), openssl,
# curl, and ../shared/tools/anchors.sh (or ANCHORS=path). Appends to bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${1:-8}
ROUNDS=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
ROWS=${*:-pass nostore hit tls_ka tls_new h2 cold}
THREADS=${THREADS:-1}
CONNS=${CONNS:-64}
KURA=${KURA:-target/release/kura}
read -r -a KARGS <<< "${KURA_ARGS:-}"
ANCHORS=${ANCHORS:-../shared/tools/anchors.sh}
OUT=bench/results
D=/tmp/kura-bench-speed
mkdir -p "$OUT"
rm -rf "$D"; mkdir -p "$D/disk"
[ -x "$ANCHORS" ] || { echo "anchors script not found at $ANCHORS (set ANCHORS=...)" >&2; exit 1; }
[ -x "$KURA" ] || cargo build --release -p kura
command -v h2load >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null

"$ANCHORS" stop >/dev/null 2>&1 || true
sleep 1
"$ANCHORS" start
KPIDS=""
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill $KPIDS 2>/dev/null || true; [ -f $D/nginx.pid ] && kill "$(cat $D/nginx.pid)" 2>/dev/null || true' EXIT

# nginx with TLS 1.2 and 1.3 (nginx 1.22 offers only 1.2 unless told) and HTTP/2, proxying to
# the anchors' origin like kura's TLS listener; both use the same ECDSA P-256 certificate.
self_signed "$D"
start_nginx "$D" "  server { listen 127.0.0.1:8443 ssl http2; $(nginx_tls "$D") $NGINX_PROXY }"
kura_tls_config "$D" "$D/kura-tls.toml"

start() { # port args...
  local port=$1; shift
  "$KURA" serve "$@" "${KARGS[@]}" 2>"$OUT/speed-$port.log" &
  KPIDS="$KPIDS $!"
}
start 8097 --listen 127.0.0.1:8097 --upstream http://127.0.0.1:9000 --no-cache
start 8098 --listen 127.0.0.1:8098 --upstream http://127.0.0.1:9000 --min-ttl 0
start 8099 --listen 127.0.0.1:8099 --upstream http://127.0.0.1:9000 --min-ttl 0 \
  --cache-dir "$D/disk" --max-disk 2GiB --max-memory 64MiB
COLD_PID=${KPIDS##* }
start 8444 --config "$D/kura-tls.toml"
for url in http://127.0.0.1:8097/1k.txt http://127.0.0.1:8098/1k.txt http://127.0.0.1:8099/1k.txt \
           https://localhost:8443/1k.txt https://localhost:8444/1k.txt; do
  for _ in $(seq 50); do curl -fsk -o /dev/null "$url" && break; sleep 0.1; done
done

# What each side runs: "name port scheme path [wrk args]".
side() {
  case $1 in
    pass)    echo "nginx 8083 http /1k.txt|kura 8097 http /1k.txt" ;;
    nostore) echo "nginx 8081 http /nocache/1k.txt|kura 8098 http /nocache/1k.txt" ;;
    hit)     echo "nginx 8081 http /1k.txt|varnish 8082 http /1k.txt|kura 8098 http /1k.txt" ;;
    tls_ka)  echo "nginx 8443 https /1k.txt|kura 8444 https /1k.txt" ;;
    tls_new) echo "nginx 8443 https /1k.txt|kura 8444 https /1k.txt" ;;
    h2)      echo "nginx 8443 https /1k.txt|kura 8444 https /1k.txt" ;;
    cold)    echo "nginx 8081 http /1g.bin|kura 8099 http /1g.bin" ;;
  esac
}
host_of() { [ "$1" = https ] && echo localhost || echo 127.0.0.1; }

# h2load URL → "req/s p99_ms" (p99 from its per-request log; nginx 1.22 ends an HTTP/2
# connection after 1,000 requests, so 100 clients make 90,000).
run_h2() {
  h2load -c100 -m10 -t1 -n 90000 --log-file="$OUT/h2.log" "$1" > "$OUT/h2.txt" 2>&1
  local rps p99
  rps=$(awk '/^finished in/ {print $4}' "$OUT/h2.txt")
  grep -q " 0 failed, 0 errored" "$OUT/h2.txt" || { echo "warning: failures in h2load against $1" >&2; grep "^requests:" "$OUT/h2.txt" >&2; }
  p99=$(awk '{print $3}' "$OUT/h2.log" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int(NR*0.99)]/1000}')
  echo "$rps $p99"
}

# cold NAME PORT ROUND → "seconds rss_growth_mib" for one 1 GiB download of a new URL.
run_cold() {
  local name=$1 port=$2 r=$3 before after secs
  # The previous download's dirty pages are written out first: a writer that finds a
  # gigabyte of someone else's dirty pages is throttled to the disk's speed for them.
  sync
  before=$(awk '/VmRSS/ {print $2}' "/proc/$COLD_PID/status")
  secs=$(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/1g.bin?round=$r-$name-$$")
  after=$(awk '/VmRSS/ {print $2}' "/proc/$COLD_PID/status")
  echo "$secs $(( (after - before) / 1024 ))"
}

declare -A VAL P99 RATIOS
for row in $ROWS; do
  IFS='|' read -r -a sides <<< "$(side "$row")"
  for s in "${sides[@]}"; do
    read -r name port scheme path <<< "$s"
    VAL[$row.$name]=""; P99[$row.$name]=""
    [ "$row" = cold ] || wrk -t1 -c10 -d1s "$scheme://$(host_of "$scheme"):$port$path" >/dev/null 2>&1
  done
  RATIOS[$row]=""
done
# The cold miss is bound by writing the page cache, which is fast while free memory lasts and
# slow once pages must be reclaimed: both caches get the same disk budget (nginx's anchor cache
# has max_size=2g, kura --max-disk 2GiB) and two warm-up misses each, so that every measured
# miss finds its cache at its mark, freeing its oldest files as it writes.
if [[ " $ROWS " == *" cold "* ]]; then
  for w in 1 2; do run_cold kura 8099 "warm$w" >/dev/null; run_cold nginx 8081 "warm$w" >/dev/null; done
fi
echo "hit check: kura $(curl -sI http://127.0.0.1:8098/1k.txt | grep -i cache-status | tr -d '\r'), nginx $(curl -sI http://127.0.0.1:8081/1k.txt | grep -i x-cache | tr -d '\r')"

for r in $(seq "$ROUNDS"); do
  for row in $ROWS; do
    IFS='|' read -r -a sides <<< "$(side "$row")"
    declare -A this=()
    for s in "${sides[@]}"; do
      read -r name port scheme path <<< "$s"
      url="$scheme://$(host_of "$scheme"):$port$path"
      case $row in
        h2) read -r v p < <(run_h2 "$url") ;;
        cold) read -r v p < <(run_cold "$name" "$port" "$r") ;;
        tls_new) read -r v p < <(run_wrk "$url" -H "Connection: close") ;;
        *) read -r v p < <(run_wrk "$url") ;;
      esac
      [ "$row" = cold ] && [ "$name" = nginx ] && p=-
      echo "round $r $row $name: $v ${p}"
      VAL[$row.$name]+="$v"$'\n'; P99[$row.$name]+="$p"$'\n'; this[$name]=$v
    done
    # kura / nginx this round (for the cold miss: nginx's seconds over kura's).
    if [ "$row" = cold ]; then RATIOS[$row]+="$(ratio "${this[nginx]}" "${this[kura]}") "
    else RATIOS[$row]+="$(ratio "${this[kura]}" "${this[nginx]}") "; fi
    unset this
  done
done

label() {
  case $1 in
    pass) echo "plain pass-through (--no-cache vs proxy_pass keepalive)" ;;
    nostore) echo "no-store object through a caching rule (vs proxy_cache)" ;;
    hit) echo "cache hit (vs proxy_cache; Varnish in its column)" ;;
    tls_ka) echo "HTTPS keep-alive (HTTP/1.1)" ;;
    tls_new) echo "HTTPS new connection per request" ;;
    h2) echo "HTTP/2 over TLS, h2load 100 clients x 10 streams" ;;
    cold) echo "1 GiB cold miss, disk tier (seconds; ratio = nginx s / kura s)" ;;
  esac
}
{
  echo
  echo "### Speed table (bench/speed.sh), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "kura \`$("$KURA" --version | head -1)\`${KURA_ARGS:+ with \`$KURA_ARGS\`}; wrk -t$THREADS -c$CONNS -d${DURATION}s, 1 KiB object, medians of"
  echo "$ROUNDS interleaved rounds; \"rounds\" lists kura / nginx of each round. nginx 1.22 from the anchors"
  echo "(TLS: its own instance with TLS 1.2 and 1.3, HTTP/2, session cache); p99 in ms (Varnish's after the slash)."
  echo
  echo "| row | nginx | kura | kura / nginx | rounds | p99 nginx / kura | Varnish (kura / Varnish) |"
  echo "|---|---|---|---|---|---|---|"
  for row in $ROWS; do
    n=$(printf '%s' "${VAL[$row.nginx]}" | median); k=$(printf '%s' "${VAL[$row.kura]}" | median)
    pn=$(printf '%s' "${P99[$row.nginx]}" | median); pk=$(printf '%s' "${P99[$row.kura]}" | median)
    if [ "$row" = cold ]; then rt=$(ratio "$n" "$k"); pk="RSS +${pk} MiB"; else rt=$(ratio "$k" "$n"); fi
    v="-"
    if [ "$row" = hit ]; then
      vr=$(printf '%s' "${VAL[$row.varnish]}" | median); vp=$(printf '%s' "${P99[$row.varnish]}" | median)
      v="$vr ($(ratio "$k" "$vr")), p99 $vp"
    fi
    echo "| $(label "$row") | $n | $k | $rt | ${RATIOS[$row]% } | $pn / $pk | $v |"
  done
} | tee -a bench/README.md
