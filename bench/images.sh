#!/usr/bin/env bash
# Images: (1) time per image for a 4000×3000 JPEG to an 800 px wide JPEG (quality 75), kura's
# transform (one thread, in process, mean of COUNT) against vipsthumbnail (one process for COUNT
# images, so its start-up is amortised; with its default threads and with VIPS_CONCURRENCY=1);
# (2) through the proxy: a cold variant's latency, cached-variant throughput against plain
# cache hits of an object of the same size, and kura's peak RSS while 32 transforms run at once.
# Appends to bench/README.md.
#
# usage: bench/images.sh [count] [seconds-per-run]
# needs: libvips-tools (vipsthumbnail), wrk, curl, the anchors script (origin on :9000).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

COUNT=${1:-20}
DURATION=${2:-10}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
ANCHORS=${ANCHORS:-../shared/tools/anchors.sh}
OUT=bench/results
D=/tmp/kura-bench-images
mkdir -p "$OUT" "$D"
cargo build --release -p kura
cargo build --release -p kura-image --example thumb
T=target/release/examples/thumb
[ -f "$D/photo.jpg" ] || "$T" --generate "$D/photo.jpg" 4000 3000

# (1) Per image.
read -r KMS KSIZE < <("$T" "$D/photo.jpg" 800 "$COUNT")
files=$(for _ in $(seq "$COUNT"); do echo "$D/photo.jpg"; done)
vips_ms() {
  local t0 t1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  vipsthumbnail $files -s 800x -o "$D/vips_%s.jpg[Q=75]"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v n="$COUNT" 'BEGIN {printf "%.1f", (b - a) * 1000 / n}'
}
VMS=$(vips_ms)
VMS1=$(VIPS_CONCURRENCY=1 vips_ms)
VSIZE=$(stat -c %s "$D/vips_photo.jpg")
echo "per image: kura $KMS ms ($KSIZE bytes), vipsthumbnail $VMS ms, 1 thread $VMS1 ms ($VSIZE bytes)"

# (2) Through the proxy.
"$ANCHORS" stop >/dev/null 2>&1 || true
"$ANCHORS" start
cp "$D/photo.jpg" /tmp/anchor/www/photo.jpg
trap '"$ANCHORS" stop >/dev/null 2>&1 || true; kill ${KPID:-} 2>/dev/null || true' EXIT
cat > "$D/kura.toml" <<CONF
[[listeners]]
address = "127.0.0.1:8099"
[cache]
memory = "256MiB"
[pools.origin]
backends = ["http://127.0.0.1:9000"]
[[vhosts]]
hosts = ["*"]
[[vhosts.rules]]
path = "^/img/w(?P<w>[0-9]+)(?:-q(?P<q>[0-9]+))?/(?P<src>.+)\$"
action = "resize"
pool = "origin"
[vhosts.rules.resize]
source = "/{src}"
width = "{w}"
quality = "{q}"
format = "jpeg"
max_concurrent = 32
timeout = "60s"
[[vhosts.rules]]
path = "^/plain/(?P<src>.+)\$"
action = "cache"
pool = "origin"
rewrite = "/{src}"
[vhosts.rules.cache]
default_ttl = "1h"
CONF
target/release/kura serve --config "$D/kura.toml" 2>"$OUT/kura-images.log" &
KPID=$!
for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:8099/plain/1k.txt && break; sleep 0.1; done
rss() { awk '/^VmRSS:/ {print $2}' /proc/"$KPID"/status; }
hwm() { awk '/^VmHWM:/ {print $2}' /proc/"$KPID"/status; }

# The source is fetched (and cached) by the first variant; later variants read it from the cache.
curl -fs -o "$D/variant.jpg" http://127.0.0.1:8099/img/w800/photo.jpg
cp "$D/variant.jpg" /tmp/anchor/www/variant.jpg
COLD=$(for q in 60 61 62 63 64 65 66 67 68 69; do
  curl -fs -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:8099/img/w800-q$q/photo.jpg"
done | awk '{s += $1} END {printf "%.1f", s * 1000 / NR}')
echo "cold variant through kura: $COLD ms"

curl -fs -o /dev/null http://127.0.0.1:8099/plain/variant.jpg
declare -A RPS P99
for k in variant plain; do RPS[$k]=""; P99[$k]=""; done
url_of() { case $1 in variant) echo http://127.0.0.1:8099/img/w800/photo.jpg;; plain) echo http://127.0.0.1:8099/plain/variant.jpg;; esac; }
for r in 1 2 3; do
  for k in variant plain; do
    read -r rps p99 < <(run_wrk "$(url_of $k)")
    echo "round $r $k: $rps req/s p99 $p99 ms"
    RPS[$k]+="$rps"$'\n'; P99[$k]+="$p99"$'\n'
  done
done
for k in variant plain; do
  RPS[$k]=$(printf '%s' "${RPS[$k]}" | median); P99[$k]=$(printf '%s' "${P99[$k]}" | median)
done

# 32 distinct transforms at once.
RSS_BEFORE=$(rss)
for w in $(seq 500 531); do
  curl -fs -o /dev/null "http://127.0.0.1:8099/img/w$w/photo.jpg" &
done
wait $(jobs -p | grep -v "^$KPID\$") 2>/dev/null || true
sleep 0.5
HWM=$(hwm)
VSIZE_K=$(stat -c %s "$D/variant.jpg")

{
  echo
  echo "### Images, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "A generated 4000×3000 photo-like JPEG ($(stat -c %s "$D/photo.jpg") bytes) to an 800 px wide JPEG at quality 75."
  echo
  echo "| | ms per image | output bytes | kura / vips |"
  echo "|---|---|---|---|"
  echo "| kura transform (1 thread, mean of $COUNT) | $KMS | $KSIZE | 1.00 |"
  echo "| vipsthumbnail, default threads ($COUNT images, one process) | $VMS | $VSIZE | $(ratio "$KMS" "$VMS") |"
  echo "| vipsthumbnail, VIPS_CONCURRENCY=1 | $VMS1 | | $(ratio "$KMS" "$VMS1") |"
  echo
  echo "Through kura: a cold variant (source already cached) $COLD ms. wrk -t$THREADS -c$CONNS -d${DURATION}s,"
  echo "median of 3 interleaved rounds, the variant ($VSIZE_K bytes) against a plain cache hit of the same bytes:"
  echo
  echo "| | req/s | p99 ms | vs plain hit |"
  echo "|---|---|---|---|"
  echo "| cached variant | ${RPS[variant]} | ${P99[variant]} | $(ratio "${RPS[variant]}" "${RPS[plain]}") |"
  echo "| plain cache hit | ${RPS[plain]} | ${P99[plain]} | 1.00 |"
  echo
  echo "32 different variants requested at once (max_concurrent = 32): kura RSS before ${RSS_BEFORE} KiB, peak ${HWM} KiB."
} | tee -a bench/README.md
