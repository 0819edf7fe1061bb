#!/usr/bin/env bash
# End-to-end checks of `coropool fetch` against the project's loopback test server.
# Usage: fetch_test.sh PATH/TO/coropool PATH/TO/http_server.py
set -u
bin=$(readlink -f "$1")
here=$(cd "$(dirname "$0")" && pwd)
server_py=$2
dir=$(mktemp -d)
trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
source "$(dirname "$0")/check.sh"
start_server "$server_py"

# Statuses, redirects, bad lines: one record per line that is not blank or a comment.
{ echo "$base/text/a"; echo; echo "# a comment"; echo "$base/status/404"; echo "ftp://example.org/x"
  printf '%s\x00x\n' "$base/nul"; printf '%s/\xff\xfe\n' "$base"; echo "$base/$(head -c 9000 /dev/zero | tr '\0' a)"
  echo "$base/redirect/2"; echo "$base/redirect-to?url=ftp://127.0.0.1/x"; echo "http://127.0.0.1:1/refused"
  echo "$base/bytes/5000"; } > "$dir/urls.txt"
"$bin" fetch --keep-order --max-size 4000 "$dir/urls.txt" > "$dir/out.jsonl" 2> "$dir/err.txt"
rc=$?
check "exit 1 when some URLs failed" test "$rc" -eq 1
check "one valid JSON record per URL line" test "$(field line < "$dir/out.jsonl" | tr '\n' ,)" = "1,4,5,6,7,8,9,10,11,12,"
check "statuses" test "$(field status < "$dir/out.jsonl" | tr '\n' ,)" = "200,404,None,None,None,None,200,302,None,200,"
check "error codes" test "$(errcode < "$dir/out.jsonl" | tr '\n' ,)" = \
  "None,None,invalid_url,invalid_url,invalid_url,invalid_url,None,bad_redirect,connect,too_large,"
check "redirects end at the final URL" test "$(sed -n 7p "$dir/out.jsonl" | field final_url)" = "$base/redirect/0"
check "bad lines are named by file and line" grep -q "urls.txt:6: holds a NUL byte" "$dir/err.txt"
check "a summary on stderr" grep -q "10 URLs, 3 answered, 7 failed" "$dir/err.txt"

printf '%s\n' "$base/text/1" "$base/status/500" | "$bin" fetch - > "$dir/ok.jsonl" 2>/dev/null
check "a 500 is a response: exit 0" test $? -eq 0
"$bin" fetch "$dir/missing.txt" 2> "$dir/e2.txt"
check "a missing input is exit 2" test $? -eq 2
check "naming it" grep -q "missing.txt" "$dir/e2.txt"
"$bin" fetch -o /nonexistent-dir/out.jsonl "$dir/urls.txt" 2> "$dir/e3.txt"
check "an unwritable output is exit 2" test $? -eq 2
check "naming it" grep -q "/nonexistent-dir/out.jsonl" "$dir/e3.txt"

# libcurl is loaded when fetch starts (not when coropool does); without it fetch says so and
# fetches nothing. COROPOOL_LIBCURL names the file to load instead of libcurl.so.4.
COROPOOL_LIBCURL="$dir/no-libcurl.so.4" "$bin" fetch "$dir/urls.txt" > "$dir/nolib.jsonl" 2> "$dir/nolib.txt"
check "without libcurl: exit 255" test $? -eq 255
check "naming the library" grep -q "cannot load $dir/no-libcurl.so.4" "$dir/nolib.txt"
check "and writing no record" test ! -s "$dir/nolib.jsonl"

# Retries honour Retry-After: two 503s with Retry-After: 1, then 200.
t0=$(date +%s.%N)
echo "$base/flaky/r1/2/1" | "$bin" fetch --retries 3 - > "$dir/retry.jsonl" 2>/dev/null
t1=$(date +%s.%N)
check "retried until it succeeded" test "$(field status < "$dir/retry.jsonl"),$(field attempts < "$dir/retry.jsonl")" = "200,3"
check "waiting Retry-After (1 s) before each retry" test "$(echo "$t1 - $t0 >= 1.9" | bc -l)" -eq 1
echo "$base/flaky/r2/5/0" | "$bin" fetch --retries 1 - > "$dir/retry2.jsonl" 2>/dev/null
check "and gives up after --retries" test "$(field status < "$dir/retry2.jsonl"),$(field attempts < "$dir/retry2.jsonl")" = "503,2"

# Timeouts and slow drips are records too.
printf '%s\n' "$base/delay/3000" "$base/drip/50/100" | "$bin" fetch --timeout 0.5 - > "$dir/slow.jsonl" 2>/dev/null
check "timeouts and slow drips" test "$(errcode < "$dir/slow.jsonl" | sort | tr '\n' ,)" = "timeout,timeout,"

# Many hosts (curl resolves *.localhost to 127.0.0.1 itself): a worker keeps a connection to
# each host it fetches from, and a host's URLs stay on one worker. 16 hosts x 30 URLs with
# -j 2 -c 4; when curl's cache held only -c connections, nearly each request opened one.
for i in $(seq 1 30); do for h in $(seq 1 16); do echo "http://h$h.localhost:$port/conn/many?$i"; done; done > "$dir/hosts.txt"
"$bin" fetch -j 2 -c 4 "$dir/hosts.txt" > "$dir/hosts.jsonl" 2>/dev/null
check "16 hosts: every URL answered" test "$(field status < "$dir/hosts.jsonl" | sort | uniq -c | awk '{print $1 ":" $2}')" = "480:200"
conns=$(python3 -c 'import sys, urllib.request as u
print(u.build_opener(u.ProxyHandler({})).open(sys.argv[1]).read().decode().strip())' "$base/conns/many")
check "16 hosts: connections reused (at most 96 for 480 requests, got $conns)" test "$conns" -le 96

# --per-host-delay: requests to one host start at least the delay apart over all workers;
# two hosts are paced each on its own.
ms() { date +%s%3N; }
echo "$base/text/one" > "$dir/one.txt"
t0=$(ms); "$bin" fetch -j 2 "$dir/one.txt" > /dev/null 2>&1; one=$(( $(ms) - t0 ))
for i in 1 2 3 4 5; do echo "$base/text/d$i"; done > "$dir/delay1.txt"
t0=$(ms); "$bin" fetch -j 2 --per-host-delay 0.25 "$dir/delay1.txt" > "$dir/delay1.jsonl" 2>/dev/null; d1=$(( $(ms) - t0 ))
check "--per-host-delay 0.25: 5 requests to one host take 1 s or more (${d1} ms)" test "$d1" -ge 1000
check "and every one is answered" test "$(field status < "$dir/delay1.jsonl" | sort -u)" = 200
# A host's name in capitals is the same host (the build before paced each spelling apart).
for h in localhost LOCALHOST LocalHost localHOST Localhost; do echo "http://$h:$port/text/case-$h"; done > "$dir/delay3.txt"
t0=$(ms); "$bin" fetch -j 2 --per-host-delay 0.25 "$dir/delay3.txt" > "$dir/delay3.jsonl" 2>/dev/null; d3=$(( $(ms) - t0 ))
check "--per-host-delay 0.25: one host spelled 5 ways is paced as one, 1 s or more (${d3} ms)" test "$d3" -ge 1000
check "and every one is answered" test "$(field status < "$dir/delay3.jsonl" | sort -u)" = 200
for i in 1 2 3 4; do echo "$base/text/e$i"; echo "http://localhost:$port/text/e$i"; done > "$dir/delay2.txt"
t0=$(ms); "$bin" fetch -j 2 --per-host-delay 0.25 "$dir/delay2.txt" > /dev/null 2>&1; d2=$(( $(ms) - t0 ))
check "two hosts are paced apart: 4 + 4 requests in about 0.75 s, not 1.75 (${d2} ms, ${one} ms for one URL)" \
  test "$(( d2 - one ))" -lt 1400 -a "$d2" -ge 750

# --halt: no new transfer after the failures it names; --resume later fetches the rest.
{ for i in 1 2 3; do echo "http://127.0.0.1:1/refused$i"; done; for i in $(seq 1 60); do echo "$base/text/h$i"; done; } > "$dir/halt.txt"
"$bin" fetch -j 1 -c 1 --halt soon,fail=3 -o "$dir/halt.jsonl" "$dir/halt.txt" 2> "$dir/halt.err"
check "--halt soon,fail=3: stops after 3 failures (recorded $(wc -l < "$dir/halt.jsonl") of 63)" \
  test "$(errcode < "$dir/halt.jsonl" | grep -c connect)" -eq 3 -a "$(wc -l < "$dir/halt.jsonl")" -lt 63
check "and says so" grep -q "halt soon,fail=3 reached" "$dir/halt.err"
"$bin" fetch -j 1 -c 1 --resume -o "$dir/halt.jsonl" "$dir/halt.txt" 2> /dev/null
check "--resume then records every line once" test "$(field line < "$dir/halt.jsonl" | sort -n | uniq | wc -l),$(wc -l < "$dir/halt.jsonl")" = "63,63"
refused "--halt later,fail=1" "--halt takes" "$bin" fetch --halt later,fail=1 "$dir/halt.txt"

# Shards: disjoint, and together they cover the input.
for i in $(seq 1 30); do echo "$base/seen/s$i"; done > "$dir/shard.txt"
for k in 0 1 2; do "$bin" fetch --shard "$k/3" "$dir/shard.txt" 2>/dev/null | field line; done | sort -n > "$dir/shards"
check "--shard K/N: disjoint and covering" test "$(uniq "$dir/shards" | wc -l),$(wc -l < "$dir/shards")" = "30,30"
SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_STEP=1 SLURM_ARRAY_TASK_COUNT=3 \
  "$bin" fetch "$dir/shard.txt" 2>/dev/null | field line | sort -n > "$dir/slurm"
"$bin" fetch --shard 1/3 "$dir/shard.txt" 2>/dev/null | field line | sort -n > "$dir/shard1"
check "a Slurm array task picks its shard" cmp -s "$dir/slurm" "$dir/shard1"
JOB_COMPLETION_INDEX=1 "$bin" fetch --shards 3 "$dir/shard.txt" 2>/dev/null | field line | sort -n > "$dir/k8s"
check "a Kubernetes Indexed Job picks its shard" cmp -s "$dir/k8s" "$dir/shard1"
(cd "$dir" && PATH="$(dirname "$bin"):$PATH" SLURM_ARRAY_JOB_ID=77 SLURM_ARRAY_TASK_ID=1 \
  SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_STEP=1 SLURM_ARRAY_TASK_COUNT=3 \
  bash "$here/../../examples/scale-out/fetch-array.sbatch" shard.txt 2>/dev/null)
check "the example sbatch script fetches its shard" \
  test "$(field line < "$dir/records-77-1.jsonl" | sort -n | tr '\n' ,)" = "$(tr '\n' , < "$dir/shard1")"
"$bin" fetch --shard 3/3 "$dir/shard.txt" 2>/dev/null
check "a bad --shard is a usage error" test $? -eq 2
JOB_COMPLETION_INDEX=1 "$bin" fetch "$dir/shard.txt" > "$dir/k8s-nocount" 2> "$dir/k8s-err"
check "an Indexed Job index without --shards is exit 2, naming both, and fetches nothing" \
  test $? -eq 2 -a ! -s "$dir/k8s-nocount" -a -n "$(grep JOB_COMPLETION_INDEX=1 "$dir/k8s-err" | head -1)" \
  -a -n "$(grep -- --shards "$dir/k8s-err")"

# SIGKILL mid-run, then --resume: every line recorded exactly once.
for i in $(seq 1 40); do echo "$base/delay/500?i=$i"; done > "$dir/resume.txt"
"$bin" fetch -j 1 -c 4 -o "$dir/resume.jsonl" "$dir/resume.txt" 2>/dev/null &
pid=$!
timeout 20 tail -n +1 -F "$dir/resume.jsonl" 2>/dev/null | head -n 5 > /dev/null
kill -KILL "$pid"
wait "$pid" 2>/dev/null
before=$(grep -c . "$dir/resume.jsonl")
"$bin" fetch --resume -o "$dir/resume.jsonl" "$dir/resume.txt" 2> "$dir/resume_err.txt"
check "killed mid-run: some but not all were recorded" test "$before" -ge 5 -a "$before" -lt 40
check "--resume records every line exactly once" test "$(field line < "$dir/resume.jsonl" | sort -n | uniq | wc -l),$(wc -l < "$dir/resume.jsonl")" = "40,40"

# SIGINT: exit 130, only whole records, no worker left behind.
for i in $(seq 1 40); do echo "$base/delay/2000?i=$i"; done > "$dir/int.txt"
echo "$base/text/first" | cat - "$dir/int.txt" > "$dir/int2.txt"
"$bin" fetch --keep-order -j 2 -c 2 -o "$dir/int.jsonl" "$dir/int2.txt" 2>/dev/null &
pid=$!
timeout 20 tail -n +1 -F "$dir/int.jsonl" 2>/dev/null | head -n 1 > /dev/null
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
workers=$(descendants "$pid")
kill -INT "$pid"
wait "$pid"
check "SIGINT: exit 130" test $? -eq 130
check "SIGINT: only whole records" python3 -c "import json; [json.loads(l) for l in open('$dir/int.jsonl')]"
# Gone, or a zombie waiting for its reaper: bounded by 10 s, checked every 50 ms.
alive() { [ -e "/proc/$1/stat" ] && ! awk '{exit $3 == "Z" ? 0 : 1}' "/proc/$1/stat" 2>/dev/null; }
left=0
for w in $workers; do
  for ((t = 0; t < 200; t++)); do alive "$w" || break; sleep 0.05; done
  alive "$w" && left=$((left + 1))
done
check "SIGINT: its workers were found" test -n "$workers"
check "SIGINT: no worker left" test "$left" -eq 0

# Records that say what happened: broken replies are bad_response, an unparseable Location is
# bad_redirect, and an upper-case scheme is a URL (as curl takes it).
for r in badstatus http09 status2000 bigheader badchunk badlocation; do echo "$base/raw/$r"; done > "$dir/raw.txt"
echo "HTTP://127.0.0.1:$port/text/upper" >> "$dir/raw.txt"
"$bin" fetch --keep-order "$dir/raw.txt" > "$dir/raw.jsonl" 2>/dev/null
check "malformed replies: bad_response; a bad Location: bad_redirect; HTTP:// fetched" \
  test "$(errcode < "$dir/raw.jsonl" | tr '\n' ,)" = "bad_response,bad_response,bad_response,bad_response,bad_response,bad_redirect,None,"

# --save-dir: a missing directory is made, the same URL twice is saved twice (no shared
# .part), names are the documented 64-bit FNV-1a of the URL, and no .part is left.
printf '%s\n' "$base/text/same" "$base/text/same" > "$dir/same.txt"
"$bin" fetch --save-dir "$dir/made/here" "$dir/same.txt" > "$dir/same.jsonl" 2>/dev/null
check "--save-dir makes a missing directory; the same URL twice is saved twice" \
  test "$(errcode < "$dir/same.jsonl" | tr '\n' ,)" = "None,None,"
fnv=$(python3 -c 'import sys
h = 14695981039346656037
for c in sys.argv[1].encode(): h = ((h ^ c) * 1099511628211) % 2**64
print("%016x" % h)' "$base/text/same")
check "files are named by the URL's FNV-1a" test -f "$dir/made/here/$fnv"
check "no .part file is left" test -z "$(ls "$dir/made/here" | grep part)"
{ echo "$base/text/first"; for i in 1 2 3 4; do echo "$base/drip/200/50?i=$i"; done; } > "$dir/drip.txt"
"$bin" fetch -j 1 -c 8 --save-dir "$dir/dripped" -o "$dir/drip.jsonl" "$dir/drip.txt" 2>/dev/null &
pid=$!
timeout 20 tail -n +1 -F "$dir/drip.jsonl" 2>/dev/null | head -n 1 > /dev/null
for ((t = 0; t < 200; t++)); do [ -n "$(ls "$dir/dripped" | grep part)" ] && break; sleep 0.05; done
parts=$(ls "$dir/dripped" | grep -c part)
kill -INT "$pid"
wait "$pid"
check "SIGINT with --save-dir: the bodies in flight had .part files" test "$parts" -ge 1
check "SIGINT with --save-dir: none is left" test -z "$(ls "$dir/dripped" | grep part)"

# time_ms is the whole time over every attempt; last_attempt_ms the last one alone.
echo "$base/flaky/timing/1/1" | "$bin" fetch --retries 1 - > "$dir/t.jsonl" 2>/dev/null
check "time_ms covers the retries and their wait" \
  python3 -c "import json; r = json.load(open('$dir/t.jsonl')); assert r['attempts'] == 2 and r['time_ms'] >= 1000 > 500 > r['last_attempt_ms'], r"

# A soft descriptor limit below what -c asks for (a shell's default 1024 is below -c 500 -j 2):
# fetch raises it to the hard limit, so 300 transfers at once all connect.
for i in $(seq 1 300); do echo "$base/delay/1500?fd=$i"; done > "$dir/fd.txt"
bash -c "ulimit -S -n 128; exec \"$bin\" fetch -j 1 -c 300 \"$dir/fd.txt\"" > "$dir/fd.jsonl" 2>/dev/null
check "a low soft descriptor limit is raised: 300 transfers at once under ulimit -S -n 128 all answer (rc $?)" \
  test "$(field status < "$dir/fd.jsonl" | sort | uniq -c | awk '{print $1 ":" $2}')" = "300:200"

# --per-host after every worker was killed mid-run: their connections are given back, the
# run finishes, and with --retries the URLs they held are fetched again (not worker_lost).
for i in $(seq 1 60); do echo "$base/delay/100?ph=$i"; done > "$dir/ph.txt"
"$bin" fetch -j 2 -c 4 --per-host 2 --retries 2 -o "$dir/ph.jsonl" "$dir/ph.txt" 2> "$dir/ph_err.txt" &
pid=$!
timeout 20 tail -n +1 -F "$dir/ph.jsonl" 2>/dev/null | head -n 3 > /dev/null
zygote=$(pgrep -P "$pid")
spawner=$(pgrep -P "$zygote")
victims=$(pgrep -P "$spawner" | tr '\n' ' ')
kill -KILL $victims
for ((t = 0; t < 600; t++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
finished=yes
kill -0 "$pid" 2>/dev/null && { finished=no; kill -KILL "$pid"; }
wait "$pid"
check "--per-host: workers were killed" test -n "$victims"
check "--per-host: the run finishes after its workers were killed" test "$finished" = yes
check "--retries covers a lost worker: every URL answered once" \
  test "$(errcode < "$dir/ph.jsonl" | sort | uniq -c | tr -s ' ' | tr '\n' ,)" = " 60 None,"

# --resume fetches again a line whose record says worker_lost; --resume-failed every line
# whose record has an error, and the file keeps one record per line.
printf '%s\n' "$base/seen/rf" "$base/text/keep" > "$dir/rf.txt"
"$bin" fetch --keep-order --max-size 1 -o "$dir/rf.jsonl" "$dir/rf.txt" 2>/dev/null
"$bin" fetch --resume-failed -o "$dir/rf.jsonl" "$dir/rf.txt" 2>/dev/null
check "--resume-failed fetches the failed lines again" test "$(curl -s "$base/count/rf")" = 2
check "--resume-failed leaves one record per line, each answered" \
  test "$(field line < "$dir/rf.jsonl" | sort | tr '\n' ,)$(errcode < "$dir/rf.jsonl" | sort -u)" = "1,2,None"
printf '{"line":1,"url":"%s","error":{"code":"worker_lost","message":"x"}}\n' "$base/seen/wl" > "$dir/wl.jsonl"
echo "$base/seen/wl" > "$dir/wl.txt"
"$bin" fetch --resume -o "$dir/wl.jsonl" "$dir/wl.txt" 2>/dev/null
check "--resume fetches a worker_lost line again" test "$(curl -s "$base/count/wl"),$(errcode < "$dir/wl.jsonl")" = "1,None"

# Options refused with exit 2 and a message naming the option or the input; -H takes one value.
echo "$base/headers" > "$dir/one.txt"
refused "a directory as the input" "$dir is a directory" "$bin" fetch "$dir"
refused "--rate 0" "--rate" "$bin" fetch --rate 0 "$dir/one.txt"
refused "--rate -1" "--rate" "$bin" fetch --rate -1 "$dir/one.txt"
refused "--timeout 0" "--timeout" "$bin" fetch --timeout 0 "$dir/one.txt"
refused "-j 0" "--processes" "$bin" fetch -j 0 "$dir/one.txt"
refused "-H without a colon" "--header" "$bin" fetch -H nocolon "$dir/one.txt"
"$bin" fetch -H "X-Test: 1" "$dir/one.txt" < /dev/null > "$dir/h.jsonl" 2>/dev/null
check "-H takes one value: the file after it is the input" test "$(field status < "$dir/h.jsonl")" = 200

report
