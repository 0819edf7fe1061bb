#!/usr/bin/env bash
# The two libcurl floors side by side, and coropool against both: 50,000 URLs from
# bench_delay_server answering at once (0 ms), 64 connections, one process. bench_bare_curl
# drives curl with curl_multi_poll; bench_bare_curl_socket with curl's socket API over epoll
# (curl_multi_socket_action, registrations changed only when curl's wishes change), the
# design coropool's HttpClient uses. Figures are requests/s from wall time, medians of RUNS
# runs (default 3). Usage: bench/fetch/floors.sh [RUNS]   (builds build-bench/)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
urls=50000
scripts/install-deps
source bench/fetch/common.sh  # build_bench, rate, median
build_bench coropool_cli bench_bare_curl bench_bare_curl_socket bench_delay_server
work=$(mktemp -d)
exec 5< <(exec build-bench/bench/bench_delay_server 0 0)
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
read -r -t 20 _ port <&5
for ((i = 0; i < urls; i++)); do echo "http://127.0.0.1:$port/item/$i"; done > "$work/urls.txt"
p=(); k=(); c=()
for ((r = 0; r < runs; r++)); do
  p+=("$(rate build-bench/bench/bench_bare_curl "$work/urls.txt" 64)")
  k+=("$(rate build-bench/bench/bench_bare_curl_socket "$work/urls.txt" 64)")
  c+=("$(rate build-bench/cli/coropool fetch -j1 -c64 "$work/urls.txt")")
done
P=$(printf '%s\n' "${p[@]}" | median); K=$(printf '%s\n' "${k[@]}" | median); C=$(printf '%s\n' "${c[@]}" | median)
echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians, requests/s)"
echo "| 50,000 URLs, 0 ms server, 64 connections | requests/s | coropool's share |"
echo "|---|---|---|"
awk -v p="$P" -v k="$K" -v c="$C" 'BEGIN {
  printf "| floor: curl_multi_poll loop | %d | %.2f |\n", p, c / p
  printf "| floor: curl socket API over epoll | %d | %.2f |\n", k, c / k
  printf "| coropool fetch -j1 -c64 | %d | 1.00 |\n", c
}'
