#!/usr/bin/env bash
# Shadow benchmark: the primary's throughput and p99 through kura without shadowing, with 100%
# of requests shadowed to a slow backend (answers after 5 s), and with 100% shadowed to a fast
# one (the origin itself, so every request is really compared), in one run with interleaved
# rounds. Results are appended to bench/README.md.
#
# usage: bench/shadow.sh [seconds-per-run] [rounds]
# needs: nginx-light wrk curl python3 (the anchors script installs the first three), a release
# build of kura (built here if missing), and ../shared/tools/anchors.sh (or ANCHORS=path).
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
WORK=/tmp/kura-bench-shadow
mkdir -p "$OUT" "$WORK"

[ -x "$ANCHORS" ] || { echo "anchors script not found at $ANCHORS (set ANCHORS=...)" >&2; exit 1; }
[ -x target/release/kura ] || cargo build --release -p kura

"$ANCHORS" stop >/dev/null 2>&1 || true
"$ANCHORS" start
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill ${PIDS:-} 2>/dev/null || true' EXIT
PIDS=""

# The slow shadow: answers every request after 5 s (threads, so it holds many at once).
cat > "$WORK/slow.py" <<'PY'
import http.server, socketserver, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(5)
        body = b"late\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("127.0.0.1", 9098), H).serve_forever()
PY
python3 "$WORK/slow.py" &
PIDS="$PIDS $!"

cat > "$WORK/kura.toml" <<TOML
[[listeners]]
address = "127.0.0.1:8097"
[admin]
address = "127.0.0.1:8098"
[server]
workers = 2
[pools.origin]
backends = ["http://127.0.0.1:9000"]
[pools.slow]
backends = ["http://127.0.0.1:9098"]
[[vhosts]]
hosts = ["plain.test"]
pool = "origin"
[[vhosts]]
hosts = ["slow.test"]
pool = "origin"
[vhosts.shadow]
targets = [{ pool = "slow" }]
[[vhosts]]
hosts = ["compare.test"]
pool = "origin"
[vhosts.shadow]
targets = [{ pool = "origin", name = "same-origin" }]
TOML
target/release/kura serve --config "$WORK/kura.toml" 2>"$OUT/kura-shadow.log" &
PIDS="$PIDS $!"
for _ in $(seq 50); do curl -fs -o /dev/null -H 'Host: plain.test' http://127.0.0.1:8097/1k.txt && break; sleep 0.1; done


NAMES="plain.test slow.test compare.test"
declare -A RPS P99
for h in $NAMES; do RPS[$h]=""; P99[$h]=""; wrk -t1 -c10 -d2s -H "Host: $h" http://127.0.0.1:8097/1k.txt >/dev/null 2>&1; done
for r in $(seq "$ROUNDS"); do
  for h in $NAMES; do
    read -r rps p99 < <(run_wrk http://127.0.0.1:8097/1k.txt -H "Host: $h")
    echo "round $r $h: $rps req/s, p99 $p99 ms"
    RPS[$h]+="$rps"$'\n'; P99[$h]+="$p99"$'\n'
  done
done
for h in $NAMES; do
  RPS[$h]=$(printf '%s' "${RPS[$h]}" | median)
  P99[$h]=$(printf '%s' "${P99[$h]}" | median)
done
COUNTERS=$(curl -fs http://127.0.0.1:8098/shadow | python3 -c 'import json,sys; c=json.load(sys.stdin)["counters"]; print(json.dumps({"selected": c["selected"], "dropped": c["dropped"], "targets": c["targets"]}))')

{
  echo
  echo "### Shadow, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, median of $ROUNDS interleaved rounds, 1 KiB object from the"
  echo "anchors' nginx origin; one kura (2 workers, default [shadow] settings), three vhosts."
  echo
  echo "| primary traffic | req/s | p99 ms | req/s vs no shadow | p99 vs no shadow |"
  echo "|---|---|---|---|---|"
  echo "| no shadowing | ${RPS[plain.test]} | ${P99[plain.test]} | 1.00 | 1.00 |"
  echo "| 100% shadowed to a backend that answers after 5 s | ${RPS[slow.test]} | ${P99[slow.test]} | $(ratio "${RPS[slow.test]}" "${RPS[plain.test]}") | $(ratio "${P99[slow.test]}" "${P99[plain.test]}") |"
  echo "| 100% shadowed to the origin itself (every request compared) | ${RPS[compare.test]} | ${P99[compare.test]} | $(ratio "${RPS[compare.test]}" "${RPS[plain.test]}") | $(ratio "${P99[compare.test]}" "${P99[plain.test]}") |"
  echo
  echo "Shadow counters after the run: \`$COUNTERS\`"
} | tee -a bench/README.md
