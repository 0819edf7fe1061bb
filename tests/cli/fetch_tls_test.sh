#!/usr/bin/env bash
# `coropool fetch` over https against nginx on 127.0.0.1 with a certificate made here, for
# "localhost": verification (with --cacert, and failing without it), and HTTP/2 with many
# transfers multiplexed on few connections.
# Usage: fetch_tls_test.sh PATH/TO/coropool   (needs nginx and openssl: scripts/install-deps)
set -u
bin=$(readlink -f "$1")
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx_bin" ] || ! command -v openssl >/dev/null; then
  echo "nginx or openssl missing: run scripts/install-deps"
  exit 77  # skipped
fi
source "$(dirname "$0")/check.sh"
dir=$(mktemp -d)
nginx_pid=""
trap '[ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null; rm -rf "$dir"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
mkdir -p "$dir/logs" "$dir/tmp"
# A free port: bind 0 and read it back.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
h2c_port=$(free_port)
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 256; }
http {
  log_format c '\$connection \$server_protocol \$status';
  access_log $dir/logs/access.log c;
  client_body_temp_path $dir/tmp;
  server {
    listen 127.0.0.1:$port ssl http2;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    location / { return 200 "ok\n"; }
  }
  server {
    listen 127.0.0.1:$h2c_port http2;
    location / { return 200 "ok\n"; }
  }
}
CONF
# As a daemon: the command returns once the master listens (connections wait in the
# backlog until its worker takes them), so no wait for readiness is needed.
"$nginx_bin" -c "$dir/nginx.conf" -p "$dir" || { echo "nginx did not start"; cat "$dir/logs/error.log"; exit 1; }
nginx_pid=$(cat "$dir/nginx.pid")

for i in $(seq 1 200); do echo "https://localhost:$port/x?$i"; done > "$dir/urls.txt"
"$bin" fetch -j 1 -c 32 --cacert "$dir/cert.pem" "$dir/urls.txt" > "$dir/out.jsonl" 2> "$dir/err.txt"
rc=$?
check "https with --cacert: exit 0" test "$rc" -eq 0
check "200 answers" test "$(field status < "$dir/out.jsonl" | sort | uniq -c | awk '{print $1 ":" $2}')" = "200:200"
check "all over HTTP/2" test "$(awk '{print $2}' "$dir/logs/access.log" | sort | uniq -c | awk '{print $1 ":" $2}')" = \
  "200:HTTP/2.0"
conns=$(awk '{print $1}' "$dir/logs/access.log" | sort -u | wc -l)
check "multiplexed: 200 requests, 32 at a time, on at most 4 connections (got $conns)" test "$conns" -le 4

# Without --cacert every handshake fails. A failed verification costs the client a while
# (18 ms here, 120 ms under ThreadSanitizer), and the transfers must not queue behind each
# other's connections: curl sent a transfer that waited for a connection to multiplex on
# to the back of the queue whenever another started one first, so behind a failing host
# some waited past their timeout and were recorded as timeouts. The timeout is set from the
# cost measured here: 4 times what a transfer needs when 8 run at a time, far below what
# the 160 of them take in all.
head -16 "$dir/urls.txt" > "$dir/sample.txt"
t0=$(date +%s%N)
"$bin" fetch -j 1 -c 1 "$dir/sample.txt" > "$dir/sample.jsonl" 2>/dev/null
each_ms=$((($(date +%s%N) - t0) / 16000000))
timeout_s=$(python3 -c "print(max(1.0, 4 * 8 * $each_ms / 1000))")
head -160 "$dir/urls.txt" > "$dir/some.txt"
"$bin" fetch -j 1 -c 8 --timeout "$timeout_s" "$dir/some.txt" > "$dir/untrusted.jsonl" 2>/dev/null
check "without it the certificate is refused: exit 1" test $? -eq 1
check "every record says tls, none timed out waiting ($each_ms ms a handshake, --timeout $timeout_s)" \
  test "$(errcode < "$dir/untrusted.jsonl" | sort | uniq -c | awk '{print $1 ":" $2}')" = "160:tls"
# -k as curl means it: the same self-signed server answers; --keep-order is its long name.
"$bin" fetch -j 1 -k --keep-order "$dir/some.txt" > "$dir/insecure.jsonl" 2>/dev/null
check "-k/--insecure: no verification, 160 answers in order (exit $?)" \
  test "$(field status < "$dir/insecure.jsonl" | sort | uniq -c | awk '{print $1 ":" $2}'),$(field line < "$dir/insecure.jsonl" | tr '\n' ' ')" = \
  "160:200,$(seq 1 160 | tr '\n' ' ')"
"$bin" fetch -j 1 --insecure "$dir/some.txt" 2>/dev/null | field status | sort -u > "$dir/insecure_long"
check "--insecure, the long name" test "$(cat "$dir/insecure_long")" = 200
# --http1.1 over https, and --http2-prior-knowledge to a plaintext HTTP/2 (h2c) listener.
before=$(wc -l < "$dir/logs/access.log")
head -5 "$dir/urls.txt" | "$bin" fetch --http1.1 --cacert "$dir/cert.pem" - > /dev/null 2>&1
check "--http1.1 over https speaks HTTP/1.1" \
  test "$(tail -n +$((before + 1)) "$dir/logs/access.log" | awk '{print $2}' | sort | uniq -c | awk '{print $1 ":" $2}')" = "5:HTTP/1.1"
before=$(wc -l < "$dir/logs/access.log")
for i in 1 2 3; do echo "http://127.0.0.1:$h2c_port/c?$i"; done | "$bin" fetch --http2-prior-knowledge - 2> /dev/null |
  field status > "$dir/h2c"
check "--http2-prior-knowledge: h2c answers" test "$(sort -u "$dir/h2c")" = 200
check "over HTTP/2" \
  test "$(tail -n +$((before + 1)) "$dir/logs/access.log" | awk '{print $2}' | sort | uniq -c | awk '{print $1 ":" $2}')" = "3:HTTP/2.0"
"$bin" fetch --http1.1 --http2-prior-knowledge "$dir/urls.txt" > /dev/null 2>&1
check "both at once is exit 2" test $? -eq 2
"$bin" fetch --cacert "$dir/missing.pem" "$dir/urls.txt" 2> "$dir/e.txt" > /dev/null
check "an unreadable --cacert is exit 2" test $? -eq 2
check "naming it" grep -q "missing.pem" "$dir/e.txt"
report
