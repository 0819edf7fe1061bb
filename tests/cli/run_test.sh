#!/usr/bin/env bash
# End-to-end checks of `coropool run` as a user runs it. Usage: run_test.sh PATH/TO/coropool
set -u
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
check() {  # check NAME CONDITION...
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

printf 'echo one\n\necho two; exit 3\nno-such-cmd-coropool\n   \necho "$COROPOOL_SEQ"\n' > "$dir/jobs.txt"
"$bin" run -k --joblog "$dir/log.tsv" "$dir/jobs.txt" > "$dir/out.txt" 2> "$dir/err.txt"
rc=$?
check "exit status counts failed jobs" test "$rc" -eq 2
check "output in input order with -k" test "$(cat "$dir/out.txt")" = "$(printf 'one\ntwo\n4')"
check "a missing command is reported" grep -q "no-such-cmd-coropool: command not found" "$dir/err.txt"
check "joblog header" test "$(head -1 "$dir/log.tsv")" = "$(printf 'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand')"
check "joblog has a row per job" test "$(tail -n +2 "$dir/log.tsv" | wc -l)" -eq 4
check "joblog exit values" test "$(tail -n +2 "$dir/log.tsv" | cut -f1,7 | sort -n | tr '\t\n' ':,')" = "1:0,2:3,3:127,4:0,"

"$bin" run "$dir/no-such-file" 2> "$dir/err2.txt"
check "a missing input file is exit 2" test $? -eq 2
check "and names the file" grep -q "no-such-file" "$dir/err2.txt"

seq 1 200 | sed 's/^/echo /' | "$bin" run -j 4 - > "$dir/many.txt"
check "stdin input, all jobs run once" test "$(sort -n "$dir/many.txt" | uniq | wc -l)" -eq 200

printf 'sleep 30\necho fast\n' > "$dir/slow.txt"
start=$(date +%s)
"$bin" run --timeout 0.3 "$dir/slow.txt" > "$dir/slow_out.txt"
rc=$?
check "a timed-out job fails" test "$rc" -eq 1
check "and is stopped quickly" test $(( $(date +%s) - start )) -lt 10
check "the other job still runs" grep -q fast "$dir/slow_out.txt"

"$bin" --version | grep -q "coropool 0.1.0"
check "--version" test $? -eq 0

printf 'echo a\necho b\n' | "$bin" run --tag -k - > "$dir/tag.txt" 2>/dev/null
check "--tag prefixes output lines with the command" test "$(cat "$dir/tag.txt")" = "$(printf 'echo a\ta\necho b\tb')"

printf 'touch %s/ran\n\necho b\n' "$dir" | "$bin" run --dry-run - > "$dir/dry.txt"
check "--dry-run prints the commands" test "$(cat "$dir/dry.txt")" = "$(printf 'touch %s/ran\necho b' "$dir")"
check "and runs none" test ! -e "$dir/ran"

printf 'test -e %s/flag || { touch %s/flag; exit 1; }\n' "$dir" "$dir" > "$dir/retry.txt"
"$bin" run --retries 1 "$dir/retry.txt" 2>/dev/null
check "--retries runs a failed job again" test $? -eq 0

"$bin" run "$dir/jobs.txt" > /dev/null 2> "$dir/summary.txt"
check "a summary on stderr" grep -q "coropool run: 4 jobs, 2 failed" "$dir/summary.txt"

echo "$(( 17 - fails )) passed, $fails failed"
test "$fails" -eq 0
