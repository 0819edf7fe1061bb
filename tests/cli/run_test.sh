#!/usr/bin/env bash
# End-to-end checks of `coropool run` as a user runs it. Usage: run_test.sh PATH/TO/coropool
set -u
bin=$(readlink -f "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/check.sh"

printf 'echo one\n\necho two; exit 3\nno-such-cmd-coropool\n   \necho "$COROPOOL_SEQ"\n' > "$dir/jobs.txt"
"$bin" run -k --joblog "$dir/log.tsv" "$dir/jobs.txt" > "$dir/out.txt" 2> "$dir/err.txt"
rc=$?
check "exit status counts failed jobs" test "$rc" -eq 2
# A blank line is a job that does nothing, as in GNU parallel, so Seq numbers match its joblog.
check "output in input order with -k" test "$(cat "$dir/out.txt")" = "$(printf 'one\ntwo\n6')"
check "a missing command is reported" grep -q "no-such-cmd-coropool: command not found" "$dir/err.txt"
check "joblog header" test "$(head -1 "$dir/log.tsv")" = "$(printf 'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand')"
check "joblog has a row per job" test "$(tail -n +2 "$dir/log.tsv" | wc -l)" -eq 6
check "joblog exit values" test "$(tail -n +2 "$dir/log.tsv" | cut -f1,7 | sort -n | tr '\t\n' ':,')" = "1:0,2:0,3:3,4:127,5:0,6:0,"

# A list of commands with its x bit set is still a list; a script with #! is a program that
# takes its arguments from stdin, as parallel runs it.
printf 'echo listed-1\necho listed-2\n' > "$dir/xlist.txt"
chmod +x "$dir/xlist.txt"
check "an executable list without #! is run line by line" \
  test "$("$bin" run --quiet -k "$dir/xlist.txt" < /dev/null | tr '\n' ,)" = "listed-1,listed-2,"
printf '#!/bin/sh\necho "script got $1"\n' > "$dir/script.sh"
chmod +x "$dir/script.sh"
check "a #! script is the command, its arguments from stdin" \
  test "$(printf 'a\nb\n' | "$bin" run --quiet -k "$dir/script.sh" | tr '\n' ,)" = "script got a,script got b,"
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
check "--dry-run prints the commands" test "$(cat "$dir/dry.txt")" = "$(printf 'touch %s/ran\n\necho b' "$dir")"
check "and runs none" test ! -e "$dir/ran"

printf 'test -e %s/flag || { touch %s/flag; exit 1; }\n' "$dir" "$dir" > "$dir/retry.txt"
"$bin" run --retries 1 "$dir/retry.txt" 2>/dev/null
check "--retries 1 runs a job once in all, as parallel" test $? -eq 1
rm -f "$dir/flag"
"$bin" run --retries 2 "$dir/retry.txt" 2>/dev/null
check "--retries 2 runs a failed job again" test $? -eq 0

"$bin" run "$dir/jobs.txt" > /dev/null 2> "$dir/summary.txt"
check "a summary on stderr" grep -q "coropool run: 6 jobs, 2 failed" "$dir/summary.txt"

# Templates: GNU parallel's replacement strings, arguments quoted as one word.
printf 'dir/sub/file.tar.gz\na b.txt\n\nplain\n' > "$dir/args.txt"
"$bin" run -k -j 1 -a "$dir/args.txt" -- printf "'%s|'" {} {.} {/} {//} {/.} {#} {%} > "$dir/tmpl.txt" 2>/dev/null
printf -v want '%s\n' 'dir/sub/file.tar.gz|dir/sub/file.tar|file.tar.gz|dir/sub|file.tar|1|1|' \
  'a b.txt|a b|a b.txt|.|a b|2|1|' '|||.||3|1|' 'plain|plain|plain|.|plain|4|1|'
check "-a fills {} {.} {/} {//} {/.} {#} {%}" test "$(cat "$dir/tmpl.txt")" = "$(printf '%s' "${want%$'\n'}" | tr -d '\n')"
printf 'x\ny\n' | "$bin" run -k -a - echo arg: > "$dir/append.txt"
check "a template without replacement strings gets the argument appended" \
  test "$(cat "$dir/append.txt")" = "$(printf 'arg: x\narg: y')"
printf "it's\n" | "$bin" run -a - -- 'echo {}' > "$dir/quote.txt"
check "an argument with a quote stays one word" test "$(cat "$dir/quote.txt")" = "it's"

# Slots: -j 3 runs exactly 3 at once, COROPOOL_SLOT is 1..3 and {%} agrees with it.
seq 1 30 | "$bin" run -j 3 -a - -- 'echo {%} $COROPOOL_SLOT' > "$dir/slots.txt"
check "COROPOOL_SLOT and {%} within 1..-j" test "$(sort -u "$dir/slots.txt" | tr '\n' ,)" = "1 1,2 2,3 3,"

# --halt: soon lets the running jobs finish, now kills them; either way no new job starts.
{ echo "exit 1"; for i in $(seq 2 40); do echo "echo $i"; done; } > "$dir/halt.txt"
"$bin" run -j 1 --halt soon,fail=1 --joblog "$dir/halt.tsv" "$dir/halt.txt" > /dev/null 2> "$dir/halt_err.txt"
rc=$?
check "--halt soon,fail=1 stops after the first failure" test "$rc" -eq 1
check "and says so" grep -q "halt soon,fail=1 reached" "$dir/halt_err.txt"
check "and starts no more jobs" test "$(tail -n +2 "$dir/halt.tsv" | wc -l)" -lt 40
"$bin" run -j 2 --halt now,fail=50% --joblog "$dir/halt2.tsv" "$dir/halt.txt" > /dev/null 2>&1
check "--halt fail=50% does not stop at 1 failure in 3 or more" test "$(tail -n +2 "$dir/halt2.tsv" | wc -l)" -eq 40
"$bin" run --halt later,fail=1 "$dir/halt.txt" 2> "$dir/halt_bad.txt"
check "a bad --halt is a usage error" test $? -eq 2

# --line-buffer: a job's first line is out before the job ends (it waits for the test to
# have read it), and lines never mix.
mkfifo "$dir/gate"
printf 'echo first; read x < %s; echo second
' "$dir/gate" > "$dir/lb.txt"
"$bin" run --line-buffer "$dir/lb.txt" > "$dir/lb_out" &
lb=$!
exec 3< <(timeout 20 tail -f "$dir/lb_out")
read -r -t 20 first <&3
echo go > "$dir/gate"
wait "$lb"
check "--line-buffer prints a line while its job still runs" test "$first" = first
check "and all of it" test "$(cat "$dir/lb_out")" = "$(printf 'first\nsecond')"
exec 3<&-
# `out=$(coropool run ...)` and `coropool run ... | cat` end when coropool does: its helper
# processes, which hold its stdout, leave at once (they waited out a 1 s grace period).
{ "$bin" run --quiet ::: true; date +%s%N > "$dir/exited"; } | { cat > /dev/null; date +%s%N > "$dir/eof"; }
lag=$(( ($(cat "$dir/eof") - $(cat "$dir/exited")) / 1000000 ))
check "stdout reaches EOF as coropool exits (${lag} ms after)" test "$lag" -lt 500
# A line starts as soon as it is read, not when the next one comes (tail -f | coropool run):
# the second line is written only once the first job's output is out.
mkfifo "$dir/gate2"
{ echo "echo started-at-once"; read -r _ < "$dir/gate2"; echo "echo second-line"; } |
  "$bin" run > "$dir/stream_out" 2>/dev/null &
st=$!
exec 3< <(timeout 20 tail -f "$dir/stream_out")
first=""
read -r -t 20 first <&3
echo go > "$dir/gate2"
wait "$st"
check "a job starts as soon as its line is read from a pipe" test "$first" = started-at-once
check "and the next line still runs" grep -q second-line "$dir/stream_out"
exec 3<&-
seq 1 20 | "$bin" run -j 4 --line-buffer --tag -a - -- 'for i in 1 2 3; do echo line-$i-of-{}; done' > "$dir/lbt.txt"
check "--line-buffer --tag lines stay whole, tagged with the argument" test "$(grep -Ec $'^([0-9]+)\tline-[123]-of-\\1$' "$dir/lbt.txt")" -eq 60

# The end of a job is its process's exit, not its output pipe's EOF: a daemon that keeps the
# pipe open neither holds the job (as GNU parallel, which reads its output from files) nor
# hides what the job printed; --timeout is not needed to end it.
start=$(date +%s%N)
echo 'setsid sleep 39.7 & echo started' | "$bin" run --timeout 2 - > "$dir/daemon.txt" 2>/dev/null
rc=$?
took=$(( ($(date +%s%N) - start) / 1000000 ))
pkill -f 'sleep 39\.7'
check "a job whose daemon holds the pipe ends with its process" test "$rc" -eq 0 -a "$took" -lt 1500
check "and its output is kept" test "$(cat "$dir/daemon.txt")" = started
start=$(date +%s%N)
echo 'sleep 3.3 & echo x' | "$bin" run - > "$dir/bg.txt" 2>/dev/null
took=$(( ($(date +%s%N) - start) / 1000000 ))
pkill -f 'sleep 3\.3'
check "a job that leaves a background child ends at once" test "$took" -lt 1500 -a "$(cat "$dir/bg.txt")" = x
# A job that itself runs past --timeout ends on time, whatever its daemon does.
start=$(date +%s%N)
echo 'setsid sleep 39.8 & sleep 30' | "$bin" run --timeout 1 - > /dev/null 2>&1
rc=$?
took=$(( ($(date +%s%N) - start) / 1000000 ))
pkill -f 'sleep 39\.8'
check "--timeout ends a job on time though its daemon holds the pipe" test "$rc" -eq 1 -a "$took" -lt 3000

# Bad input: a NUL byte, invalid UTF-8 and a 1 MiB line (one argument over the kernel's
# 128 KiB limit, refused as GNU parallel does); every other job still runs.
{ printf 'echo before\n'; printf 'echo a\0b\n'; printf 'printf "%%s\\n" \xff\xfe\n';
  printf 'echo %s\n' "$(head -c 1048576 /dev/zero | tr '\0' x)"; printf 'echo after\n'; } > "$dir/bad.txt"
"$bin" run -k --joblog "$dir/bad.tsv" "$dir/bad.txt" > "$dir/bad_out.txt" 2> "$dir/bad_err.txt"
rc=$?
check "bad lines fail as jobs, not the run" test "$rc" -eq 2
check "a NUL byte is named by its line" grep -q "bad.txt:2: not run: the command holds a NUL byte" "$dir/bad_err.txt"
check "invalid UTF-8 runs" test "$(sed -n 2p "$dir/bad_out.txt")" = "$(printf '\xff\xfe')"
check "a 1 MiB line is refused by exec, named by its line" grep -q "bad.txt:4: not run: echo: Argument list too long" "$dir/bad_err.txt"
check "the jobs around them run" test "$(sed -n '1p;3p' "$dir/bad_out.txt" | tr '\n' ,)" = "before,after,"
check "every job has a joblog row" test "$(tail -n +2 "$dir/bad.tsv" | wc -l)" -eq 5

# SIGINT and SIGTERM: the running jobs' process groups are killed, what finished is logged,
# exit 130 or 143; --resume then runs exactly the rest.
for sig in INT TERM; do
  rm -f "$dir/block" "$dir/started" "$dir/int.tsv"
  touch "$dir/block"
  mkfifo "$dir/started"
  { for i in 1 2 3 4; do echo "echo job$i"; done
    for i in 5 6; do echo "if [ -e $dir/block ]; then echo up > $dir/started; sleep 31.7 & wait; fi; echo job$i"; done
  } > "$dir/int.txt"
  "$bin" run -j 2 --joblog "$dir/int.tsv" "$dir/int.txt" > "$dir/int_out.txt" 2>/dev/null &
  pid=$!
  exec 4<> "$dir/started"  # read-write: no end of file between the two writers
  up=0
  for i in 1 2; do read -r -t 20 line <&4 && up=$((up + 1)); done
  exec 4<&-
  kill -s "$sig" "$pid"
  wait "$pid"
  rc=$?
  check "SIG$sig: both blocking jobs had started" test "$up" -eq 2
  want=130
  [ "$sig" = TERM ] && want=143
  check "SIG$sig: exit $want" test "$rc" -eq "$want"
  check "SIG$sig: no job process left behind" test -z "$(pgrep -f 'sleep 31.7')"
  check "SIG$sig: the finished jobs are logged" test "$(tail -n +2 "$dir/int.tsv" | cut -f1 | sort -n | tr '\n' ,)" = "1,2,3,4,"
  rm -f "$dir/block" "$dir/started"
  "$bin" run -j 2 --resume --joblog "$dir/int.tsv" "$dir/int.txt" > "$dir/resume_out.txt" 2>/dev/null
  check "SIG$sig: --resume runs exactly the rest" test "$(sort "$dir/resume_out.txt" | tr '\n' ,)" = "job5,job6,"
  check "SIG$sig: and logs them" test "$(tail -n +2 "$dir/int.tsv" | cut -f1 | sort -n | tr '\n' ,)" = "1,2,3,4,5,6,"
done

# --resume-failed runs the failed jobs again, and only those; a row cut short is ignored.
printf 'echo ok1\ntest -e %s/fixed\necho ok3\n' "$dir" > "$dir/rf.txt"
"$bin" run --joblog "$dir/rf.tsv" "$dir/rf.txt" > /dev/null 2>&1
printf '9\t:\t1' >> "$dir/rf.tsv"
touch "$dir/fixed"
"$bin" run --resume-failed --joblog "$dir/rf.tsv" "$dir/rf.txt" > "$dir/rf_out.txt" 2>/dev/null
check "--resume-failed reruns only the failed job" test $? -eq 0
check "which prints nothing here, so nothing else ran" test ! -s "$dir/rf_out.txt"
check "the joblog holds whole rows only" test "$(tail -n +2 "$dir/rf.tsv" | head -3 | cut -f1,7 | sort -n | tr '\t\n' ':,')$(tail -1 "$dir/rf.tsv" | cut -f1,7 | tr '\t' :)" = "1:0,2:1,3:0,2:0"
"$bin" run --resume "$dir/rf.txt" 2>/dev/null
check "--resume without --joblog is a usage error" test $? -eq 2

# A job's output has no size limit: 1 GiB comes out byte for byte, grouped (in input order
# with -k or not) and with --line-buffer, beside another job's; coropool's processes stay
# small (output past 1 MiB is spooled to a file); no spool file is left behind.
mkdir -p "$dir/tmp"
for mode in -k "" --line-buffer; do
  read -r rc exact small rss < <(TMPDIR="$dir/tmp" python3 "$(dirname "$0")/big_output.py" "$bin" 1073741824 $mode)
  check "1 GiB of output ${mode:-grouped}: exit 0, byte for byte, the other job's too" \
    test "$rc $exact $small" = "0 exact small"
  check "1 GiB of output ${mode:-grouped}: largest process under 256 MiB (was $rss MiB)" test "$rss" -lt 256
done
check "no spool file is left" test -z "$(ls -A "$dir/tmp")"
echo 'yes abcdefgh | head -c 3000006' | "$bin" run --tag - > "$dir/tagbig.txt"
check "--tag on spooled output: every line tagged" \
  test "$(grep -cxF "$(printf 'yes abcdefgh | head -c 3000006\tabcdefgh')" "$dir/tagbig.txt")" -eq 333334
printf 'printf abc\n' | "$bin" run --line-buffer - > "$dir/nonl.txt"
check "--line-buffer adds no newline to an unterminated last line" test "$(od -An -c "$dir/nonl.txt" | tr -d ' ')" = abc

# Starting jobs: --delay spaces the starts, --shuf mixes the order, --memfree and --load wait
# for room, --nice sets the jobs' niceness.
"$bin" run --quiet -j 4 --delay 0.2 'date +%s%N #{}' ::: 1 2 3 4 | sort -n > "$dir/delay.txt"
gaps=$(awk 'NR > 1 { printf "%d ", ($1 - prev) / 1000000 } { prev = $1 }' "$dir/delay.txt")
check "--delay 0.2 starts jobs 200 ms apart or more (gaps: $gaps ms)" \
  test -z "$(awk 'NR > 1 && ($1 - prev) < 190000000' "$dir/delay.txt" | head -1)" -a "$(wc -l < "$dir/delay.txt")" -eq 4
"$bin" run --quiet -j 1 --shuf echo ::: $(seq 1 50) > "$dir/shuf.txt"
check "--shuf runs every job once" test "$(sort -n "$dir/shuf.txt" | tr '\n' ' ')" = "$(seq 1 50 | tr '\n' ' ')"
check "in another order" test "$(tr '\n' ' ' < "$dir/shuf.txt")" != "$(seq 1 50 | tr '\n' ' ')"
check "--memfree and --load below what there is: the jobs run" \
  test "$("$bin" run --quiet --memfree 1k --load 100000 echo ::: ok)" = ok
timeout 2 "$bin" run --quiet --memfree 1000T touch ::: "$dir/memfree_ran"
check "--memfree over what there is: no job starts" test ! -e "$dir/memfree_ran"
check "--nice 7: the jobs run at niceness 7" test "$("$bin" run --quiet --nice 7 'ps -o ni= -p $$ #{}' ::: 1 | tr -d ' ')" = 7
"$bin" run --eta echo ::: a b > /dev/null 2> "$dir/eta.txt"
check "--eta and --bar show the progress line" grep -q "2/2" "$dir/eta.txt"
refused "--delay x" "--delay takes" "$bin" run --delay x echo ::: a
refused "--memfree lots" "--memfree takes" "$bin" run --memfree lots echo ::: a

# Shards: disjoint and covering, with the global Seq in each joblog; from a Slurm array or an
# Indexed Job as from --shard; the example sbatch script; --resume-from other shards' logs.
here=$(cd "$(dirname "$0")" && pwd)
for i in $(seq 1 20); do echo "echo job-$i"; done > "$dir/sharded.txt"
for k in 0 1 2; do "$bin" run --quiet --shard "$k/3" --joblog "$dir/shard-$k.tsv" "$dir/sharded.txt"; done > "$dir/shards.out"
check "--shard K/N: disjoint and covering" test "$(sort -u "$dir/shards.out" | wc -l),$(wc -l < "$dir/shards.out")" = "20,20"
check "each shard's joblog has the global Seq" \
  test "$(tail -q -n +2 "$dir/shard-1.tsv" | cut -f1 | sort -n | tr '\n' ,)" = "2,5,8,11,14,17,20,"
SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_STEP=1 SLURM_ARRAY_TASK_COUNT=3 \
  "$bin" run --quiet "$dir/sharded.txt" | sort > "$dir/slurm.out"
"$bin" run --quiet --shard 1/3 "$dir/sharded.txt" | sort > "$dir/shard1.out"
check "a Slurm array task picks its shard" cmp -s "$dir/slurm.out" "$dir/shard1.out"
JOB_COMPLETION_INDEX=1 "$bin" run --quiet --shards 3 "$dir/sharded.txt" | sort > "$dir/k8s.out"
check "a Kubernetes Indexed Job picks its shard" cmp -s "$dir/k8s.out" "$dir/shard1.out"
refused "JOB_COMPLETION_INDEX without --shards" "--shards" env JOB_COMPLETION_INDEX=1 "$bin" run "$dir/sharded.txt"
(cd "$dir" && PATH="$(dirname "$bin"):$PATH" SLURM_ARRAY_JOB_ID=77 SLURM_ARRAY_TASK_ID=1 \
  SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_STEP=1 SLURM_ARRAY_TASK_COUNT=3 \
  bash "$here/../../examples/scale-out/run-array.sbatch" sharded.txt > "$dir/sbatch.out" 2>/dev/null)
check "the example sbatch script runs its shard and logs it" \
  test "$(sort "$dir/sbatch.out" | tr '\n' ,),$(tail -n +2 "$dir/joblogs-77/task-1.tsv" | wc -l)" = "$(tr '\n' , < "$dir/shard1.out"),7"
# One run over everything, resuming from the three shards' joblogs, has nothing left to do.
mkdir "$dir/shardlogs" && cp "$dir"/shard-?.tsv "$dir/shardlogs/"
echo 'echo job-21' >> "$dir/sharded.txt"
"$bin" run --quiet --resume --joblog "$dir/all.tsv" --resume-from "$dir/shardlogs" "$dir/sharded.txt" > "$dir/rest.out"
check "--resume-from a directory of shard joblogs runs only the rest" test "$(cat "$dir/rest.out")" = job-21

# --pipe: every byte reaches exactly one job, in chunks cut at line ends, with bounded memory;
# a file given with -a is cut as stdin is; a job that reads nothing is no error.
seq 1 200000 > "$dir/numbers.txt"
"$bin" run --quiet -k --pipe --block 100k cat < "$dir/numbers.txt" > "$dir/piped.txt"
check "--pipe -k: the chunks put back together are the input" cmp -s "$dir/piped.txt" "$dir/numbers.txt"
check "--pipe: every line in exactly one chunk" \
  test "$("$bin" run --quiet --pipe --block 100k wc -l < "$dir/numbers.txt" | awk '{ s += $1 } END { print s }')" = 200000
check "--pipe -a FILE cuts the file" test "$("$bin" run --quiet --pipe -N 50000 -a "$dir/numbers.txt" wc -l | sort -u)" = 50000
check "--pipe: a job that does not read its chunk still succeeds" \
  test "$("$bin" run --quiet --pipe --block 10k true < "$dir/numbers.txt"; echo $?)" = 0
refused "--block 64M" "--block takes" "$bin" run --pipe --block 64M cat

# --termseq: the signals a job gets at its timeout, with the waits between them.
"$bin" run --quiet --timeout 0.3 --termseq INT,5000,KILL,25 'trap "echo got-int; exit 3" INT; sleep 30 & wait #{}' \
  ::: 1 > "$dir/termseq.txt" 2>/dev/null
check "--termseq INT,...: the job gets SIGINT at its timeout" test "$(cat "$dir/termseq.txt")" = got-int
start=$(date +%s%N)
"$bin" run --quiet --timeout 0.3 --termseq TERM,100,KILL,25 'trap "" TERM; sleep 30 & wait #{}' ::: 1 2>/dev/null
took=$(( ($(date +%s%N) - start) / 1000000 ))
check "--termseq TERM,100,KILL,25: a job that ignores TERM is killed 100 ms later (took $took ms, 2 s grace without)" \
  test "$took" -lt 1500
refused "--termseq NOPE,1" "--termseq takes" "$bin" run --termseq NOPE,1 echo ::: a

# Workers hold a job beyond each slot (no round trip between jobs); a job held behind a long
# one is taken back for a slot that frees elsewhere and starts there, not after the long one.
printf 'sleep 3\necho a\necho b\necho c\n' > "$dir/held.txt"
"$bin" run -j 2 --joblog "$dir/held.tsv" "$dir/held.txt" > /dev/null 2>&1
late=$(awk -F'\t' 'NR > 1 {start[$9] = $3} END {for (c in start) if (c != "sleep 3" && start[c] - start["sleep 3"] > m)
  m = start[c] - start["sleep 3"]; printf "%.0f", m * 1000}' "$dir/held.tsv")
check "jobs queued behind a 3 s one start elsewhere at once (the last $late ms after it)" test "$late" -lt 1500

# A worker with jobs queued holds finished jobs' results up to 8 ms to send them together, but
# never longer: the output of a job that ran before a long one is printed while the long one
# runs (the jobs queued behind it cannot start, so only the time limit lets it go).
{ for ((i = 0; i < 300; i++)); do echo true; done
  printf 'echo before-the-sleep
sleep 2
echo late-1
echo late-2
echo late-3
'; } > "$dir/linger.txt"
start=$(date +%s%N)
"$bin" run -j 1 "$dir/linger.txt" 2>/dev/null | while read -r line; do echo "$(( ($(date +%s%N) - start) / 1000000 )) $line"; done > "$dir/linger.out"
before=$(awk '$2 == "before-the-sleep" {print $1}' "$dir/linger.out")
after=$(awk '$2 == "late-1" {print $1}' "$dir/linger.out")
check "output of a job before a 2 s one comes while that one runs (at ${before:-never} ms; the next at ${after:-never} ms)" \
  test -n "$before" -a -n "$after" -a "${before:-9999}" -lt 1500 -a "${after:-0}" -ge 2000

# Each worker is bound to a CPU of its own; the jobs are not: they may run wherever coropool
# may (a job that runs threads must not be held to one CPU), and `taskset` still limits them.
mine=$(grep Cpus_allowed_list /proc/self/status | cut -f2)
jobs=$("$bin" run -j 2 --quiet ': {}; grep Cpus_allowed_list /proc/self/status | cut -f2' ::: 1 2 3 4 | sort -u)
check "jobs of -j2 may run on every CPU coropool may ($jobs; coropool: $mine)" test "$jobs" = "$mine"
first=$(echo "$mine" | cut -d, -f1 | cut -d- -f1)
jobs=$(taskset -c "$first" "$bin" run -j 2 --quiet ': {}; grep Cpus_allowed_list /proc/self/status | cut -f2' ::: 1 2 | sort -u)
check "under taskset -c $first, jobs run on CPU $first only ($jobs)" test "$jobs" = "$first"

# run makes no HTTP request, so neither coropool nor its workers map libcurl (loaded only by
# fetch): a job's shell looks at its parent, the worker that started it.
maps=$("$bin" run -j 2 --quiet ': {}; grep -c libcurl /proc/$PPID/maps || true' ::: 1 2 | sort -u)
check "run's workers do not map libcurl (lines of it in their maps: $maps)" test "$maps" = 0

# Options refused with exit 2 and a message naming the option or the input.
refused "a directory as the input" "$dir is a directory" "$bin" run "$dir"
refused "a directory as -a" "$dir is a directory" "$bin" run -a "$dir" echo
refused "-j x" "-j takes" "$bin" run -j x "$dir/jobs.txt"
refused "--timeout 0" "--timeout" "$bin" run --timeout 0 "$dir/jobs.txt"
refused "an unknown option before --" "unknown option --frobnicate" "$bin" run --frobnicate 10 -a "$dir/args.txt" -- echo

report
