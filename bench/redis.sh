#!/usr/bin/env bash
# Routes from Redis: throughput of kura serving 10,000 frontends from Redis against the same
# kura serving 1, in one run (issue: equal within 5%). The 10,000 case spreads requests over
# every host (a wrk Lua script picks one at random per request); the 1 case uses the same
# script with one host, so both pay the same load-generator cost. Appends to bench/README.md.
#
# usage: bench/redis.sh [seconds-per-run] [rounds]
# needs: redis-server, redis-cli, wrk, curl, ../shared/tools/anchors.sh (origin on :9000).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${1:-10}
ROUNDS=${2:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
FRONTENDS=${FRONTENDS:-10000}
ANCHORS=${ANCHORS:-../shared/tools/anchors.sh}
OUT=bench/results
RPORT=${RPORT:-6391}
mkdir -p "$OUT"
[ -x target/release/kura ] || cargo build --release -p kura

"$ANCHORS" stop >/dev/null 2>&1 || true
"$ANCHORS" start
RDIR=$(mktemp -d)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$RDIR" --daemonize yes --pidfile "$RDIR/redis.pid"
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill ${KPIDS:-} 2>/dev/null || true; kill "$(cat "$RDIR/redis.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# db 0: FRONTENDS frontends; db 1: one.
for i in $(seq "$FRONTENDS"); do echo "RPUSH frontend:site$i.test app$i http://127.0.0.1:9000"; done \
  | redis-cli -p "$RPORT" -n 0 --pipe >/dev/null
redis-cli -p "$RPORT" -n 1 RPUSH frontend:site1.test app1 http://127.0.0.1:9000 >/dev/null

cat > "$OUT/hosts.lua" <<'LUA'
local n = tonumber(os.getenv("HOSTS") or "1")
request = function()
  return wrk.format("GET", "/1k.txt", { ["Host"] = "site" .. math.random(n) .. ".test" })
end
LUA

KPIDS=""
target/release/kura serve --listen 127.0.0.1:8095 --admin 127.0.0.1:8096 --redis "redis://127.0.0.1:$RPORT/0" 2>"$OUT/kura-redis-many.log" &
KPIDS="$KPIDS $!"
target/release/kura serve --listen 127.0.0.1:8097 --admin 127.0.0.1:8098 --redis "redis://127.0.0.1:$RPORT/1" 2>"$OUT/kura-redis-one.log" &
KPIDS="$KPIDS $!"
for port in 8096 8098; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/metrics" | grep -q '^kura_redis_up 1' && break; sleep 0.1; done
done
MANY=$(curl -fs http://127.0.0.1:8096/metrics | awk '/^kura_redis_frontends / {print $2}')
ONE=$(curl -fs http://127.0.0.1:8098/metrics | awk '/^kura_redis_frontends / {print $2}')
echo "frontends: $MANY and $ONE"

declare -A RPS P99
for n in many one; do RPS[$n]=""; P99[$n]=""; done
run() { # name port hosts
  HOSTS=$3 run_wrk "http://127.0.0.1:$2/1k.txt" -s "$OUT/hosts.lua"
}
HOSTS=$FRONTENDS wrk -t1 -c10 -d2s -s "$OUT/hosts.lua" http://127.0.0.1:8095/1k.txt >/dev/null
HOSTS=1 wrk -t1 -c10 -d2s -s "$OUT/hosts.lua" http://127.0.0.1:8097/1k.txt >/dev/null
for r in $(seq "$ROUNDS"); do
  read -r rps p99 < <(run many 8095 "$FRONTENDS"); echo "round $r many: $rps req/s p99 $p99"
  RPS[many]+="$rps"$'\n'; P99[many]+="$p99"$'\n'
  read -r rps p99 < <(run one 8097 1); echo "round $r one: $rps req/s p99 $p99"
  RPS[one]+="$rps"$'\n'; P99[one]+="$p99"$'\n'
done
for n in many one; do
  RPS[$n]=$(printf '%s' "${RPS[$n]}" | median); P99[$n]=$(printf '%s' "${P99[$n]}" | median)
done
RSS_MANY=$(awk '/^VmRSS:/ {print $2}' /proc/"$(echo $KPIDS | awk '{print $1}')"/status)

{
  echo
  echo "### Redis routes, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, median of $ROUNDS interleaved rounds, 1 KiB object, a"
  echo "random Host per request among the frontends; wrk, the origin (nginx) and both kura share the cores."
  echo
  echo "| frontends in Redis | req/s | p99 ms | vs 1 frontend |"
  echo "|---|---|---|---|"
  echo "| $ONE | ${RPS[one]} | ${P99[one]} | 1.00 |"
  echo "| $MANY | ${RPS[many]} | ${P99[many]} | $(ratio "${RPS[many]}" "${RPS[one]}") |"
  echo
  echo "kura with $MANY frontends: RSS ${RSS_MANY} KiB."
} | tee -a bench/README.md
