#!/usr/bin/env bash
# GNU parallel is the oracle for `coropool run`: each command line of the table below runs
# through `parallel --will-cite` and through `coropool run`, in the same directory with the same
# stdin, and must give the same stdout (sorted where parallel promises no order), the same exit
# status and the same joblog rows (every column but Starttime and JobRuntime).
# Usage: parallel_diff_test.sh PATH/TO/coropool
set -u
command -v parallel > /dev/null || { echo "GNU parallel missing: run scripts/install-deps"; exit 77; }
bin=$(readlink -f "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/check.sh"
unset PARALLEL_SHELL PARALLEL
mkdir "$dir/tmp" && export TMPDIR="$dir/tmp"  # where --files leaves its files
export LC_ALL=C.UTF-8

# Fixtures, made afresh for each run of each tool.
fixtures() {
  rm -rf "$dir/work" && mkdir "$dir/work" && cd "$dir/work" || exit 1
  printf 'x\ny\n' > f1.txt
  printf '1\n2\n3\n' > f2.txt
  printf 'n,v\nk1,10\nk2,20\n' > nv.csv
  printf 'echo one\n\necho "two  spaces"\nexit 3\n' > cmds.txt
  printf 'dir/sub/file.tar.gz\na b.txt\n\nplain\n' > args.txt
}
# A bash function, exported as users export theirs for parallel.
greet() { echo "hello $1"; }
export -f greet

# `same ORDER STDIN ARGS...`: ORDER is "k" when parallel promises the order (-k or -j1), else
# "s"; STDIN is a printf format for the input (empty: none). With $post set, each tool's
# output goes through it (run in the work directory) before the comparison.
n=0
same() {
  local order=$1 input=$2
  shift 2
  n=$((n + 1))
  local name="[$n] $*"
  local prc crc
  fixtures
  printf "$input" | timeout 60 parallel --will-cite --joblog "$dir/p.log" "$@" > "$dir/p.out" 2> "$dir/p.err"
  prc=$?
  [ -n "${post:-}" ] && (eval "$post") < "$dir/p.out" > "$dir/p.post" && mv "$dir/p.post" "$dir/p.out"
  fixtures
  printf "$input" | timeout 60 "$bin" run --quiet --joblog "$dir/c.log" "$@" > "$dir/c.out" 2> "$dir/c.err"
  crc=$?
  [ -n "${post:-}" ] && (eval "$post") < "$dir/c.out" > "$dir/c.post" && mv "$dir/c.post" "$dir/c.out"
  cd "$dir" || exit 1
  if [ "$order" = s ]; then
    sort "$dir/p.out" -o "$dir/p.out"
    sort "$dir/c.out" -o "$dir/c.out"
  fi
  local rows_p rows_c
  rows_p=$(tail -n +2 "$dir/p.log" 2> /dev/null | cut -f1,2,5- | sort -n)
  rows_c=$(tail -n +2 "$dir/c.log" 2> /dev/null | cut -f1,2,5- | sort -n)
  if cmp -s "$dir/p.out" "$dir/c.out" && [ "$prc" = "$crc" ] && [ "$rows_p" = "$rows_c" ]; then
    check "$name" true
    return
  fi
  check "$name" false
  echo "  exit: parallel $prc, coropool $crc"
  diff <(cat "$dir/p.out") <(cat "$dir/c.out") | head -10 | sed 's/^/  out /'
  diff <(echo "$rows_p") <(echo "$rows_c") | head -10 | sed 's/^/  log /'
  head -5 "$dir/c.err" | sed 's/^/  coropool stderr: /'
}

# Input sources and their combinations.
same s '' echo ::: a b c
same k '' -k echo ::: a b ::: 1 2
same k '' -k echo ::: a b c ::: 1 ::: x y
same k '' -k echo {2} {1} ::: a b :::+ 1 2 ::: X Y
same k '' -k echo ::: a b c :::+ 1 2
same k '' -k echo ::: 'a b' :::+ 'c d'
same k '' -k --link echo ::: a b c ::: 1 2
same k '' -k --link echo ::: a b ::: 1 2 3 4
same k '' -k echo {1}-{2} ::: a b :::: f2.txt
same k '' -k echo :::: f1.txt f2.txt
same k '' -k echo :::: f1.txt ::::+ f2.txt
same k '' -k -a f1.txt echo
same k '' -k -a f1.txt -a f2.txt echo
same k '' -k -a f1.txt echo ::: p q
same k 'a\nb\n' -k echo {}/{} :::: -
same k 'a\nb\n' -k echo :::: - ::: 1 2
# Command lines from a file or stdin; a blank line is a job of its own.
same k '' -k :::: cmds.txt
same k 'echo 1\n\necho 3\n' -k
same k '' -k ::: 'echo a' 'echo b; exit 2'
# Arguments from stdin; -r skips blank ones.
same k 'a\n\nb\n' -k echo x{}
same k 'a\n\n  \nb\n' -k -r echo x{}
same k '' -k -j 1 -a args.txt printf "'%s|'" {} {.} {/} {//} {/.} {#} {%}
# Replacement strings.
same k '' -k echo {} {.} {/} {//} {/.} ::: /a/b.c.d c.d /x.y/z ./e
same k '' -j1 -k echo {#} {%} ::: a b c
same k '' -k echo {1.} {2/} {-1} {-2//} ::: a.x b.y ::: /p/q
same k '' -k echo {1} {3} ::: a ::: b
same k '' -k -I ,, echo ,, {} ::: a b
same k '' -k echo pre{}post ::: a 'b c'
# Several arguments per job.
same k '' -k -N2 echo {1}-{2} ::: a b c
same k '' -k -n2 echo ::: a b c d e
same k '' -k -N0 echo hi ::: 1 2 3
same k '' -k -N2 --colsep , echo {1}{2}{3}{4} ::: a,b c,d e,f
same k '' -k --tag -N2 echo ::: a b c d
same k '' -j2 -k -X echo ::: a b c d e
same k '' -j2 -k -X echo x{} ::: a b c d e
same k '' -j2 -k -X echo {1} x{} ::: a b c d
same k '' -j2 -k -m echo x{}y ::: a b c
same k '' -j1 -k -m echo ::: a b c d
# Delimiters, columns and headers.
same k 'a b\0c\0' -k -0 echo
same k 'a,b,c' -k -d , echo
same k 'a\tb\tc' -k -d '\t' echo
same k '' -k --colsep , echo {2} {1} ::: a,b c,d
same k '' -k --colsep ' +' echo {3}{1} ::: 'a b  c'
same k '' -k --colsep , --header : echo {n}={v} :::: nv.csv
same k '' -k --header : echo {a} {b} ::: a 1 2 ::: b x
# Quoting: every argument one word, whatever it holds.
same k '' -k echo ::: "it's" 'a"b' 'x$y' '*' '~' 'a b' '' 'a\b'
same k '' -k printf '%s\n' ::: 'semi;colon' 'pipe|x' '$(date)' '`id`' 'a&&b' '#hash' '!bang'
same k '' -k echo ::: 'ünï' '日本語' 'emoji 😀' 'tab	x'
same k '' -k echo {} ::: -n -e x
same k '' -k echo {2}{1} ::: 'a b' ::: "c'd"
same k '' -k 'echo "{}"' ::: 'a b' '$x' "it's"
same k '' -k printf '<%s>\n' {} ::: '  lead' 'trail  ' ' mid  dle '
same k '' -k -q printf '%s|%s\n' 'a b' ::: 'c d' "e'f"
same k '' -k -q echo "a {} b" ::: 'x y'
# The shell: bash syntax, builtins that are no programs, exported functions, the environment.
same k '' -k ::: 'echo {1..3}' '[[ a == a ]] && echo yes' 'for i in 1 2; do echo $i; done' 'echo $((6*7))'
same k '' -k ::: ':' 'command -v sh' 'hash' 'getopts a x; echo $?' 'type -t cd'
same k '' -k greet ::: alice bob
same k '' -k echo '$PARALLEL_SEQ' ::: a b c
same k '' -j1 -k 'echo $PARALLEL_JOBSLOT' ::: a b
same k '' -k 'echo {} > out_{}.txt; cat out_{}.txt' ::: a b
same k '' -k 'seq 1 {}' ::: 1000 2000
same k '' -k 'echo out; echo err >&2' ::: 1 2
# Failing jobs, signals and --halt, with its exit status rule.
same s '' ::: 'exit 3' 'exit 0' 'exit 4'
same s '' ::: 'kill -TERM $$' 'echo ok'
same s '' ::: 'kill -KILL $$' 'exit 1'
same s "$(seq 1 102 | tr '\n' ' ' | sed 's/ /\\n/g')" false
same k '' -j1 --halt 1 ::: 'exit 3' 'exit 0' 'exit 4'
same k '' -j1 --halt 2 ::: 'exit 0' 'exit 5' 'exit 4'
same k '' -j1 --halt now,fail=1 ::: 'exit 0' 'exit 5' 'exit 4'
same k '' -j1 --halt soon,fail=2 ::: 'exit 1' 'exit 0' 'exit 2' 'exit 0' 'exit 0'
same k '' -j1 --halt now,success=1 ::: 'exit 1' 'exit 0' 'exit 2'
same k '' -j1 --halt now,done=1 ::: true true true true
same k '' -j1 --halt soon,fail=50% ::: true false false true true true
same k '' -j1 --halt soon,fail=30% ::: true false false true true true
same k '' -j1 --halt now,success=50% ::: true false true true
same k '' -j1 --retries 2 ::: 'exit 1' 'echo fine'
# Output: tags, -v, -j forms.
same k '' -k --tag echo ::: a b ::: 1 2
same k '' -k --tag echo ::: '' a ::: b
same k '' -k ::: '' ::: 'echo hi'
same k '' -k --tagstring '<{2}>' echo ::: a ::: 1 2
same k '' -k -v echo ::: a 'b c'
same k '' -k -j 50% echo ::: a b
same k '' -k -j +1 echo ::: a b
same k '' -k -j 0 echo ::: a b
same k '' -k --line-buffer echo ::: a b
same k '' -k -u echo ::: a
same k '' -k --nice 5 'ps -o ni= -p $$; echo {}' ::: a b
same k '' -k --delay 0.1 echo ::: a b
# --pipe: stdin cut into chunks at line ends (the Send column is each chunk's size).
same s "$(seq -s '\n' 1 1000)\n" --pipe --block 1k wc -c
same s "$(seq -s '\n' 1 500)\n" --pipe --block 100 wc -l
same k "$(seq -s '\n' 1 10)\n" -k --pipe -N 3 'tr "\n" ,; echo'
same k 'x\ny' -k --pipe -N1 'od -c | head -1'
same k 'a\nb\nc\nd\ne\n' -k --pipe -N 2 'echo {#}: $(tr "\n" " ")'
# Output to files: --results DIR's layout and contents, --files' files.
post='cat; find res -type f | sort | while read -r f; do echo "== $f"; cat "$f"; echo; done' \
  same k '' -k --results res 'echo {}; echo err-{2} >&2' ::: a 'b c' 'x/y' ::: 1 ''
post='cat; find res -type f | sort' same k '' -k --results res --header : echo {a} ::: a 1 2
post='xargs -d "\n" cat' same k '' -k --files 'seq {}' ::: 3 5

check "the table holds at least 60 command lines ($n)" test "$n" -ge 60
report
