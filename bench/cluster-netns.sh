#!/usr/bin/env bash
# The cluster as if on separate machines: an origin (nginx), an etcd and N kura nodes, each in
# its own network namespace, joined by veth pairs to a bridge that lives in a namespace of its
# own (nothing is added to the host's network). Every link is shaped with tc (tbf, both
# directions): nodes NODE_MBIT, the origin ORIGIN_MBIT, each client CLIENT_MBIT. Clients run in
# their own namespaces, each bound to one node (client k uses node k mod N); a request that
# fails is tried on the other nodes in turn, as a client behind DNS round robin would.
#
#   scale   N = 1..4: aggregate client throughput, origin bytes per client byte, hit ratio,
#           p99 time to first byte, memory held by the cluster, on a working set larger than
#           one node's memory tier (each client requests all of it, PASSES times, in a random
#           order per pass).
#   faults  with traffic flowing: a node killed, a node added, etcd stopped, one node's link
#           degraded to 10 Mbit/s, a rolling restart of every node.
#
# usage: bench/cluster-netns.sh [scale|faults|all]  (as root; results appended to bench/README.md)
# needs: iproute2 (ip, tc), nginx-light, etcd-server, curl, a release build of kura (KURA=path
# to use another binary). Every namespace is named kn<pid>-*; all of them, and every process
# started in them, are removed on exit, also on Ctrl-C.
set -euo pipefail

# One client stream, run inside a client namespace by run_clients: PASSES passes over the
# working set in a random order; each request goes to the home node first, then to the others.
# One line per attempt: start end node object size code bytes ttfb curl_exit pass try request cache-status
if [ "${1:-}" = "--stream" ]; then
  shift; out=$1 objects=$2 passes=$3 seed=$4 deadline=$5; shift 5; nodes=("$@")
  for pass in $(seq "$passes"); do
    idx=0
    while read -r obj size; do
      idx=$((idx + 1))
      [ "$deadline" = 0 ] || [ "${EPOCHREALTIME%.*}" -lt "$deadline" ] || break 2
      for try in $(seq 0 $((${#nodes[@]} - 1))); do
        start=$EPOCHREALTIME
        r=$(curl -s -o /dev/null --connect-timeout 2 --speed-time 3 --speed-limit 10000 --max-time 60 \
          -H "Host: files.test" -w '%{http_code} %{size_download} %{time_starttransfer} %header{cache-status}' \
          "http://${nodes[$try]}:8080/$obj") && rc=0 || rc=$?
        read -r code bytes ttfb cs <<<"$r" || true
        cs=${cs:-none}
        echo "$start $EPOCHREALTIME ${nodes[$try]} $obj $size ${code:-000} ${bytes:-0} ${ttfb:-0} $rc $pass $try $seed-$pass-$idx ${cs// /}" >> "$out"
        [ "$rc" = 0 ] && [ "$code" = 200 ] && [ "$bytes" = "$size" ] && break
      done
    done < <(shuf --random-source=<(yes "$seed$pass") "$objects")
  done
  exit 0
fi

SELF=$(realpath "$0")
cd "${REPO:-$(dirname "$SELF")/..}" # REPO: the repository, when running a copy of this script
# shellcheck source=bench/lib.sh
. bench/lib.sh

MODE=${1:-all}
NODE_MBIT=${NODE_MBIT:-400}
ORIGIN_MBIT=${ORIGIN_MBIT:-200}
CLIENT_MBIT=${CLIENT_MBIT:-250}
CLIENTS=${CLIENTS:-4}
STREAMS=${STREAMS:-2}          # concurrent requests per client
PASSES=${PASSES:-3}            # passes over the working set, scale runs
FAULT_SECONDS=${FAULT_SECONDS:-30} # fault runs: traffic for this long (after one warming pass)
FAULT_AT=${FAULT_AT:-10}       # the fault, this many seconds into the run
MEMORY_MIB=${MEMORY_MIB:-64}   # each node's memory tier
WS_MIB=${WS_MIB:-160}          # working set
OBJ_MIB=${OBJ_MIB:-1-4}        # its objects' sizes, MiB (objects above memory/8 are not copied
                               # into askers' memory: only their owner keeps them)
PEER_TIMEOUT=${PEER_TIMEOUT:-2s}
ROLL=${ROLL:-upgrade}          # rolling restart by SIGUSR2 (upgrade) or by SIGTERM and start (stop)
SECRET=bench-secret-0123456789
KURA=${KURA:-$PWD/target/release/kura}
W=/tmp/kura-bench-netns
OUT=$W/out
P=kn$$
SW=$P-sw
NET=10.99.0
[ "$(id -u)" -eq 0 ] || { echo "cluster-netns.sh needs root (network namespaces, tc)" >&2; exit 1; }
[ -x "$KURA" ] || nice -n 19 cargo build --release -p kura
WWW=$W/www-$OBJ_MIB
mkdir -p "$WWW" "$OUT"
rm -f "$OUT"/*

# ---------------------------------------------------------------- namespaces and links
NSS=()
cleanup() {
  set +e
  for ns in "${NSS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  NSS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$SW"; NSS+=("$SW")
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
ip -n "$SW" link set lo up

# shape NS DEV MBIT: a token bucket of MBIT on DEV's egress inside NS.
shape() {
  local burst=$(( $3 * 1000000 / 8 / 250 )) # 4 ms at the rate
  [ "$burst" -ge 32768 ] || burst=32768
  ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$3mbit" burst "$burst" latency 20ms
}
# link NAME MBIT: (re)shapes NAME's link, both directions.
link() { shape "$P-$1" eth0 "$2"; shape "$SW" "v-$1" "$2"; }
# host NAME IP MBIT: a namespace joined to the bridge, its link MBIT both ways.
host() {
  local ns=$P-$1
  ip netns add "$ns"; NSS+=("$ns")
  ip -n "$SW" link add "v-$1" type veth peer name eth0 netns "$ns"
  ip -n "$SW" link set "v-$1" master br0 up
  ip -n "$ns" addr add "$2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  link "$1" "$3"
}
in_ns() { local ns=$P-$1; shift; ip netns exec "$ns" "$@"; }
node_ip() { echo "$NET.$((10 + $1))"; }
client_ip() { echo "$NET.$((50 + $1))"; }

# ---------------------------------------------------------------- working set, origin, etcd
if ! [ -f "$WWW/objects.txt" ] || [ "$(awk '{s+=$2} END {print int(s/1048576)}' "$WWW/objects.txt")" -lt "$WS_MIB" ]; then
  rm -f "$WWW"/*
  total=0; i=0; lo=${OBJ_MIB%-*}; hi=${OBJ_MIB#*-}
  while [ "$total" -lt $((WS_MIB * 1048576)) ]; do
    size=$(( (lo + RANDOM % (hi - lo + 1)) * 1048576 - RANDOM ))
    head -c "$size" /dev/urandom > "$WWW/o$i.bin"
    echo "o$i.bin $size" >> "$WWW/objects.txt"
    total=$((total + size)); i=$((i + 1))
  done
fi
WS_BYTES=$(awk '{s+=$2} END {printf "%.0f", s}' "$WWW/objects.txt")
OBJECTS=$(wc -l < "$WWW/objects.txt")

host origin "$NET.2" "$ORIGIN_MBIT"
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
  log_format b '\$body_bytes_sent';
  access_log $W/nginx/bytes.log b;
  server { listen $NET.2:80; root $WWW;
    location / { add_header Cache-Control "public, max-age=3600"; } }
}
CONF
: > "$W/nginx/bytes.log"
in_ns origin nginx -c "$W/nginx/nginx.conf"
origin_bytes() { awk '{s+=$1} END {printf "%.0f\n", s}' "$W/nginx/bytes.log"; }

host etcd "$NET.3" 1000
ETCD_PID=""
start_etcd() {
  rm -rf "$W/etcd"
  ip netns exec "$P-etcd" etcd --name b --data-dir "$W/etcd" --listen-client-urls "http://$NET.3:2379" \
    --advertise-client-urls "http://$NET.3:2379" --listen-peer-urls http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster b=http://127.0.0.1:2380 \
    --log-level error >> "$OUT/etcd.log" 2>&1 &
  ETCD_PID=$!
}
stop_etcd() { [ -z "$ETCD_PID" ] || { kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; ETCD_PID=""; }; }

for k in $(seq "$CLIENTS"); do host "client$k" "$(client_ip "$k")" "$CLIENT_MBIT"; done

# ---------------------------------------------------------------- kura nodes
declare -A NODE_PID=()
start_node() { # i: kura in node i's namespace (made on first use)
  local ip; ip=$(node_ip "$1")
  [ -e "/run/netns/$P-node$1" ] || host "node$1" "$ip" "$NODE_MBIT"
  cat > "$W/node$1.toml" <<CONF
[[listeners]]
address = "$ip:8080"
[admin]
address = "$ip:9090"
[cache]
memory = "${MEMORY_MIB}MiB"
[cluster]
peering_address = "$ip:7000"
secret = "$SECRET"
etcd = ["http://$NET.3:2379"]
lease_ttl = "3s"
peer_timeout = "$PEER_TIMEOUT"
[pools.origin]
backends = ["http://$NET.2:80"]
[[vhosts]]
hosts = ["*"]
pool = "origin"
action = "cache"
CONF
  ip netns exec "$P-node$1" "$KURA" serve --config "$W/node$1.toml" >> "$OUT/node$1.log" 2>&1 &
  NODE_PID[$1]=$!
}
stop_node() { # i [signal]
  local pid=${NODE_PID[$1]} _
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" 2>/dev/null || true
  unset "NODE_PID[$1]"
}
# upgrade_node i: SIGUSR2, the zero-downtime replacement; waits for the old process to exit
# and follows the new one (the only process left in the node's namespace).
upgrade_node() {
  local old=${NODE_PID[$1]} _
  kill -USR2 "$old"
  for _ in $(seq 300); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
  wait "$old" 2>/dev/null || true
  NODE_PID[$1]=$(ip netns pids "$P-node$1" | head -1)
}
stop_nodes() { for i in "${!NODE_PID[@]}"; do stop_node "$i"; done; }
ccurl() { in_ns client1 curl -s --max-time 3 "$@"; }
admin() { ccurl "http://$(node_ip "$1"):9090$2"; }
metric() { admin "$1" /metrics | awk -v m="$2" '$1 == m {print $2; f=1} END {if (!f) print 0}'; }
members() { admin "$1" /cluster 2>/dev/null | tr -d " \n" | grep -o '"members":\[[^]]*\]' | grep -o ':7000' | wc -l; }
wait_members() { # n node...: every listed node sees n members
  local n=$1 i; shift
  for i in "$@"; do
    for _ in $(seq 300); do [ "$(members "$i")" = "$n" ] && continue 2; sleep 0.1; done
    echo "node $i never saw $n members: $(admin "$i" /cluster)" >&2; exit 1
  done
}
# cluster N: etcd and nodes 1..N, fresh (empty caches), all seeing N members.
cluster() {
  stop_nodes; stop_etcd; start_etcd
  local i; for i in $(seq "$1"); do start_node "$i"; done
  wait_members "$1" $(seq "$1")
}
sum_metric() { local s=0 i; for i in "${!NODE_PID[@]}"; do s=$(awk -v a="$s" -v b="$(metric "$i" "$1")" 'BEGIN {printf "%.0f", a + b}'); done; echo "$s"; }

# ---------------------------------------------------------------- clients and measures
CLIENT_PIDS=()
# run_clients TAG N PASSES [SECONDS]: every client's streams against nodes 1..N, in the
# background; with SECONDS, no request starts after that long.
run_clients() {
  local tag=$1 n=$2 passes=$3 deadline=0 k s j home order
  [ -z "${4:-}" ] || deadline=$(( ${EPOCHREALTIME%.*} + $4 ))
  CLIENT_PIDS=()
  for k in $(seq "$CLIENTS"); do
    home=$(( (k - 1) % n + 1 ))
    order=(); for j in $(seq 0 $((n - 1))); do order+=("$(node_ip $(( (home - 1 + j) % n + 1 )))"); done
    for s in $(seq "$STREAMS"); do
      ip netns exec "$P-client$k" bash "$SELF" --stream "$OUT/$tag.c$k" "$WWW/objects.txt" "$passes" "$tag$k$s" "$deadline" "${order[@]}" &
      CLIENT_PIDS+=($!)
    done
  done
}
wait_clients() { wait "${CLIENT_PIDS[@]}"; CLIENT_PIDS=(); }
now() { echo "$EPOCHREALTIME"; }

# stats FILTER FILES...: over the attempts the awk FILTER selects:
# "bytes seconds MB/s p99_ttfb_ms hit_ratio ok_requests failed_attempts failed_requests codes"
# (failed requests: those with an attempt selected and no success at all, in any window;
# codes: curl exit / HTTP status of the failed attempts, with counts)
stats() {
  local filter=$1; shift
  local p99
  p99=$(cat "$@" | awk "$filter"' && $9 == 0 && $6 == 200 && $7 == $5 {print $8 * 1000}' | sort -g |
    awk '{a[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.0f", a[i]}')
  cat "$@" | awk '$9 == 0 && $6 == 200 && $7 == $5 {print $12}' | sort -u > "$W/ok-ids"
  cat "$@" | awk -v p99="$p99" 'FNR == NR {okid[$1] = 1; next} '"$filter"' {
      ok = ($9 == 0 && $6 == 200 && $7 == $5)
      if (ok) { b += $7; n++; if ($13 ~ /hit/) h++
                if (first == "" || $1 < first) first = $1; if ($2 > last) last = $2 }
      else { fa++; codes["exit" $9 "/" $6]++ }
      if (!($12 in okid)) lost[$12] = 1
    }
    END {
      for (r in lost) fr++
      c = ""; for (k in codes) c = c (c == "" ? "" : ",") k "x" codes[k]
      d = last - first; if (d <= 0) d = 1
      printf "%d %.1f %.1f %s %.2f %d %d %d %s\n", b, d, b / d / 1e6, p99, (n ? h / n : 0), n, fa + 0, fr + 0, (c == "" ? "-" : c)
    }' "$W/ok-ids" -
}
field() { echo "$1" | awk -v i="$2" '{print $i}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.0f", b / 1048576}'; }
client_files() { local f="" k; for k in "$@"; do f="$f $OUT/$TAG.c$k"; done; echo "$f"; }

RESULTS=$W/results.md
: > "$RESULTS"
say() { echo "$*" | tee -a "$RESULTS"; }

# ---------------------------------------------------------------- scale
# Passes run one after another (every client finishes pass p before pass p+1 starts), so
# each has its own origin bytes: the first is cold, the last shows what the cluster holds.
scale() {
  say ""
  say "| nodes | MB/s, first pass | MB/s, last pass | origin MiB, first pass | origin MiB, last pass | origin bytes per client byte, all passes | bytes not from the origin, last pass | p99 TTFB ms, last pass | memory held, MiB | from peers, MiB | peer timeouts | failed requests |"
  say "|---|---|---|---|---|---|---|---|---|---|---|---|"
  local n p o0 o1 ofirst olast first last all
  for n in 1 2 3 4; do
    cluster "$n"
    o0=$(origin_bytes)
    for p in $(seq "$PASSES"); do
      o1=$(origin_bytes)
      run_clients "scale$n.p$p" "$n" 1; wait_clients
      [ "$p" = 1 ] && ofirst=$(( $(origin_bytes) - o1 ))
      olast=$(( $(origin_bytes) - o1 ))
    done
    for i in $(seq "$n"); do admin "$i" /cluster > "$OUT/scale$n.node$i.json"; admin "$i" /metrics > "$OUT/scale$n.node$i.metrics"; done
    first=$(stats 1 "$OUT/scale$n.p1".c*)
    last=$(stats 1 "$OUT/scale$n.p$PASSES".c*)
    all=$(stats 1 "$OUT/scale$n".p*.c*)
    say "| $n | $(field "$first" 3) | $(field "$last" 3) | $(mib "$ofirst") | $(mib "$olast") | $(ratio $(( $(origin_bytes) - o0 )) "$(field "$all" 1)") | $(awk -v o="$olast" -v c="$(field "$last" 1)" 'BEGIN {printf "%.2f", 1 - o / c}') | $(field "$last" 4) | $(mib "$(sum_metric kura_cache_memory_bytes)") | $(mib "$(sum_metric kura_cluster_peer_bytes_total)") | $(sum_metric 'kura_cluster_peer_errors_total{kind="timeout"}') | $(field "$all" 8) |"
  done
}

# ---------------------------------------------------------------- faults
# warm N: one pass of every client, so the cluster holds the working set before a fault.
warm() { TAG=warm$1; run_clients "$TAG" "$1" 1; wait_clients; }
# client_row LABEL FILTER CLIENTS...: a row of the fault table for those clients' requests.
client_row() {
  local label=$1 filter=$2; shift 2
  local s; s=$(stats "$filter" $(client_files "$@"))
  say "| $label | $(field "$s" 6) | $(field "$s" 7) | $(field "$s" 8) | $(field "$s" 4) | $(field "$s" 3) | $(field "$s" 9) |"
}
fault_header() {
  say ""
  say "#### $1"
  say ""
  say "| clients | requests | failed attempts | failed requests | p99 TTFB ms | MB/s | failed attempts by curl exit / status |"
  say "|---|---|---|---|---|---|---|"
}
# the time a client first failed after T, and its next success: "first_fail recovered_after_s"
recovery() {
  cat "$OUT/$TAG.c$1" | sort -n | awk -v t="$2" '$1 >= t {
      ok = ($9 == 0 && $6 == 200 && $7 == $5)
      if (!ok && f == "") f = $1
      if (ok && f != "" && $2 > f) { printf "%.2f", $2 - f; exit }
    }'
}

fault_kill() {
  cluster 4; warm 4
  TAG=kill; local o0 t; o0=$(origin_bytes)
  run_clients "$TAG" 4 100 "$FAULT_SECONDS"; sleep "$FAULT_AT"
  t=$(now); stop_node 4 KILL
  wait_clients
  fault_header "Node 4 killed (SIGKILL) $(awk -v a="$t" -v b="$(cat $(client_files 1) | sort -n | head -1 | cut -d' ' -f1)" 'BEGIN {printf "%.0f", a - b}') s into the run"
  client_row "of nodes 1-3, before" "\$1 < $t" 1 2 3
  client_row "of nodes 1-3, after" "\$1 >= $t" 1 2 3
  client_row "of node 4, before" "\$1 < $t" 4
  client_row "of node 4, after" "\$1 >= $t" 4
  say ""
  say "Client 4, from its first failure after the kill to its next success (on node 1): $(recovery 4 "$t") s. Origin bytes during the run: $(mib $(( $(origin_bytes) - o0 ))) MiB (working set $(mib "$WS_BYTES") MiB)."
}

fault_add() {
  cluster 3; warm 3
  TAG=add; local o0 ot t served
  run_clients "$TAG" 3 100 "$FAULT_SECONDS"; sleep "$FAULT_AT"
  o0=$(origin_bytes); t=$(now)
  start_node 4; wait_members 4 1 2 3 4
  wait_clients
  ot=$(( $(origin_bytes) - o0 ))
  served=$(metric 4 kura_cluster_served_total)
  fault_header "Node 4 added to 3 warm nodes, $(awk -v a="$t" -v b="$(cat $(client_files 1) | sort -n | head -1 | cut -d' ' -f1)" 'BEGIN {printf "%.0f", a - b}') s into the run"
  client_row "all, before" "\$1 < $t" $(seq "$CLIENTS")
  client_row "all, after" "\$1 >= $t" $(seq "$CLIENTS")
  say ""
  say "After the join the origin sent $(mib "$ot") MiB ($(ratio "$ot" "$WS_BYTES") of the $(mib "$WS_BYTES") MiB working set; rendezvous hashing moves the new node's quarter, 0.25); node 4 answered $served peer requests as owner."
}

fault_etcd() {
  cluster 4; warm 4
  TAG=etcd; local o0 t m=""
  o0=$(origin_bytes)
  run_clients "$TAG" 4 100 "$FAULT_SECONDS"; sleep "$FAULT_AT"
  t=$(now); stop_etcd
  sleep 6
  for i in 1 2 3 4; do m="$m $(members "$i")/$(metric "$i" kura_cluster_etcd_up)"; done
  wait_clients
  fault_header "etcd stopped $(awk -v a="$t" -v b="$(cat $(client_files 1) | sort -n | head -1 | cut -d' ' -f1)" 'BEGIN {printf "%.0f", a - b}') s into the run (lease_ttl 3 s)"
  client_row "all, before" "\$1 < $t" $(seq "$CLIENTS")
  client_row "all, after" "\$1 >= $t" $(seq "$CLIENTS")
  say ""
  say "Members / kura_cluster_etcd_up seen by nodes 1-4 six seconds after etcd stopped:$m. Origin bytes during the run: $(mib $(( $(origin_bytes) - o0 ))) MiB."
}

fault_slow() {
  cluster 4; warm 4
  TAG=slow; local o0 t timeouts=0 down="" i
  o0=$(origin_bytes)
  run_clients "$TAG" 4 100 "$FAULT_SECONDS"; sleep "$FAULT_AT"
  t=$(now); link node4 10
  sleep 5
  for i in 1 2 3; do down="$down $(admin "$i" /cluster | tr -d " \n" | grep -o '"down":\[[^]]*\]')"; done
  wait_clients
  link node4 "$NODE_MBIT"
  for i in 1 2 3; do timeouts=$((timeouts + $(admin "$i" /metrics | awk '/^kura_cluster_peer_errors_total\{kind="timeout"\}/ {print $2}'))); done
  fault_header "Node 4's link degraded to 10 Mbit/s $(awk -v a="$t" -v b="$(cat $(client_files 1) | sort -n | head -1 | cut -d' ' -f1)" 'BEGIN {printf "%.0f", a - b}') s into the run (peer_timeout $PEER_TIMEOUT)"
  client_row "of nodes 1-3, before" "\$1 < $t" 1 2 3
  client_row "of nodes 1-3, after" "\$1 >= $t" 1 2 3
  client_row "of node 4, before" "\$1 < $t" 4
  client_row "of node 4, after" "\$1 >= $t" 4
  say ""
  say "Peer timeouts counted by nodes 1-3: $timeouts; their view 5 s after the change:$down. Origin bytes during the run: $(mib $(( $(origin_bytes) - o0 ))) MiB."
}

fault_roll() {
  cluster 4; warm 4
  TAG=roll; local o0 t i
  o0=$(origin_bytes)
  run_clients "$TAG" 4 100 $((FAULT_SECONDS + 10)); sleep 5
  t=$(now)
  for i in 1 2 3 4; do
    if [ "$ROLL" = upgrade ]; then upgrade_node "$i"; else stop_node "$i" TERM; start_node "$i"; fi
    wait_members 4 1 2 3 4
    sleep 2
  done
  local t_end; t_end=$(now)
  wait_clients
  local how="SIGUSR2: the new process takes the listening sockets over, the old one drains"
  [ "$ROLL" = upgrade ] || how="SIGTERM, then a new process"
  fault_header "Rolling restart ($how; the next node once all see 4 members and 2 s passed), $(awk -v a="$t_end" -v b="$t" 'BEGIN {printf "%.0f", a - b}') s from the first stop to the last start"
  client_row "all, before" "\$1 < $t" $(seq "$CLIENTS")
  client_row "all, during" "\$1 >= $t && \$1 < $t_end" $(seq "$CLIENTS")
  client_row "all, after" "\$1 >= $t_end" $(seq "$CLIENTS")
  say ""
  say "Origin bytes during the run: $(mib $(( $(origin_bytes) - o0 ))) MiB (each restarted node comes back empty and refetches its share)."
}

# ---------------------------------------------------------------- run
{
  echo
  echo "### Cluster across network namespaces, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  machine
  echo "Each node, the origin (nginx, 1 worker), etcd and $CLIENTS clients in its own network namespace,"
  echo "linked by veth pairs to one bridge; links shaped with tbf both ways: nodes $NODE_MBIT Mbit/s,"
  echo "origin $ORIGIN_MBIT Mbit/s, clients $CLIENT_MBIT Mbit/s each. No added delay (see below)."
  echo "Working set: $OBJECTS objects of $OBJ_MIB MiB, $(mib "$WS_BYTES") MiB; memory tier ${MEMORY_MIB} MiB per node, no disk"
  echo "tier; membership from etcd (lease_ttl 3 s), peer_timeout $PEER_TIMEOUT. Each client runs $STREAMS curl streams,"
  echo "each requesting every object in a random order per pass; client k uses node k mod N."
} > "$W/header.md"
cat "$W/header.md"
case $MODE in
  scale) scale ;;
  faults) fault_kill; fault_add; fault_etcd; fault_slow; fault_roll ;;
  all) scale; fault_kill; fault_add; fault_etcd; fault_slow; fault_roll ;;
  *) echo "usage: $0 [scale|faults|all]" >&2; exit 2 ;;
esac
stop_nodes; stop_etcd
if [ "${APPEND:-1}" = 1 ]; then cat "$W/header.md" "$RESULTS" >> bench/README.md; echo "appended to bench/README.md"; fi
