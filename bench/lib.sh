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

# self_signed DIR → DIR/cert.pem and DIR/key.pem: an ECDSA P-256 certificate for localhost.
self_signed() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

# The directives of a TLS server block using DIR's certificate: TLS 1.2 and 1.3 (nginx 1.22
# offers only 1.2 unless told), a shared session cache.
nginx_tls() {
  echo "ssl_certificate $1/cert.pem; ssl_certificate_key $1/key.pem;"
  echo "ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;"
}

# A location proxying to the anchors' origin (upstream "up") with keep-alive.
NGINX_PROXY='location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }'

# start_nginx DIR HTTP → an nginx of its own (2 workers, pid in DIR/nginx.pid) whose http block
# has the anchors' origin as upstream "up" with keep-alive, then HTTP (its servers).
start_nginx() {
  cat > "$1/nginx.conf" <<CONF
worker_processes 2;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream up { server 127.0.0.1:9000; keepalive 64; }
$2
}
CONF
  nginx -c "$1/nginx.conf"
}

# kura_tls_config DIR FILE [EXTRA] → FILE: a kura configuration with a TLS listener on
# 127.0.0.1:8444 (DIR's certificate) proxying every host to the anchors' origin; EXTRA (TOML
# placed first, e.g. another listener) is optional.
kura_tls_config() {
  cat > "$2" <<CONF
${3:-}
[[listeners]]
address = "127.0.0.1:8444"
[[listeners.tls.certificates]]
cert = "$1/cert.pem"
key = "$1/key.pem"
[pools.origin]
backends = ["http://127.0.0.1:9000"]
[[vhosts]]
hosts = ["*"]
pool = "origin"
CONF
}
