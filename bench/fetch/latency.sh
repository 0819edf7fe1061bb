#!/usr/bin/env bash
# L1: `coropool fetch` where latency rules. A loopback server of our own (bench_delay_server)
# answers every request after 100 ms; 20,000 distinct URLs go through 1,000 connections in all,
# so the ideal is 10,000 requests/s whatever the client's CPU. Beside coropool -j2 -c500, the
# floor for any libcurl client: bench_bare_curl, a bare multi loop in two processes of 500
# connections each. Figures are requests/s from the wall time of the whole command (start-up
# included), medians of RUNS runs (default 3), as shares of the ideal and of the floor.
# Usage: bench/fetch/latency.sh [RUNS]   (builds build-bench/)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
urls=20000
scripts/install-deps
source bench/fetch/common.sh  # build_bench, rate, median
build_bench coropool_cli bench_bare_curl bench_delay_server
bin=$PWD/build-bench/cli/coropool
bare=$PWD/build-bench/bench/bench_bare_curl
work=$(mktemp -d)
exec 5< <(exec build-bench/bench/bench_delay_server 0 100)
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
read -r -t 20 _ port <&5
for ((i = 0; i < urls; i++)); do echo "http://127.0.0.1:$port/item/$i"; done > "$work/urls.txt"
ulimit -n "$(ulimit -Hn)"  # 1,000 connections and the server's side of them

c=(); f=()
for ((r = 0; r < runs; r++)); do
  f+=("$(rate "$bare" "$work/urls.txt" 1000 2)")
  c+=("$(rate "$bin" fetch -j2 -c500 "$work/urls.txt")")
done
C=$(printf '%s\n' "${c[@]}" | median)
F=$(printf '%s\n' "${f[@]}" | median)
echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians); runs: coropool ${c[*]}, floor ${f[*]}"
printf '| %-44s | %-14s | %-14s | %-14s |\n' "L1: 20,000 URLs, 100 ms each, 1,000 connections" "requests/s" "of the ideal" "of the floor"
printf '|%s|%s|%s|%s|\n' "----------------------------------------------" "----------------" "----------------" "----------------"
awk -v c="$C" -v f="$F" 'BEGIN {
  printf "| %-44s | %-14d | %-14s | %-14s |\n", "coropool fetch -j2 -c500", c, sprintf("%.2f", c / 10000), sprintf("%.2f", c / f)
  printf "| %-44s | %-14d | %-14s | %-14s |\n", "floor: bare libcurl multi loop, 2 x 500", f, sprintf("%.2f", f / 10000), "1.00"
}'
