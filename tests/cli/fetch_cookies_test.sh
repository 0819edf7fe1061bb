#!/usr/bin/env bash
# `coropool fetch` cookies against curl itself: -b STRING and -b FILE send what curl sends;
# --cookie-jar keeps what responses set, sends it back on that worker's later requests, and
# writes the jar curl -c writes for the same URLs, also when several workers each held some.
# Usage: fetch_cookies_test.sh PATH/TO/coropool PATH/TO/http_server.py
set -u
source "$(dirname "$0")/check.sh"
against_curl "$@"
other="http://localhost:$port"

# A cookie set by one response goes with the next request (one worker, one at a time).
printf '%s\n' "$base/set-cookie?x=1&y=2&z=3" "$base/echo/after" > "$dir/seq.txt"
curl -s -c /dev/null "$base/set-cookie?x=1&y=2&z=3" "$base/echo/after" | tail -n +2 > "$dir/seq.curl"
"$bin" fetch -j1 -c1 --keep-order --save-dir "$dir/seq" --cookie-jar "$dir/seq.jar" "$dir/seq.txt" > /dev/null 2>&1
check "--cookie-jar: a cookie a response set goes back with the next request, as curl sends it" \
  cmp -s "$dir/seq.curl" "$dir/seq/$(cd "$dir/seq" && grep -l '^method' ./* | head -1)"

# Many URLs over two workers, two hosts, session and dated cookies: the jar is curl's.
for i in $(seq 1 40); do
  h=$base
  [ $((i % 2)) -eq 0 ] && h=$other
  # a third of them dated, the rest session cookies, with one of the same name on each host
  if [ $((i % 3)) -eq 0 ]; then echo "$h/set-cookie?k$i=v$i&max_age=3600"; else echo "$h/set-cookie?k$i=v$i&shared=s"; fi
done > "$dir/many.txt"
# shellcheck disable=SC2046  # one curl, every URL: curl's one cookie store
curl -s -c "$dir/many.curl" $(cat "$dir/many.txt") > /dev/null
"$bin" fetch -j2 -c4 --cookie-jar "$dir/many.jar" "$dir/many.txt" > /dev/null 2> "$dir/many.err"
rc=$?
# Expiry times differ by the second the two runs took: a dated cookie's becomes D.
norm() { grep -v '^#' "$1" | grep -v '^$' | awk -F'\t' 'BEGIN {OFS="\t"} {if ($5 != 0) $5 = "D"; print}' | sort; }
check "--cookie-jar over 2 workers: exit 0 ($rc)" test "$rc" -eq 0
check "the jar holds the cookies curl's holds, field for field (expiry to the second aside)" \
  test "$(norm "$dir/many.jar")" = "$(norm "$dir/many.curl")"
check "with curl's header" test "$(head -4 "$dir/many.jar")" = "$(head -4 "$dir/many.curl")"
check "and 42 cookies: 40 own and one shared per host" test "$(norm "$dir/many.jar" | wc -l)" -eq 42
check "no worker's file is left behind" test -z "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'coropool-cookies-*' -newer "$dir/many.txt" 2> /dev/null)"

# -b FILE: the jar's cookies go with the request, as curl -b FILE sends them.
echo "$base/echo/jar" > "$dir/echo.txt"
curl -s -b "$dir/many.curl" "$base/echo/jar" > "$dir/b.curl"
"$bin" fetch --save-dir "$dir/b" -b "$dir/many.curl" "$dir/echo.txt" > /dev/null 2>&1
check "-b FILE sends what curl -b FILE sends" cmp -s "$dir/b.curl" "$dir"/b/*
curl -s -b "$dir/missing.jar" "$base/echo/jar" > "$dir/bm.curl"
"$bin" fetch --save-dir "$dir/bm" -b "$dir/missing.jar" "$dir/echo.txt" > /dev/null 2>&1
rc=$?
check "-b with a missing file sends no cookie and is no error, as with curl ($rc)" \
  test "$rc" -eq 0 -a "$(cat "$dir"/bm/* 2> /dev/null)" = "$(cat "$dir/bm.curl")"
# -b JAR --cookie-jar JAR: a second run starts from the first's cookies and keeps them.
"$bin" fetch -b "$dir/many.jar" --cookie-jar "$dir/many.jar" --save-dir "$dir/again" "$dir/echo.txt" > /dev/null 2>&1
check "-b JAR --cookie-jar JAR: the request carries the jar's cookies" grep -q "k39=v39" "$dir"/again/*
check "and the jar keeps them all" test "$(norm "$dir/many.jar" | wc -l)" -eq 42

mkdir -p "$dir/ro" && chmod a-w "$dir/ro"
if [ ! -w "$dir/ro" ]; then  # (root writes anyway)
  refused "an unwritable --cookie-jar" "$dir/ro/jar" "$bin" fetch --cookie-jar "$dir/ro/jar" "$dir/echo.txt"
fi
refused "a --cookie-jar in a missing directory" "$dir/nodir/jar" "$bin" fetch --cookie-jar "$dir/nodir/jar" "$dir/echo.txt"
report
