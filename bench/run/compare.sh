#!/usr/bin/env bash
# `coropool run` beside `xargs -P` (every job through sh -c) and GNU parallel, in one script:
#   R1: 5000 `true` jobs with 2 slots;  R2: 2000 `sleep 0.01` jobs with 64 slots.
# Every figure is the median of RUNS runs (default 3) of wall time; ratios are peer / coropool.
# Usage: bench/run/compare.sh [RUNS]   (builds a Release tree in build-bench/ first)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
[ "$runs" -ge 1 ] || { echo "RUNS must be at least 1" >&2; exit 2; }

scripts/install-deps
if ! command -v parallel >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends parallel >/dev/null
fi
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOROPOOL_BUILD_TESTS=OFF -DCOROPOOL_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target coropool_cli >/dev/null
bin=build-bench/cli/coropool

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for ((i = 0; i < 5000; i++)); do echo true; done >"$work/true.txt"
for ((i = 0; i < 2000; i++)); do echo "sleep 0.01"; done >"$work/sleep.txt"

# wall seconds of a command, its output discarded
secs() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 </dev/null || true
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m() { printf '%s\n' "$@" | median; }

ours1=(); xa1=(); gp1=(); ours2=(); xa2=(); gp2=()
for ((i = 0; i < runs; i++)); do
  ours1+=("$(secs "$bin" run -j 2 --no-progress "$work/true.txt")")
  xa1+=("$(secs xargs -a "$work/true.txt" -d '\n' -n 1 -P 2 sh -c)")
  gp1+=("$(secs parallel --will-cite -j 2 -a "$work/true.txt")")
  ours2+=("$(secs "$bin" run -j 64 --no-progress "$work/sleep.txt")")
  xa2+=("$(secs xargs -a "$work/sleep.txt" -d '\n' -n 1 -P 64 sh -c)")
  gp2+=("$(secs parallel --will-cite -j 64 -a "$work/sleep.txt")")
done
O1=$(m "${ours1[@]}"); X1=$(m "${xa1[@]}"); G1=$(m "${gp1[@]}")
O2=$(m "${ours2[@]}"); X2=$(m "${xa2[@]}"); G2=$(m "${gp2[@]}")

echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians of wall time)"
printf '| %-30s | %-18s | %-18s | %-18s | %-9s | %-9s |\n' "benchmark" "coropool run" "xargs -P (sh -c)" "GNU parallel" "vs xargs" "vs parallel"
printf '|%s|%s|%s|%s|%s|%s|\n' "--------------------------------" "--------------------" "--------------------" "--------------------" "-----------" "-------------"
awk -v o="$O1" -v x="$X1" -v g="$G1" 'BEGIN {
  printf "| %-30s | %-18s | %-18s | %-18s | %-9s | %-9s |\n", "R1 5000 x true, -j2", sprintf("%.2f s %.0f/s", o, 5000/o), sprintf("%.2f s %.0f/s", x, 5000/x), sprintf("%.2f s %.0f/s", g, 5000/g), sprintf("%.2fx", x/o), sprintf("%.1fx", g/o) }'
awk -v o="$O2" -v x="$X2" -v g="$G2" 'BEGIN {
  printf "| %-30s | %-18s | %-18s | %-18s | %-9s | %-9s |\n", "R2 2000 x sleep 0.01, -j64", sprintf("%.2f s %.0f/s", o, 2000/o), sprintf("%.2f s %.0f/s", x, 2000/x), sprintf("%.2f s %.0f/s", g, 2000/g), sprintf("%.2fx", x/o), sprintf("%.1fx", g/o) }'
echo "targets: R1 >= 1.7x xargs, R2 >= 1.8x xargs, both >= 5x GNU parallel"
