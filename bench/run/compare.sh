#!/usr/bin/env bash
# `coropool run` beside the floor, `xargs -P` (every job through sh -c) and GNU parallel, in
# one script:  R1: 5000 `true` jobs with 2 slots;  R2: 2000 `sleep 0.01` jobs with 64 slots.
# The floor (bench/run/floor.c) does only the essential work: as many loops of vfork + execv
# + waitpid as slots, no shell, no output capture, no scheduling. Two more floors add the least
# that a runner like coropool must do: "+capture" reads each job's stdout and stderr from
# pipes of their own; "+hand-off" also has a parent process hand each job to a loop over a
# socket and get its result back (one message each way). Every figure is the median of RUNS
# runs (default 3) of wall time; "of floor" is floor / coropool (1.0: at the floor), ratios
# to peers are peer / coropool.
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
cc -O2 -Wall -Wextra -o build-bench/run-floor bench/run/floor.c
floor=build-bench/run-floor

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

ours1=(); xa1=(); gp1=(); ours2=(); xa2=(); gp2=(); fl1=(); fl2=(); fc1=(); fc2=(); fs1=(); fs2=()
for ((i = 0; i < runs; i++)); do
  fl1+=("$(secs "$floor" 5000 2 /usr/bin/true)")
  fl2+=("$(secs "$floor" 2000 64 /bin/sleep 0.01)")
  fc1+=("$(secs "$floor" -c 5000 2 /usr/bin/true)")
  fc2+=("$(secs "$floor" -c 2000 64 /bin/sleep 0.01)")
  fs1+=("$(secs "$floor" -s 5000 2 /usr/bin/true)")
  fs2+=("$(secs "$floor" -s 2000 64 /bin/sleep 0.01)")
  ours1+=("$(secs "$bin" run -j 2 --no-progress "$work/true.txt")")
  xa1+=("$(secs xargs -a "$work/true.txt" -d '\n' -n 1 -P 2 sh -c)")
  gp1+=("$(secs parallel --will-cite -j 2 -a "$work/true.txt")")
  ours2+=("$(secs "$bin" run -j 64 --no-progress "$work/sleep.txt")")
  xa2+=("$(secs xargs -a "$work/sleep.txt" -d '\n' -n 1 -P 64 sh -c)")
  gp2+=("$(secs parallel --will-cite -j 64 -a "$work/sleep.txt")")
done
O1=$(m "${ours1[@]}"); X1=$(m "${xa1[@]}"); G1=$(m "${gp1[@]}"); F1=$(m "${fl1[@]}")
O2=$(m "${ours2[@]}"); X2=$(m "${xa2[@]}"); G2=$(m "${gp2[@]}"); F2=$(m "${fl2[@]}")
C1=$(m "${fc1[@]}"); C2=$(m "${fc2[@]}"); S1=$(m "${fs1[@]}"); S2=$(m "${fs2[@]}")

echo "date: $(date -u +%Y-%m-%d) machine: $(nproc) cores, runs: $runs (medians of wall time)"
printf '| %-27s | %-16s | %-16s | %-8s | %-16s | %-16s | %-8s | %-11s |\n' "benchmark" "coropool run" "floor" "of floor" "xargs -P (sh -c)" "GNU parallel" "vs xargs" "vs parallel"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "-----------------------------" "------------------" "------------------" "----------" "------------------" "------------------" "----------" "-------------"
row() {
  awk -v name="$1" -v n="$2" -v o="$3" -v f="$4" -v x="$5" -v g="$6" 'BEGIN {
    printf "| %-27s | %-16s | %-16s | %-8s | %-16s | %-16s | %-8s | %-11s |\n", name, sprintf("%.2f s %.0f/s", o, n/o),
      sprintf("%.2f s %.0f/s", f, n/f), sprintf("%.2f", f/o), sprintf("%.2f s %.0f/s", x, n/x),
      sprintf("%.2f s %.0f/s", g, n/g), sprintf("%.2fx", x/o), sprintf("%.1fx", g/o) }'
}
row "R1 5000 x true, -j2" 5000 "$O1" "$F1" "$X1" "$G1"
row "R2 2000 x sleep 0.01, -j64" 2000 "$O2" "$F2" "$X2" "$G2"
echo
printf '| %-27s | %-16s | %-16s | %-16s | %-16s | %-12s | %-14s |\n' "the floors" "floor" "+capture" "+hand-off" "coropool run" "of +capture" "of +hand-off"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "-----------------------------" "------------------" "------------------" "------------------" "------------------" "--------------" "----------------"
floors() {
  awk -v name="$1" -v f="$2" -v c="$3" -v s="$4" -v o="$5" 'BEGIN {
    printf "| %-27s | %-16s | %-16s | %-16s | %-16s | %-12s | %-14s |\n", name, sprintf("%.2f s", f),
      sprintf("%.2f s (%.2f)", c, f/c), sprintf("%.2f s (%.2f)", s, f/s), sprintf("%.2f s (%.2f)", o, f/o),
      sprintf("%.2f", c/o), sprintf("%.2f", s/o) }'
}
floors "R1" "$F1" "$C1" "$S1" "$O1"
floors "R2" "$F2" "$C2" "$S2" "$O2"
echo "(in parentheses: of the floor)"
echo "targets (issue 15): both >= 0.90 of the floor and >= 5x GNU parallel"
