# Sourced by the fetch benchmarks: `rate COMMAND...` prints $urls / the command's wall time
# (requests/s; its output is dropped), `median` the median of the numbers on stdin.
rate() {
  local s e
  s=$(date +%s%N)
  "$@" > /dev/null 2>&1
  e=$(date +%s%N)
  echo $((urls * 1000000000 / (e - s)))
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
