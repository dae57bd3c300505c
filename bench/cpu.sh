#!/usr/bin/env bash
# CPU time per request, user and kernel, of kura and of a proxy-only nginx (its own workers,
# not the anchors' nginx, whose workers also serve the origin), read from /proc/<pid>/stat
# over one load run per row. Steadier than req/s on a shared 2-core machine, and it says
# where each proxy spends: the kernel part is the sockets' work, the user part the proxy's own.
#
# usage: bench/cpu.sh [seconds-per-run] [rows...]   rows: pass nostore hit tls_ka tls_new h2
#   KURA=path (default target/release/kura), KURA_ARGS="--per-core --workers 1" to try a mode.
#   PROFILE=1: also record a perf profile of each side during each row's run and write where
#   its CPU per request goes (kernel, the proxy's own code, each library) under the table, by
#   bench/profile_split.py. Sampling costs a little CPU of its own: compare within one run.
# needs what bench/speed.sh needs. Appends to bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${1:-8}
shift $(( $# > 1 ? 1 : $# )) || true
ROWS=${*:-pass nostore hit tls_ka tls_new h2}
PROFILING=0
case ${PROFILE:-0} in
  0|"") ;;
  *) command -v perf >/dev/null || { echo "PROFILE needs perf (linux-perf)" >&2; exit 1; }
     [ "$(id -u)" -eq 0 ] || [ "$(cat /proc/sys/kernel/perf_event_paranoid)" -le 1 ] \
       || { echo "PROFILE needs root or kernel.perf_event_paranoid <= 1 (kernel samples)" >&2; exit 1; }
     PROFILING=1 ;;
esac
KURA=${KURA:-target/release/kura}
read -r -a KARGS <<< "${KURA_ARGS:-}"
ANCHORS=${ANCHORS:-../shared/tools/anchors.sh}
D=/tmp/kura-bench-cpu
rm -rf "$D"; mkdir -p "$D"; : > "$D/split.md"
[ -x "$KURA" ] || cargo build --release -p kura
"$ANCHORS" stop >/dev/null 2>&1 || true
sleep 1
"$ANCHORS" start
KPID=""; CPID=""
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill $KPID $CPID 2>/dev/null || true; [ -f $D/nginx.pid ] && kill "$(cat $D/nginx.pid)" 2>/dev/null || true' EXIT

self_signed "$D"
start_nginx "$D" "  proxy_cache_path $D/cache levels=1:2 keys_zone=c:10m max_size=1g inactive=60m use_temp_path=off;
  server { listen 127.0.0.1:8094; location / { proxy_pass http://up; proxy_cache c; proxy_cache_valid 200 1h; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }
  server { listen 127.0.0.1:8093; listen 127.0.0.1:8443 ssl http2; $(nginx_tls "$D") $NGINX_PROXY }"
kura_tls_config "$D" "$D/kura.toml" $'[[listeners]]\naddress = "127.0.0.1:8097"'
"$KURA" serve --config "$D/kura.toml" "${KARGS[@]}" 2>"$D/kura.log" &
KPID=$!
# Quick mode (a caching rule) for the no-store and hit rows.
"$KURA" serve --listen 127.0.0.1:8098 --upstream http://127.0.0.1:9000 --min-ttl 0 "${KARGS[@]}" 2>"$D/kura-cache.log" &
CPID=$!
for url in http://127.0.0.1:8094/1k.txt http://127.0.0.1:8098/1k.txt http://127.0.0.1:8093/1k.txt http://127.0.0.1:8097/1k.txt https://localhost:8443/1k.txt https://localhost:8444/1k.txt; do
  for _ in $(seq 50); do curl -fsk -o /dev/null "$url" && break; sleep 0.1; done
done
# The workers only: the cache loader exits after a minute, and neither helper serves requests.
NGINX_PIDS=$(pgrep -P "$(cat "$D/nginx.pid")" -f "worker process" | tr "\n" " ")

# ticks PIDS → "user system" clock ticks summed over the processes.
ticks() { for p in $1; do awk '{print $14, $15}' "/proc/$p/stat"; done | awk '{u+=$1; s+=$2} END {print u, s}'; }
HZ=$(getconf CLK_TCK)

# load ROW URL → the number of requests answered.
load() {
  case $1 in
    h2)
      h2load -c100 -m10 -t1 -n 90000 "$2" > "$D/load.txt" 2>&1
      awk '/^requests:/ {print $8}' "$D/load.txt" ;;
    tls_new)
      wrk -t1 -c64 -d"${DURATION}s" -H "Connection: close" "$2" > "$D/load.txt" 2>&1
      awk '/requests in/ {print $1}' "$D/load.txt" ;;
    *)
      wrk -t1 -c64 -d"${DURATION}s" "$2" > "$D/load.txt" 2>&1
      awk '/requests in/ {print $1}' "$D/load.txt" ;;
  esac
}

{
  echo
  echo "### CPU per request (bench/cpu.sh), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "kura \`$("$KURA" --version | head -1)\`${KURA_ARGS:+ with \`$KURA_ARGS\`} and a proxy-only nginx 1.22 (2 workers), both in front of the anchors'"
  echo "origin; wrk -t1 -c64 -d${DURATION}s (h2load -c100 -m10 for HTTP/2), 1 KiB object. µs of CPU per request."
  echo
  echo "| row | nginx user | nginx kernel | nginx total | kura user | kura kernel | kura total | kura / nginx |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$D/table.md"
for row in $ROWS; do
  declare -A U=() S=()
  for side in nginx kura; do
    case $row.$side in
      pass.nginx) url=http://127.0.0.1:8093/1k.txt ;;
      pass.kura) url=http://127.0.0.1:8097/1k.txt ;;
      nostore.nginx) url=http://127.0.0.1:8094/nocache/1k.txt ;;
      nostore.kura) url=http://127.0.0.1:8098/nocache/1k.txt ;;
      hit.nginx) url=http://127.0.0.1:8094/1k.txt ;;
      hit.kura) url=http://127.0.0.1:8098/1k.txt ;;
      *.nginx) url=https://localhost:8443/1k.txt ;;
      *.kura) url=https://localhost:8444/1k.txt ;;
    esac
    pids=$NGINX_PIDS
    [ $side = kura ] && case $row in nostore|hit) pids=$CPID ;; *) pids=$KPID ;; esac
    PERF=""
    if [ "$PROFILING" = 1 ]; then
      perf record -q -F 499 -g -p "$(echo $pids | tr ' ' ,)" -o "$D/$row.$side.perf" -- sleep $(( DURATION > 4 ? DURATION - 3 : 1 )) 2>/dev/null &
      PERF=$!
    fi
    read -r u0 s0 < <(ticks "$pids")
    n=$(load "$row" "$url")
    read -r u1 s1 < <(ticks "$pids")
    if [ -n "$PERF" ]; then wait "$PERF" || echo "perf record failed for $row $side" >&2; fi
    U[$side]=$(awk -v a="$u0" -v b="$u1" -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.1f", (b - a) / hz / n * 1e6}')
    S[$side]=$(awk -v a="$s0" -v b="$s1" -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.1f", (b - a) / hz / n * 1e6}')
    echo "$row $side: $n requests, user ${U[$side]} µs, kernel ${S[$side]} µs" >&2
    if [ -n "$PERF" ] && [ -s "$D/$row.$side.perf" ]; then
      split=$(python3 bench/profile_split.py "$D/$row.$side.perf" "$(awk -v a="${U[$side]}" -v b="${S[$side]}" 'BEGIN {print a + b}')")
      printf -- '- **%s, %s**: %s\n  - hottest outside the kernel: %s\n' "$row" "$side" "$(head -1 <<< "$split")" "$(tail -1 <<< "$split")" >> "$D/split.md"
    fi
  done
  tn=$(awk -v a="${U[nginx]}" -v b="${S[nginx]}" 'BEGIN {printf "%.1f", a + b}')
  tk=$(awk -v a="${U[kura]}" -v b="${S[kura]}" 'BEGIN {printf "%.1f", a + b}')
  echo "| $row | ${U[nginx]} | ${S[nginx]} | $tn | ${U[kura]} | ${S[kura]} | $tk | $(ratio "$tk" "$tn") |" >> "$D/table.md"
  unset U S
done
if [ -s "$D/split.md" ]; then
  { echo; echo "Where each side's CPU per request goes (µs, from a perf profile at 499 Hz taken during the same runs, whose own cost is in the totals):"; echo; cat "$D/split.md"; } >> "$D/table.md"
fi
tee -a bench/README.md < "$D/table.md"
