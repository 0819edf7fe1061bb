#!/usr/bin/env bash
# `coropool fetch` over https beside `curl --parallel`, against nginx on loopback with a
# P-256 certificate made here (what a modern server offers; an RSA key only moves CPU to
# the server's side of each handshake):
#   T1: 10,000 distinct 1 KiB URLs over HTTP/2: transfers multiplexed on few connections, so
#       TLS costs record encryption and HTTP/2 framing, and handshakes are few;
#   T2: the same URLs over HTTP/1.1 from a server that closes every connection after one
#       answer (keepalive_timeout 0): a TLS handshake per request, where more cores pay.
# 64 transfers at a time for every client: coropool -j1 -c64 and -j2 -c32, curl
# --parallel-max 64. nginx runs two worker processes, so that the server is not held to one
# core while the clients use two. Figures are requests/s from wall time, medians of RUNS
# runs (default 3). Usage: bench/fetch/tls.sh [RUNS]   (installs nginx, curl, openssl;
# builds build-bench/)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
urls=10000
scripts/install-deps
source bench/fetch/common.sh  # install_packages, build_bench, rate, median
install_packages nginx-light curl openssl
build_bench coropool_cli
bin=$PWD/build-bench/cli/coropool

work=$(mktemp -d)
# nginx's workers run as nobody when it is started as root: they must be able to read the
# files (a mktemp directory is 0700, and every answer was a 403).
chmod 755 "$work"
nginx_pid=""
trap '[ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mkdir -p "$work/www" "$work/logs" "$work/tmp"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
h2_port=$(free_port)
h1_port=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/tmp;
  ssl_certificate $work/cert.pem;
  ssl_certificate_key $work/key.pem;
  server { listen 127.0.0.1:$h2_port ssl http2; root $work/www; }
  server { listen 127.0.0.1:$h1_port ssl; keepalive_timeout 0; root $work/www; }
}
CONF
# nginx returns once its master listens; connections wait in the backlog until a worker
# takes them, so there is nothing to wait for.
nginx -c "$work/nginx.conf" -p "$work"
nginx_pid=$(cat "$work/nginx.pid")

for ((i = 0; i < urls; i++)); do echo "https://localhost:$h2_port/1k.bin?i=$i"; done > "$work/t1.txt"
sed "s/:$h2_port/:$h1_port/" "$work/t1.txt" > "$work/t2.txt"
for t in t1 t2; do sed 's/.*/url = "&"\noutput = "\/dev\/null"/' "$work/$t.txt" > "$work/$t.curl"; done
# Every answer must be a 200, or the rates would count failures as work.
check() {
  local n
  n=$("$bin" fetch -j1 -c64 --cacert "$work/cert.pem" "$work/$1.txt" 2>"$work/err" | grep -c '"status":200' || true)
  [ "$n" -eq "$urls" ] || { echo "$1: only $n of $urls answered 200" >&2; cat "$work/err" >&2; exit 1; }
}
check t1
check t2

declare -A res
for t in t1 t2; do
  h=(); [ "$t" = t2 ] && h=(--http1.1)
  c=(); a=(); b=()
  for ((r = 0; r < runs; r++)); do
    c+=("$(rate curl -s "${h[@]}" --parallel --parallel-max 64 --cacert "$work/cert.pem" -K "$work/$t.curl")")
    a+=("$(rate "$bin" fetch "${h[@]}" -j1 -c64 --no-progress --cacert "$work/cert.pem" "$work/$t.txt")")
    b+=("$(rate "$bin" fetch "${h[@]}" -j2 -c32 --no-progress --cacert "$work/cert.pem" "$work/$t.txt")")
  done
  res[$t.curl]=$(printf '%s\n' "${c[@]}" | median)
  res[$t.j1]=$(printf '%s\n' "${a[@]}" | median)
  res[$t.j2]=$(printf '%s\n' "${b[@]}" | median)
  echo "$t runs: curl ${c[*]}; -j1 ${a[*]}; -j2 ${b[*]}" >&2
done

echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians, requests/s)"
echo "| 10,000 x 1 KiB over https | curl -Z 64 | coropool -j1 -c64 | coropool -j2 -c32 | -j2 / -j1 |"
echo "|---|---|---|---|---|"
for t in t1 t2; do
  label="T1 HTTP/2, multiplexed"; [ "$t" = t2 ] && label="T2 HTTP/1.1, a handshake per request"
  awk -v l="$label" -v c="${res[$t.curl]}" -v a="${res[$t.j1]}" -v b="${res[$t.j2]}" 'BEGIN {
    printf "| %s | %d | %d (%.2fx curl) | %d (%.2fx curl) | %.2f |\n", l, c, a, a / c, b, b / c, b / a }'
done
