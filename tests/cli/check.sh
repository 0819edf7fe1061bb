# Sourced by the CLI tests: `check NAME CONDITION...` prints ok/FAIL and counts both;
# `report` prints the counts and fails when any check failed.
fails=0
passes=0
check() {
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; passes=$((passes + 1)); else echo "FAIL $name"; fails=$((fails + 1)); fi
}
report() {
  echo "$passes passed, $fails failed"
  test "$fails" -eq 0
}
