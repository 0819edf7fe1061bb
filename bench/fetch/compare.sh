#!/usr/bin/env bash
# `coropool fetch` beside wrk, curl --parallel and a bare libcurl multi loop (bench_bare_curl:
# the floor for any libcurl client, as it records nothing; in one process, and in two with 32
# connections each, the floor for -j 2) against nginx on loopback. Also
# worker::HttpClient alone in one process (bench_http_client), to tell where CPU goes:
#   F1: 50,000 distinct URLs of a 1 KiB file;  F2: 5,000 distinct URLs of a 100 KiB file;
# 64 connections in total for every client. coropool runs as -j 1 -c 64 and -j 2 -c 32.
# Also the floors of bench/fetch/floors.sh against nginx: the loop over curl's socket API
# (bench_bare_curl_socket, the floor issue 16 names) and the hand-off floor (that loop with
# coropool's per-transfer options, fed by a dispatcher process that writes a record a URL).
# Figures are requests/s, medians of RUNS runs (default 3), ratios against wrk, and each
# client's CPU per request (perf stat's task-clock over the client and its children).
# Usage: bench/fetch/compare.sh [RUNS]   (installs nginx, wrk, curl, perf; builds build-bench/)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
scripts/install-deps
source bench/fetch/common.sh  # install_packages, build_bench, rate, median
install_packages nginx-light wrk curl linux-perf
build_bench coropool_cli bench_bare_curl bench_bare_curl_socket bench_http_client
bin=$PWD/build-bench/cli/coropool
bare=$PWD/build-bench/bench/bench_bare_curl
sock=$PWD/build-bench/bench/bench_bare_curl_socket
client=$PWD/build-bench/bench/bench_http_client

work=$(mktemp -d)
# nginx's workers run as nobody when it is started as root: they must be able to read the
# files (a mktemp directory is 0700, and every answer was a 403).
chmod 755 "$work"
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/www" "$work/logs"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c 102400 /dev/urandom > "$work/www/100k.bin"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path $work/tmp;
  server { listen 127.0.0.1:$port; root $work/www; }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
cleanup() { kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

base="http://127.0.0.1:$port"
for ((i = 0; i < 50000; i++)); do echo "$base/1k.bin?i=$i"; done > "$work/1k.txt"
for ((i = 0; i < 5000; i++)); do echo "$base/100k.bin?i=$i"; done > "$work/100k.txt"
for f in 1k 100k; do
  sed 's/.*/url = "&"\noutput = "\/dev\/null"/' "$work/$f.txt" > "$work/$f.curl"
done

# One run: "requests/s CPU-µs-per-request user-µs sys-µs", the CPU taken by the command and
# every process it starts (perf stat's task-clock follows children; user and sys as perf
# reports them), over N requests and the command's wall time as perf stat times it (from its
# fork to its exit: perf's own start-up, some 30 ms here, is left out, as wrk's figure leaves
# out wrk's).
per_request() {
  awk -v n="$1" -v rate="$2" '/msec task-clock/ {ms = $1} /seconds user/ {u = $1} /seconds sys/ {s = $1}
    END {gsub(",", "", ms); printf "%f %f %f %f\n", rate, ms * 1000 / n, u * 1e6 / n, s * 1e6 / n}' "$work/perf.out"
}
measure() {
  local n=$1
  shift
  perf stat -e task-clock -o "$work/perf.out" "$@" >/dev/null 2>&1 </dev/null
  per_request "$n" "$(awk -v n="$n" '/seconds time elapsed/ {print n / $1}' "$work/perf.out")"
}
measure_wrk() {
  perf stat -e task-clock -o "$work/perf.out" wrk -t2 -c64 -d5s "$1" >"$work/wrk.out"
  per_request "$(awk '/requests in/ {print $1}' "$work/wrk.out")" "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# medians of the lines' fields: rate, CPU, user and kernel time per request
m() { printf '%s\n' "$@" | awk '{print $1}' | median; }
mc() { printf '%s\n' "$@" | awk '{print $2}' | median; }
mu() { printf '%s\n' "$@" | awk '{print $3}' | median; }
msys() { printf '%s\n' "$@" | awk '{print $4}' | median; }

declare -A res
clients=(wrk curl bare bare2 sock sock2 hand hand2 client o1 o2)
for size in 1k 100k; do
  n=$(wc -l < "$work/$size.txt")
  declare -A runs_of=()
  for ((i = 0; i < runs; i++)); do
    runs_of[wrk]+="$(measure_wrk "$base/$size.bin");"
    runs_of[curl]+="$(measure "$n" curl -s --parallel --parallel-max 64 -K "$work/$size.curl");"
    runs_of[bare]+="$(measure "$n" "$bare" "$work/$size.txt" 64);"
    runs_of[bare2]+="$(measure "$n" "$bare" "$work/$size.txt" 64 2);"
    runs_of[sock]+="$(measure "$n" "$sock" "$work/$size.txt" 64);"
    runs_of[sock2]+="$(measure "$n" "$sock" "$work/$size.txt" 64 2);"
    runs_of[hand]+="$(measure "$n" env BARE_AS_TOOL=1 BARE_HANDOFF=1 "$sock" "$work/$size.txt" 64);"
    runs_of[hand2]+="$(measure "$n" env BARE_AS_TOOL=1 BARE_HANDOFF=1 "$sock" "$work/$size.txt" 64 2);"
    runs_of[client]+="$(measure "$n" "$client" "$work/$size.txt" 64);"
    runs_of[o1]+="$(measure "$n" "$bin" fetch -j 1 -c 64 --no-progress "$work/$size.txt");"
    runs_of[o2]+="$(measure "$n" "$bin" fetch -j 2 -c 32 --no-progress "$work/$size.txt");"
  done
  for c in "${clients[@]}"; do
    IFS=';' read -r -a r <<<"${runs_of[$c]}"
    res[$size.$c]=$(m "${r[@]}")
    res[$size.$c.cpu]=$(mc "${r[@]}")
    res[$size.$c.user]=$(mu "${r[@]}")
    res[$size.$c.sys]=$(msys "${r[@]}")
  done
done

echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians, requests/s)"
printf '| %-20s | %-9s | %-10s | %-16s | %-17s | %-17s | %-17s | %-7s |\n' "requests/s" "wrk -c64" "curl -Z 64" \
  "bare libcurl -64" "bare libcurl 2x32" "coropool -j1 -c64" "coropool -j2 -c32" "target"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "----------------------" "-----------" "------------" "------------------" \
  "-------------------" "-------------------" "-------------------" "---------"
for size in 1k 100k; do
  target=">= 1.0x"; [ "$size" = 100k ] && target=">= 1.1x"
  label="F1 50,000 x 1 KiB"; [ "$size" = 100k ] && label="F2 5,000 x 100 KiB"
  awk -v l="$label" -v w="${res[$size.wrk]}" -v c="${res[$size.curl]}" -v f="${res[$size.bare]}" \
    -v f2="${res[$size.bare2]}" -v a="${res[$size.o1]}" -v b="${res[$size.o2]}" -v t="$target" 'BEGIN {
    printf "| %-20s | %-9.0f | %-10.0f | %-16s | %-17s | %-17s | %-17s | %-7s |\n", l, w, c,
      sprintf("%.0f (%.2fx)", f, f/w), sprintf("%.0f (%.2fx)", f2, f2/w), sprintf("%.0f (%.2fx)", a, a/w),
      sprintf("%.0f (%.2fx)", b, b/w), t }'
done
echo
echo "client CPU per request (µs, all of its processes, medians; nginx's own CPU not included):"
for size in 1k 100k; do
  printf '  %-5s wrk %.1f  curl %.1f  bare libcurl %.1f (2x32: %.1f)  HttpClient alone %.1f (%.0f/s)  coropool -j1 %.1f  coropool -j2 %.1f\n' \
    "$size" "${res[$size.wrk.cpu]}" "${res[$size.curl.cpu]}" "${res[$size.bare.cpu]}" "${res[$size.bare2.cpu]}" \
    "${res[$size.client.cpu]}" "${res[$size.client]}" "${res[$size.o1.cpu]}" "${res[$size.o2.cpu]}"
done
echo
# perf's user and sys times come from wait4, which counts the processes each client waited
# for: not coropool's workers, which its zygote starts, so coropool is left out here.
echo "user / kernel CPU per request (µs, medians; perf's user and sys times):"
for size in 1k 100k; do
  printf '  %-5s' "$size"
  for c in wrk curl bare bare2 client; do printf '  %s %.1f / %.1f' "$c" "${res[$size.$c.user]}" "${res[$size.$c.sys]}"; done
  echo
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "coropool as a share of the bare libcurl floor: -j1 of one process $(ratio "${res[1k.o1]}" "${res[1k.bare]}")" \
  "(1 KiB), $(ratio "${res[100k.o1]}" "${res[100k.bare]}") (100 KiB); -j2 of two processes" \
  "$(ratio "${res[1k.o2]}" "${res[1k.bare2]}") (1 KiB), $(ratio "${res[100k.o2]}" "${res[100k.bare2]}") (100 KiB)"
for size in 1k 100k; do
  awk -v z="$size" -v s="${res[$size.sock]}" -v s2="${res[$size.sock2]}" -v h="${res[$size.hand]}" \
    -v h2="${res[$size.hand2]}" -v a="${res[$size.o1]}" -v b="${res[$size.o2]}" 'BEGIN {
    printf "%s: socket-API floor %.0f/s (2x32: %.0f/s); hand-off floor %.0f (%.2f of it), %.0f (%.2f);", z, s, s2, h, h / s, h2, h2 / s2
    printf " coropool -j1 %.2f of the socket floor (%.2f of the hand-off floor), -j2 %.2f (%.2f)\n", a / s, a / h, b / s2, b / h2
  }'
done
