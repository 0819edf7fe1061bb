#!/usr/bin/env bash
# Signals as users send them: to the whole process group (a terminal's Ctrl-C, `timeout`,
# scancel, systemctl stop), through a pseudo-terminal, to a library program, and a helper
# process killed from outside. Nothing may be left behind, grandchildren of jobs included.
# Usage: signals_test.sh PATH/TO/coropool PATH/TO/signal_helper PATH/TO/http_server.py
set -u
bin=$(readlink -f "$1")
helper=$(readlink -f "$2")
server_py=$3
dir=$(mktemp -d)
trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
source "$(dirname "$0")/check.sh"
start_server "$server_py"
mkfifo "$dir/started"
# A script's background job starts with SIGINT and SIGQUIT ignored (and keeps them ignored
# through exec); a program started from a terminal does not. Every program under test here
# starts as it would from a terminal.
as_in_a_terminal="env --default-signal=INT,QUIT"

# Processes of process group $1 ("none": no group) that still run (zombies do not count),
# and processes whose command line matches $2.
live_in_group() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/' | wc -l; }
matching() { pgrep -f "$1" | wc -l; }
# True when none of either is left within 2 s of $3 (date +%s%N), checked every 20 ms.
gone_by() {
  local deadline=$(($3 + 2000000000))
  while [ "$(date +%s%N)" -lt "$deadline" ]; do
    [ "$(live_in_group "$1")" -eq 0 ] && [ "$(matching "$2")" -eq 0 ] && return 0
    sleep 0.02
  done
  ps -e -o pid=,ppid=,pgid=,stat=,args= | awk -v g="$1" '$3 == g && $4 !~ /^Z/' >&2
  pgrep -af "$2" >&2
  return 1
}
# Waits until $1 jobs wrote to the "started" fifo (at most 20 s); prints how many did.
await_started() {
  local up=0 i line
  for ((i = 0; i < $1; i++)); do read -r -t 20 line <&4 && up=$((up + 1)); done
  echo "$up"
}
signum() { case $1 in INT) echo 2 ;; TERM) echo 15 ;; HUP) echo 1 ;; esac; }

# `coropool run`, signalled as a group: two jobs block, one a shell whose child sleeps, the
# other a shell whose background shell's child sleeps; four finish first.
for sig in INT TERM HUP; do
  rm -f "$dir/g.tsv"
  touch "$dir/block"
  { for i in 1 2 3 4; do echo "echo job$i"; done
    echo "if [ -e $dir/block ]; then echo up > $dir/started; sleep 41.3; fi; echo job5"
    echo "if [ -e $dir/block ]; then echo up > $dir/started; sh -c 'sleep 41.4; true' & wait; fi; echo job6"
  } > "$dir/g.txt"
  exec 4<> "$dir/started"
  setsid $as_in_a_terminal "$bin" run -j 2 --joblog "$dir/g.tsv" "$dir/g.txt" > "$dir/g_out.txt" 2> "$dir/g_err.txt" &
  pid=$!
  up=$(await_started 2)
  pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
  t0=$(date +%s%N)
  kill -s "$sig" -- "-$pgid"
  wait "$pid"
  rc=$?
  exec 4<&-
  check "run, group SIG$sig: both blocking jobs had started" test "$up" -eq 2
  check "run, group SIG$sig: exit $((128 + $(signum "$sig")))" test "$rc" -eq $((128 + $(signum "$sig")))
  check "run, group SIG$sig: the summary says so" grep -q "interrupted by SIG$sig" "$dir/g_err.txt"
  check "run, group SIG$sig: no abort" test -z "$(grep -e 'terminate called' -e 'lost the spawner' "$dir/g_err.txt")"
  check "run, group SIG$sig: nothing left within 2 s, grandchildren included" gone_by "$pgid" 'sleep 41\.[34]' "$t0"
  check "run, group SIG$sig: the finished jobs are logged" \
    test "$(tail -n +2 "$dir/g.tsv" | cut -f1 | sort -n | tr '\n' ,)" = "1,2,3,4,"
  rm -f "$dir/block"
  "$bin" run -j 2 --resume --joblog "$dir/g.tsv" "$dir/g.txt" > "$dir/g_resume.txt" 2>/dev/null
  check "run, group SIG$sig: --resume runs exactly the rest" test "$(sort "$dir/g_resume.txt" | tr '\n' ,)" = "job5,job6,"
done

# Ctrl-C typed at a terminal: `script` runs coropool on a pseudo-terminal and passes it the
# keystroke, and the terminal signals the foreground process group.
{ echo "echo up > $dir/started; sleep 41.5"; echo "echo up > $dir/started; sleep 41.5; true"; } > "$dir/pty.txt"
exec 4<> "$dir/started"
mkfifo "$dir/keys"
script -qec "$as_in_a_terminal $bin run -j 2 $dir/pty.txt" /dev/null < "$dir/keys" > "$dir/pty_out.txt" 2>&1 &
spid=$!
exec 6> "$dir/keys"
up=$(await_started 2)
t0=$(date +%s%N)
printf '\003' >&6
wait "$spid"
rc=$?
exec 6>&- 4<&-
check "pty Ctrl-C: both jobs had started" test "$up" -eq 2
check "pty Ctrl-C: exit 130" test "$rc" -eq 130
check "pty Ctrl-C: the summary says so" grep -q "interrupted by SIGINT" "$dir/pty_out.txt"
check "pty Ctrl-C: no job left within 2 s" gone_by none 'sleep 41\.5' "$t0"

# `coropool fetch`, signalled as a group: whole records only, and --resume fetches the rest.
{ echo "$base/text/first"; for i in $(seq 1 8); do echo "$base/delay/2000?i=$i"; done; } > "$dir/f.txt"
setsid $as_in_a_terminal "$bin" fetch --keep-order -j 2 -c 2 -o "$dir/f.jsonl" "$dir/f.txt" 2> "$dir/f_err.txt" &
pid=$!
timeout 20 tail -n +1 -F "$dir/f.jsonl" 2>/dev/null | head -n 1 > /dev/null
pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
t0=$(date +%s%N)
kill -INT -- "-$pgid"
wait "$pid"
rc=$?
check "fetch, group SIGINT: exit 130" test "$rc" -eq 130
check "fetch, group SIGINT: the summary says so" grep -q "interrupted by SIGINT" "$dir/f_err.txt"
check "fetch, group SIGINT: no abort" test -z "$(grep 'terminate called' "$dir/f_err.txt")"
check "fetch, group SIGINT: only whole records" python3 -c "import json; [json.loads(l) for l in open('$dir/f.jsonl')]"
check "fetch, group SIGINT: nothing left within 2 s" gone_by "$pgid" "$dir/f.txt" "$t0"
"$bin" fetch --resume -o "$dir/f.jsonl" "$dir/f.txt" 2>/dev/null
check "fetch, group SIGINT: --resume records every line exactly once" \
  test "$(wc -l < "$dir/f.jsonl"),$(sort -u "$dir/f.jsonl" | python3 -c 'import json,sys; print(len({json.loads(l)["line"] for l in sys.stdin}))')" = "9,9"

# A library program without close_on_signals dies as the signal says, and its workers and
# their commands (grandchildren included) die with it.
exec 4<> "$dir/started"
setsid $as_in_a_terminal "$helper" die "echo up > $dir/started; sleep 43.1; true" > "$dir/die_out.txt" 2>&1 &
pid=$!
up=$(await_started 2)
pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
t0=$(date +%s%N)
kill -INT -- "-$pgid"
wait "$pid"
rc=$?
exec 4<&-
check "library, group SIGINT: both jobs had started" test "$up" -eq 2
check "library, group SIGINT: the program died of SIGINT" test "$rc" -eq 130
check "library, group SIGINT: nothing left within 2 s" gone_by "$pgid" 'sleep 43\.1' "$t0"

# With close_on_signals the signal closes the pool: the jobs submitted all finish.
exec 4<> "$dir/started"
setsid $as_in_a_terminal "$helper" close "echo up > $dir/started; sleep 0.3" > "$dir/close_out.txt" 2>&1 &
pid=$!
up=$(await_started 2)
pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
kill -INT -- "-$pgid"
wait "$pid"
rc=$?
exec 4<&-
check "library close_on_signals, group SIGINT: exit 0" test "$rc" -eq 0
check "library close_on_signals, group SIGINT: every job finished" \
  test "$(tr '\n' , < "$dir/close_out.txt")" = "done 1 exit 0,done 2 exit 0,done 3 exit 0,done 4 exit 0,finished,"

# The pool's spawner killed from outside: the run fails with an error, not an abort, and no
# job is left behind.
{ echo "echo up > $dir/started; sleep 41.6"; echo "echo up > $dir/started; sleep 41.6; true"; } > "$dir/sp.txt"
exec 4<> "$dir/started"
$as_in_a_terminal "$bin" run -j 2 --joblog "$dir/sp.tsv" "$dir/sp.txt" > /dev/null 2> "$dir/sp_err.txt" &
pid=$!
up=$(await_started 2)
zygote=$(pgrep -P "$pid")
spawner=$(pgrep -P "$zygote")
t0=$(date +%s%N)
kill -KILL "$spawner"
wait "$pid"
rc=$?
exec 4<&-
check "spawner killed: exit 255" test "$rc" -eq 255
check "spawner killed: says why" grep -q "the pool cannot run jobs any more" "$dir/sp_err.txt"
check "spawner killed: no abort" test -z "$(grep 'terminate called' "$dir/sp_err.txt")"
check "spawner killed: no job left within 2 s" gone_by none 'sleep 41\.6' "$t0"

# Output a program printed before its first Pool, not flushed yet, comes out once: workers
# (replacements included) never flush a copy of it.
"$helper" hello > "$dir/hello.txt"
check "printed before the pool: once, to a file" test "$(cat "$dir/hello.txt" | tr '\n' ,)" = "hello,sum 91,"
check "printed before the pool: once, to a pipe" test "$("$helper" hello | tr '\n' ,)" = "hello,sum 91,"

report
