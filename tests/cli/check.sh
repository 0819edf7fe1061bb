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
# `refused NAME TEXT COMMAND...`: the command (stdin empty) exits 2 with a short message on
# stderr that holds TEXT (the option or input it names).
refused() {
  local name=$1 text=$2 err
  shift 2
  err=$("$@" 2>&1 < /dev/null > /dev/null)
  local rc=$?
  check "refused, naming it: $name" test "$rc" -eq 2 -a -n "$(grep -F -- "$text" <<<"$err")"
  check "and short: $name" test "${#err}" -lt 300
}
# `start_server PATH/TO/http_server.py`: the loopback test server; sets $server (its pid),
# $port and $base. The caller kills $server on exit.
start_server() {
  exec 5< <(exec python3 "$1" 0)  # the server, read for its port
  server=$!
  read -r -t 20 _ port <&5
  base="http://127.0.0.1:$port"
}
# `against_curl PATH/TO/coropool PATH/TO/http_server.py`, for the tests that take curl as the
# oracle: skips (exit 77) without curl; sets $bin and $dir (removed at exit) and starts the
# test server ($server, $port, $base; killed at exit).
against_curl() {
  command -v curl > /dev/null || { echo "curl missing: run scripts/install-deps"; exit 77; }
  bin=$(readlink -f "$1")
  dir=$(mktemp -d)
  server=""
  trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
  start_server "$2"
}
# `field NAME` and `errcode`: from fetch records on stdin, each record's NAME, or its error code
# (None when it has none), a line each.
field() { python3 -c 'import json,sys; [print(json.loads(l).get(sys.argv[1])) for l in sys.stdin]' "$1"; }
errcode() { python3 -c 'import json,sys; [print((json.loads(l)["error"] or {}).get("code")) for l in sys.stdin]'; }
