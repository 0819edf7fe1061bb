# Sourced by the fetch benchmarks: `rate COMMAND...` prints $urls / the command's wall time
# (requests/s; its output is dropped), `median` the median of the numbers on stdin,
# `install_packages PKG...` installs those of the Debian packages that are missing, and
# `build_bench TARGET...` builds those targets in the Release tree build-bench/.
rate() {
  local s e
  s=$(date +%s%N)
  "$@" > /dev/null 2>&1
  e=$(date +%s%N)
  echo $((urls * 1000000000 / (e - s)))
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
install_packages() {
  local need=() p sudo=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}
build_bench() {
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOROPOOL_BUILD_TESTS=OFF -DCOROPOOL_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build-bench -j"$(nproc)" --target "$@" >/dev/null
}
