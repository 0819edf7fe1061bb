#!/usr/bin/env bash
# The libcurl floors side by side, and coropool against them: 50,000 URLs from
# bench_delay_server answering at once (0 ms). bench_bare_curl drives curl with
# curl_multi_poll; bench_bare_curl_socket with curl's socket API over epoll
# (curl_multi_socket_action, registrations changed only when curl's wishes change), the design
# coropool's HttpClient uses and the floor issue 16 names. "as the tool": the same socket loop
# with the options coropool fetch gives every transfer by default (timeouts, redirects, the
# User-Agent header; BARE_AS_TOOL=1). "hand-off": that loop in worker processes fed by a
# dispatcher process over socket pairs, which writes a JSON line per record (BARE_HANDOFF=1):
# the design of coropool fetch (a supervisor and workers) done in plain C, its floor.
# bench_http_client: coropool's HttpClient alone, no pool.
# One process with 64 connections, then two processes of 32 each (-j2 -c32). Figures are
# requests/s from wall time, medians of RUNS runs (default 3), every client in the same loop.
# Usage: bench/fetch/floors.sh [RUNS]   (builds build-bench/)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
urls=50000
scripts/install-deps
source bench/fetch/common.sh  # build_bench, rate, median
build_bench coropool_cli bench_bare_curl bench_bare_curl_socket bench_delay_server bench_http_client
work=$(mktemp -d)
exec 5< <(exec build-bench/bench/bench_delay_server 0 0)
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
read -r -t 20 _ port <&5
for ((i = 0; i < urls; i++)); do echo "http://127.0.0.1:$port/item/$i"; done > "$work/urls.txt"
names=(poll socket tool hand client coropool poll2 socket2 tool2 hand2 coropool2)
declare -A got
for ((r = 0; r < runs; r++)); do
  got[poll]+="$(rate build-bench/bench/bench_bare_curl "$work/urls.txt" 64) "
  got[socket]+="$(rate build-bench/bench/bench_bare_curl_socket "$work/urls.txt" 64) "
  got[tool]+="$(BARE_AS_TOOL=1 rate build-bench/bench/bench_bare_curl_socket "$work/urls.txt" 64) "
  got[hand]+="$(BARE_AS_TOOL=1 BARE_HANDOFF=1 rate build-bench/bench/bench_bare_curl_socket "$work/urls.txt" 64) "
  got[client]+="$(rate build-bench/bench/bench_http_client "$work/urls.txt" 64) "
  got[coropool]+="$(rate build-bench/cli/coropool fetch -j1 -c64 "$work/urls.txt") "
  got[poll2]+="$(rate build-bench/bench/bench_bare_curl "$work/urls.txt" 64 2) "
  got[socket2]+="$(rate build-bench/bench/bench_bare_curl_socket "$work/urls.txt" 64 2) "
  got[tool2]+="$(BARE_AS_TOOL=1 rate build-bench/bench/bench_bare_curl_socket "$work/urls.txt" 64 2) "
  got[hand2]+="$(BARE_AS_TOOL=1 BARE_HANDOFF=1 rate build-bench/bench/bench_bare_curl_socket "$work/urls.txt" 64 2) "
  got[coropool2]+="$(rate build-bench/cli/coropool fetch -j2 -c32 "$work/urls.txt") "
done
declare -A m
for n in "${names[@]}"; do m[$n]=$(tr ' ' '\n' <<< "${got[$n]}" | grep . | median); done
echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians, requests/s)"
for n in "${names[@]}"; do echo "  $n: ${got[$n]}"; done
echo "| 50,000 URLs, 0 ms server | one process, 64 connections | of the socket floor | two processes, 32 each | of the socket floor |"
echo "|---|---|---|---|---|"
row() {  # label, key of one process, key of two ("" for none)
  awk -v l="$1" -v a="${m[$2]}" -v s="${m[socket]}" -v b="${3:+${m[$3]}}" -v s2="${m[socket2]}" 'BEGIN {
    two = b == "" ? "| - | -" : sprintf("| %d | %.2f", b, b / s2)
    printf "| %s | %d | %.2f %s |\n", l, a, a / s, two
  }'
}
row "floor: curl_multi_poll loop" poll poll2
row "floor: curl socket API over epoll" socket socket2
row "the socket floor with coropool's per-transfer options" tool tool2
row "the same, handed its URLs by a dispatcher process that writes the records" hand hand2
row "HttpClient alone, no pool (bench_http_client)" client ""
row "coropool fetch (-j1 -c64, -j2 -c32)" coropool coropool2
awk -v a="${m[coropool]}" -v h="${m[hand]}" -v b="${m[coropool2]}" -v h2="${m[hand2]}" 'BEGIN {
  printf "coropool fetch of the hand-off floor: -j1 %.2f, -j2 %.2f\n", a / h, b / h2
}'
