#!/usr/bin/env bash
# Core runtime benchmarks B1-B5 beside their peers, in one script: every figure is the median
# of RUNS runs (default 5), and every ratio compares runs made by this same script.
# Usage: bench/run.sh [RUNS]   (builds a Release tree in build-bench/ first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$runs" -ge 3 ] || { echo "RUNS must be at least 3" >&2; exit 2; }

scripts/install-deps
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOROPOOL_BUILD_TESTS=OFF -DCOROPOOL_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target bench_pool >/dev/null
bin=build-bench/bench/bench_pool

# value of field 2 of the output line
val() { "$@" | awk '{print $2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

b1=(); b1c=(); py=(); b2=(); pp=(); b2s=(); pps=(); b3=(); c1=(); c2=(); b5=(); b6=()
for ((i = 0; i < runs; i++)); do
  py+=("$(val python3 bench/python_map.py 1000000)")
  b1+=("$(val "$bin" map 1000000)")
  b1c+=("$(val "$bin" map_async 1000000)")
  # B2 and its floor pinned alike: the caller on CPU 0 and the other end on CPU 1 (split), and
  # both on CPU 0 (same), where the floor is the kernel's alone and the rest is our CPU time.
  pp+=("$(val "$bin" pingpong split 20000)")
  b2+=("$(val "$bin" apply split 5000)")
  pps+=("$(val "$bin" pingpong same 20000)")
  b2s+=("$(val "$bin" apply same 5000)")
  b3+=("$(val "$bin" async 10000)")
  c1+=("$(val "$bin" cpu 1 200)")
  c2+=("$(val "$bin" cpu 2 200)")
  b5+=("$(val "$bin" imap 10000000)")
  b6+=("$(val "$bin" naps 400)")
done

m() { printf '%s\n' "$@" | median; }
B1=$(m "${b1[@]}"); B1C=$(m "${b1c[@]}"); PY=$(m "${py[@]}"); B2=$(m "${b2[@]}"); PP=$(m "${pp[@]}")
B2S=$(m "${b2s[@]}"); PPS=$(m "${pps[@]}")
B3=$(m "${b3[@]}"); C1=$(m "${c1[@]}"); C2=$(m "${c2[@]}"); B5=$(m "${b5[@]}")
B6=$(m "${b6[@]}"); B6MAX=$(printf '%s\n' "${b6[@]}" | sort -g | tail -1)

echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians)"
printf '| %-40s | %-18s | %-22s | %-16s | %-10s |\n' "benchmark" "coropool" "peer (same run)" "ratio" "target"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------------" "--------------------" "------------------------" "------------------" "------------"
awk -v b1="$B1" -v b1c="$B1C" -v py="$PY" -v b2="$B2" -v pp="$PP" -v b2s="$B2S" -v pps="$PPS" -v b3="$B3" -v c1="$C1" -v c2="$C2" -v b5="$B5" -v b6="$B6" -v b6max="$B6MAX" 'BEGIN {
  printf "| %-40s | %-18s | %-22s | %-16s | %-10s |\n", "B1 map 1M trivial ints, 2 processes", sprintf("%.2fM jobs/s", b1/1e6), sprintf("Python %.2fM jobs/s", py/1e6), sprintf("%.2fx", b1/py), ">= 5x"
  printf "| %-40s | %-18s | %-22s | %-16s | %-10s |\n", "B1c the same, coroutine task", sprintf("%.2fM jobs/s", b1c/1e6), sprintf("Python %.2fM jobs/s", py/1e6), sprintf("%.2fx", b1c/py), ">= 2x"
  printf "| %-40s | %-18s | %-22s | %-16s | %-10s |\n", "B2 sequential apply round trip, 2 CPUs", sprintf("%.1f us", b2), sprintf("socketpair %.1f us", pp), sprintf("%.2fx floor", b2/pp), "<= 1.5x"
  printf "| %-40s | %-18s | %-22s | %-16s | %-10s |\n", "B2 the same, both ends on one CPU", sprintf("%.1f us", b2s), sprintf("socketpair %.1f us", pps), sprintf("%.2fx floor", b2s/pps), "-"
  printf "| %-40s | %-18s | %-22s | %-16s | %-10s |\n", "B3 10k async_apply in flight", sprintf("%.0fk jobs/s", b3/1e3), "-", "-", ">= 1M/s"
  printf "| %-40s | %-18s | %-22s | %-16s | %-10s |\n", "B4 200 x 20 ms CPU jobs, 2 vs 1 process", sprintf("%.2f s", c2), sprintf("1 process %.2f s", c1), sprintf("%.2fx speed-up", c1/c2), ">= 1.8x"
  printf "| %-40s | %-18s | %-22s | %-16s | %-10s |\n", "B5 imap_unordered 10M lazy ints, peak RSS", sprintf("%.1f MiB", b5), "-", "-", "<= 64 MiB"
  printf "| %-40s | %-18s | %-22s | %-16s | %-10s |\n", "B6 400 x 50 ms coroutine naps, 4x8 slots", sprintf("%.3fx ideal", b6), sprintf("worst run %.3fx", b6max), "-", "<= 1.15x"
}'
