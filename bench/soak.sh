#!/usr/bin/env bash
# Soak: mixed traffic through the release binary for DURATION (default 30 min), sampling kura's
# RSS and open fds every 10 s. Traffic: cache hits and misses, no-store passes, 1 GiB downloads,
# slow readers, WebSocket tunnels, image variants, shadowed API calls, Redis route churn, and
# the origin (nginx) restarted every RESTART seconds (the one injected fault: requests it breaks
# are counted apart). Results: bench/results/soak.csv and a summary appended to
# bench/README.md.
#
# usage: bench/soak.sh [seconds] [restart-every-seconds]
# needs: nginx-light, redis-server, wrk, curl, python3 (Debian); builds kura --release.
# KURA_BIN=path runs that binary instead (no build); KURA_PREFIX="heaptrack -o FILE" runs it
# under a heap profiler (build it with `--no-default-features`: the system malloc);
# SOAK_REPORT=FILE appends the summary there instead of bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${1:-1800}
# The disk tier: 1 GiB for the big file plus 256 MiB, so that the small objects fill it and
# cleaning runs within the first 15 minutes. A tier that never reaches its marks grows its
# index (about 90 bytes of memory per stored object) for the whole run, which is memory
# bounded by the tier's size but not flat.
MAX_DISK=${SOAK_MAX_DISK:-1280MiB}
RESTART=${2:-180}
D=/tmp/kura-soak
OUT=bench/results
mkdir -p "$OUT"
rm -rf "$D"; mkdir -p "$D/www/img" "$D/www/nocache" "$D/www/api" "$D/cache"
command -v nginx >/dev/null && command -v redis-server >/dev/null && command -v wrk >/dev/null \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light redis-server wrk >/dev/null
KURA=${KURA_BIN:-target/release/kura}
[ -n "${KURA_BIN:-}" ] || cargo build --release -q -p kura

# Origin files: a 1 KiB object (any path), no-store objects, a 1 GiB file, a PNG, API JSON.
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$D/www/1k.txt"
cp "$D/www/1k.txt" "$D/www/nocache/1k.txt"
head -c 1073741824 /dev/zero > "$D/www/1g.bin"
echo '{"items":[1,2,3],"ok":true}' > "$D/www/api/items.json"
python3 - "$D/www/img/a.png" <<'PY'
import struct, sys, zlib
w, h = 640, 480
rows = [b"\x00" + b"".join(bytes((x * 255 // w, y * 255 // h, 90)) for x in range(w)) for y in range(h)]
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
open(sys.argv[1], "wb").write(png)
PY

cat > "$D/nginx.conf" <<CONF
worker_processes 1;
pid $D/nginx.pid;
error_log $D/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:9310; root $D/www;
    location / { add_header Cache-Control "public, max-age=30"; try_files \$uri /1k.txt; }
    location /nocache/ { add_header Cache-Control "no-store"; try_files \$uri /nocache/1k.txt; }
    location /api/ { default_type application/json; add_header Cache-Control "no-store"; try_files \$uri /api/items.json; } }
  server { listen 127.0.0.1:9311; root $D/www;
    location / { default_type application/json; try_files \$uri /api/items.json; } }
}
CONF
start_nginx() { nginx -c "$D/nginx.conf"; }
stop_nginx() { [ -f "$D/nginx.pid" ] && kill "$(cat "$D/nginx.pid")" 2>/dev/null || true; sleep 0.5; }

REDIS_PORT=6390
cat > "$D/kura.toml" <<CONF
[[listeners]]
address = "127.0.0.1:8190"
[admin]
address = "127.0.0.1:8191"
[limits]
send_timeout = "20s"
[cache]
memory = "128MiB"
dir = "$D/cache"
max_disk = "$MAX_DISK"
[redis]
url = "redis://127.0.0.1:$REDIS_PORT/0"
resync_interval = "5s"
[pools.origin]
backends = ["http://127.0.0.1:9310"]
[pools.shadow]
backends = ["http://127.0.0.1:9311"]
[pools.ws]
backends = ["http://127.0.0.1:9312"]
[[vhosts]]
hosts = ["soak.test"]
[[vhosts.rules]]
path = "^/img/w(?P<w>[0-9]+)/(?P<src>.+)\$"
action = "resize"
pool = "origin"
[vhosts.rules.resize]
source = "/{src}"
width = "{w}"
[[vhosts.rules]]
path = "^/api/"
pool = "origin"
[vhosts.rules.shadow]
name = "api"
targets = [{ pool = "shadow" }]
sample_percent = 50
[[vhosts.rules]]
path = "^/"
pool = "origin"
action = "cache"
[[vhosts]]
hosts = ["ws.soak"]
pool = "ws"
CONF

PIDS=""
KPID=""
cleanup() {
  # kura first, and waited for: a profiler writes its data when kura exits.
  [ -n "$KPID" ] && kill "$KPID" 2>/dev/null && for _ in $(seq 50); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.2; done
  kill $PIDS 2>/dev/null || true; stop_nginx; redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true; }
trap cleanup EXIT

start_nginx
redis-server --port $REDIS_PORT --save "" --appendonly no --daemonize no >"$D/redis.log" 2>&1 &
PIDS="$PIDS $!"
python3 bench/soak_ws.py server 9312 & PIDS="$PIDS $!"
sleep 0.5
"$KURA" check --config "$D/kura.toml" >/dev/null
# shellcheck disable=SC2086
${KURA_PREFIX:-} "$KURA" serve --config "$D/kura.toml" 2>"$D/kura.log" &
PIDS="$PIDS $!"
# Traffic starts once kura answers (a profiler makes its start slow).
for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:8191/status && break; sleep 0.2; done
# The kura process itself (a profiler's wrapper is not what is sampled).
KPID=$(pgrep -n -f -- "$KURA serve --config $D/kura.toml")

# Sampler: time, RSS (KiB), open fds, connections open.
echo "t,rss_kib,fds" > "$OUT/soak.csv"
( start=$(date +%s); while kill -0 $KPID 2>/dev/null; do
    now=$(( $(date +%s) - start ))
    rss=$(awk '/VmRSS/ {print $2}' /proc/$KPID/status)
    fds=$(ls /proc/$KPID/fd | wc -l)
    echo "$now,$rss,$fds" >> "$OUT/soak.csv"; sleep 10; done ) & PIDS="$PIDS $!"

# Origin restarts: the injected fault.
( end=$(( $(date +%s) + DURATION )); while [ "$(date +%s)" -lt $end ]; do
    sleep "$RESTART"; stop_nginx; sleep 2; start_nginx; echo "restart $(date +%s)" >> "$D/restarts"; done ) & PIDS="$PIDS $!"

# Redis route churn: a frontend added and removed every second.
( end=$(( $(date +%s) + DURATION )); i=0; while [ "$(date +%s)" -lt $end ]; do
    i=$((i + 1)); redis-cli -p $REDIS_PORT rpush "frontend:churn$((i % 50)).test" churn http://127.0.0.1:9311 >/dev/null
    redis-cli -p $REDIS_PORT del "frontend:churn$(((i + 25) % 50)).test" >/dev/null; sleep 1; done ) & PIDS="$PIDS $!"

# Mixed HTTP load (paced): hits on 1000 URLs, misses on unique URLs, no-store, API (shadowed).
cat > "$D/mix.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local r = n % 10
  local path
  if r < 6 then path = "/hot/" .. (n % 1000) .. ".txt"
  elseif r < 7 then path = "/miss/" .. n .. "-" .. math.random(1e9) .. ".txt"
  elseif r < 8 then path = "/nocache/" .. (n % 100)
  else path = "/api/items/" .. (n % 200) end
  return wrk.format("GET", path, { Host = "soak.test" })
end
delay = function() return 2 end
LUA
wrk -t1 -c8 -d"${DURATION}s" -s "$D/mix.lua" http://127.0.0.1:8190/ > "$D/wrk.txt" 2>&1 &
WRK=$!; PIDS="$PIDS $WRK"

# Image variants, 1 GiB downloads, slow readers, WebSocket clients.
count() { echo "$1" >> "$D/$2"; }
( end=$(( $(date +%s) + DURATION )); while [ "$(date +%s)" -lt $end ]; do
    w=$(( (RANDOM % 60 + 1) * 10 ))
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: soak.test' "http://127.0.0.1:8190/img/w$w/img/a.png" || echo 000)
    count "$code" images; sleep 0.2; done ) & PIDS="$PIDS $!"
( end=$(( $(date +%s) + DURATION )); while [ "$(date +%s)" -lt $end ]; do
    if curl -sf -o /dev/null -H 'Host: soak.test' http://127.0.0.1:8190/1g.bin; then count ok big; else count "fail $(date +%s)" big; fi
    sleep 20; done ) & PIDS="$PIDS $!"
( end=$(( $(date +%s) + DURATION )); while [ "$(date +%s)" -lt $end ]; do
    # Slow readers: 256 KiB/s for 30 s, then they give up (curl exits 28, expected).
    t0=$(date +%s); rc=0
    curl -s -o /dev/null --limit-rate 256k --max-time 30 -H 'Host: soak.test' http://127.0.0.1:8190/1g.bin || rc=$?
    count "$rc $t0 $(date +%s)" slow
    done ) & PIDS="$PIDS $!"
python3 bench/soak_ws.py client 127.0.0.1:8190 "$DURATION" > "$D/ws.txt" &
WS=$!; PIDS="$PIDS $WS"

wait $WRK || true
wait $WS || true
sleep 12

# Report.
restarts=$(wc -l < "$D/restarts" 2>/dev/null || echo 0)
reqs=$(awk '/requests in/ {print $1}' "$D/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$D/wrk.txt"); non2xx=${non2xx:-0}
sockerr=$(awk '/Socket errors/ {print}' "$D/wrk.txt"); sockerr=${sockerr:-none}
img_ok=$(grep -c '^200$' "$D/images" || true); img_bad=$(grep -vc '^200$' "$D/images" || true)
big_ok=$(grep -c '^ok' "$D/big" || true); big_bad=$(grep -c '^fail' "$D/big" || true)
slow=$(wc -l < "$D/slow" 2>/dev/null || echo 0)
# Slow readers that ended otherwise, and how many of them an origin restart overlapped (a fill
# cut by the restart ends its readers' transfers: the injected fault).
read -r slow_other slow_restart < <(python3 - "$D/slow" "$D/restarts" <<'PY'
import sys
runs = [l.split() for l in open(sys.argv[1])]
try:
    restarts = [int(l.split()[1]) for l in open(sys.argv[2])]
except FileNotFoundError:
    restarts = []
other = [r for r in runs if r[0] not in ("0", "28")]
hit = [r for r in other if any(int(r[1]) - 3 <= t <= int(r[2]) + 3 for t in restarts)]
print(len(other), len(hit))
PY
)
ws=$(cat "$D/ws.txt")
read -r disk_bytes disk_evictions mem_bytes drops cuts < <(curl -s http://127.0.0.1:8191/cache | python3 -c \
  'import json, sys; c = json.load(sys.stdin); print(c["disk_bytes"], c["disk_evictions"], c["memory_bytes"], c.get("disk_write_drops", "?"), c.get("bodies_cut", "?"))' \
  || echo "? ? ? ? ?")
# Client connections kura closed by its send timeout (20 s here): a slow reader whose kernel
# buffers grew large can see no write wake-up for that long even while it reads (nginx with
# the same send_timeout cuts the same readers, bench/README.md).
send_timeouts=$(curl -s http://127.0.0.1:8191/metrics | awk '/^kura_connection_timeouts_total\{kind="send"\}/ {print $2}')
# Why kura ended bodies early (kura logs each cut with its reason).
cut_why=$(grep -o 'why="[^"]*"\|why=[a-z ]*' "$D/kura.log" 2>/dev/null | sort | uniq -c | sort -rn | head -3 | awk '{$1=$1; print}' | paste -sd ';' - || true)
# RSS and fds over the last 20 minutes (or the second half of a shorter run).
from=$(( DURATION > 1500 ? DURATION - 1200 : DURATION / 2 ))
read -r rss_min rss_max fd_min fd_max < <(awk -F, -v f="$from" 'NR > 1 && $1 >= f {
  if (rmin == "" || $2 < rmin) rmin = $2; if ($2 > rmax) rmax = $2;
  if (fmin == "" || $3 < fmin) fmin = $3; if ($3 > fmax) fmax = $3 }
  END {print rmin, rmax, fmin, fmax}' "$OUT/soak.csv")
read -r rss_first rss_last < <(awk -F, -v f="$from" 'NR > 1 && $1 >= f {if (a == "") a = $2; b = $2} END {print a, b}' "$OUT/soak.csv")
{
  echo
  echo "### Soak, $(date -u '+%Y-%m-%d %H:%M UTC'), $((DURATION / 60)) min"
  echo
  machine
  echo
  echo "Mixed traffic through the release binary (bench/soak.sh): paced wrk (hits on 1,000 URLs,"
  echo "misses, no-store, shadowed API calls), image variants, 1 GiB downloads every 20 s, slow"
  echo "readers (256 KiB/s, giving up after 30 s), WebSocket tunnels, Redis route churn (a frontend"
  echo "added and one removed every second), and the origin restarted every ${RESTART} s ($restarts times)."
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| RSS over the last part (from ${from} s): first → last, min–max | ${rss_first} → ${rss_last} KiB, ${rss_min}–${rss_max} KiB |"
  echo "| open fds over the last part: min–max | ${fd_min}–${fd_max} |"
  echo "| wrk requests / non-2xx / socket errors | ${reqs} / ${non2xx} / ${sockerr} |"
  echo "| image variants: 200 / other | ${img_ok} / ${img_bad} |"
  echo "| 1 GiB downloads: whole / broken | ${big_ok} / ${big_bad} |"
  echo "| slow readers: runs / ended otherwise than by their own 30 s limit (of which during an origin restart) | ${slow} / ${slow_other} (${slow_restart}) |"
  echo "| WebSocket messages | ${ws} |"
  echo "| cache at the end: memory tier bytes / disk bytes (max ${MAX_DISK}) / objects cleaned from disk | ${mem_bytes} / ${disk_bytes} / ${disk_evictions} |"
  echo "| disk writes dropped (queue full) / bodies kura ended early (why) | ${drops} / ${cuts} (${cut_why:-none logged}) |"
  echo "| client connections closed by the send timeout | ${send_timeouts:-0} |"
} | tee -a "${SOAK_REPORT:-bench/README.md}"
echo "samples: $OUT/soak.csv; logs: $D"
