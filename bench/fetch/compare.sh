#!/usr/bin/env bash
# `coropool fetch` beside wrk and curl --parallel against nginx on loopback, in one script:
#   F1: 50,000 distinct URLs of a 1 KiB file;  F2: 5,000 distinct URLs of a 100 KiB file;
# 64 connections in total for every client. coropool runs as -j 1 -c 64 and -j 2 -c 32.
# Figures are requests/s, medians of RUNS runs (default 3); ratios are coropool / wrk.
# Usage: bench/fetch/compare.sh [RUNS]   (installs nginx, wrk and curl; builds build-bench/)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
scripts/install-deps
need=()
for p in nginx-light wrk curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOROPOOL_BUILD_TESTS=OFF -DCOROPOOL_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target coropool_cli >/dev/null
bin=$PWD/build-bench/cli/coropool

work=$(mktemp -d)
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

# requests/s of one run: N URLs over the command's wall time
rps() {
  local n=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 </dev/null
  t1=$(date +%s.%N)
  echo "$n / ($t1 - $t0)" | bc -l
}
wrk_rps() { wrk -t2 -c64 -d5s "$1" | awk '/Requests\/sec/ {print $2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m() { printf '%s\n' "$@" | median; }

declare -A res
for size in 1k 100k; do
  n=$(wc -l < "$work/$size.txt")
  w=(); c=(); o1=(); o2=()
  for ((i = 0; i < runs; i++)); do
    w+=("$(wrk_rps "$base/$size.bin")")
    c+=("$(rps "$n" curl -s --parallel --parallel-max 64 -K "$work/$size.curl")")
    o1+=("$(rps "$n" "$bin" fetch -j 1 -c 64 --no-progress "$work/$size.txt")")
    o2+=("$(rps "$n" "$bin" fetch -j 2 -c 32 --no-progress "$work/$size.txt")")
  done
  res[$size.wrk]=$(m "${w[@]}"); res[$size.curl]=$(m "${c[@]}")
  res[$size.o1]=$(m "${o1[@]}"); res[$size.o2]=$(m "${o2[@]}")
done

echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians, requests/s)"
printf '| %-22s | %-10s | %-10s | %-18s | %-18s | %-8s |\n' "benchmark" "wrk -c64" "curl -Z 64" "coropool -j1 -c64" "coropool -j2 -c32" "target"
printf '|%s|%s|%s|%s|%s|%s|\n' "------------------------" "------------" "------------" "--------------------" "--------------------" "----------"
for size in 1k 100k; do
  target=">= 1.0x"; [ "$size" = 100k ] && target=">= 1.1x"
  label="F1 50,000 x 1 KiB"; [ "$size" = 100k ] && label="F2 5,000 x 100 KiB"
  awk -v l="$label" -v w="${res[$size.wrk]}" -v c="${res[$size.curl]}" -v a="${res[$size.o1]}" -v b="${res[$size.o2]}" -v t="$target" 'BEGIN {
    printf "| %-22s | %-10.0f | %-10.0f | %-18s | %-18s | %-8s |\n", l, w, c, sprintf("%.0f (%.2fx)", a, a/w), sprintf("%.0f (%.2fx)", b, b/w), t }'
done
