# Helpers shared by the bench scripts (sourced, not run). They expect THREADS, CONNS,
# DURATION and OUT to be set.

# run_wrk URL [wrk args...] → "req/s p99_ms"; errors in the run are reported on stderr.
run_wrk() {
  local url=$1; shift
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" > "$OUT/wrk.txt" 2>&1
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/wrk.txt")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$OUT/wrk.txt")
  if grep -q "Non-2xx\|Socket errors" "$OUT/wrk.txt"; then
    echo "warning: errors in run against $url $*:" >&2; grep "Non-2xx\|Socket errors" "$OUT/wrk.txt" >&2
  fi
  echo "$rps $p99"
}

# The median of the numbers on stdin.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ratio A B → A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# One line describing this machine, for the results.
machine() {
  local cpu
  cpu=$(awk -F: '/model name/ {gsub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo)
  echo "Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)."
}
