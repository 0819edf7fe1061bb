#!/usr/bin/env bash
# `coropool fetch` with JSON request lines: {"url", "method", "headers", "body" or
# "body_base64", "id"} per line, mixed with plain URL lines or (--input-format jsonl) alone.
# What the test server received is compared with curl's request for the same line; ids come
# back as given; a malformed line gets its own record naming file:line and nothing else is
# lost.
# Usage: fetch_jsonl_test.sh PATH/TO/coropool PATH/TO/http_server.py
set -u
source "$(dirname "$0")/check.sh"
against_curl "$@"
# The record of input line N, as JSON, for python expressions on `r`.
rec() { python3 -c 'import json,sys; rs = {json.loads(l)["line"]: json.loads(l) for l in open(sys.argv[1])}; r = rs[int(sys.argv[2])]; print(eval(sys.argv[3]))' "$@"; }
saved() { rec "$1" "$2" 'open(r["file"], "rb").read().decode("latin-1")'; }

cat > "$dir/req.txt" <<IN
{"url": "$base/text/a", "id": 7}
{"url": "$base/echo/put", "method": "PUT", "headers": {"Content-Type": "application/json", "X-A": "1"}, "body": "{\"k\": \"\u00e9\"}", "id": "row-2"}
{"url": "$base/echo/b64", "body_base64": "AAEC/w==", "id": {"n": [1, 2]}}
{"url": "$base/echo/x"
$base/text/plain-line
# a comment
{"url": "$base/text/c", "colour": "red", "id": 6}
{"method": "GET"}
{"url": "ftp://example.com/y", "id": null}
{"url": "$base/echo/hdr", "headers": ["Accept: text/csv", "X-B: 2"]}
{"url": "$base/echo/get", "method": "GET"}
IN
"$bin" fetch --save-dir "$dir/s" -H "Accept: application/xml" "$dir/req.txt" > "$dir/out.jsonl" 2> "$dir/err.txt"
rc=$?
check "some lines are bad: exit 1" test $rc -eq 1
check "a record for every request line" test "$(wc -l < "$dir/out.jsonl")" = 10
check "ids come back as given (number, string, object, null)" \
  test "$(rec "$dir/out.jsonl" 1 'r["id"]')|$(rec "$dir/out.jsonl" 2 'r["id"]')|$(rec "$dir/out.jsonl" 3 'r["id"]')|$(rec "$dir/out.jsonl" 9 'r["id"]')" = "7|row-2|{'n': [1, 2]}|None"
check "a line without id has none" test "$(rec "$dir/out.jsonl" 5 '"id" in r')" = False

printf '{"k": "\xc3\xa9"}' > "$dir/put_body"
curl -s -X PUT -H "Accept: application/xml" -H "Content-Type: application/json" -H "X-A: 1" --data-binary @"$dir/put_body" "$base/echo/put" > "$dir/put_curl"
check "method, headers and body as curl sends them" test "$(saved "$dir/out.jsonl" 2)" = "$(python3 -c 'import sys; print(open(sys.argv[1], "rb").read().decode("latin-1"))' "$dir/put_curl")"
check "body_base64 arrives as bytes, as a POST" \
  test "$(rec "$dir/out.jsonl" 3 'open(r["file"], "rb").read().split(b"body:\n")[1].hex() + open(r["file"], "rb").read().split(b"\n")[0].decode()')" = "000102ffmethod: POST"
check "a line's header replaces the -H of the same name" \
  test "$(saved "$dir/out.jsonl" 10 | grep '^accept:')" = "accept: text/csv"
check "a line's method without a body" test "$(saved "$dir/out.jsonl" 11 | sed -n 1p)" = "method: GET"
check "a plain URL line beside them" test "$(rec "$dir/out.jsonl" 5 'r["status"]')" = 200
check "malformed JSON: invalid_input naming file:line" \
  test "$(rec "$dir/out.jsonl" 4 'r["error"]["code"] + " " + r["error"]["message"]')" = "invalid_input $dir/req.txt:4: not valid JSON"
check "an unknown field is named" \
  test "$(rec "$dir/out.jsonl" 7 'r["error"]["message"]')" = "$dir/req.txt:7: unknown field \"colour\""
check "no url" test "$(rec "$dir/out.jsonl" 8 'r["error"]["message"]')" = "$dir/req.txt:8: no \"url\""
check "a URL we do not fetch is invalid_url, as on a plain line" test "$(rec "$dir/out.jsonl" 9 'r["error"]["code"]')" = invalid_url
check "stderr names the bad lines" grep -q "req.txt:4: not valid JSON" "$dir/err.txt"

# --input-format says how to read every line.
printf '%s\n' "{\"url\": \"$base/text/j\"}" "$base/text/u" > "$dir/two.txt"
"$bin" fetch --input-format lines --keep-order "$dir/two.txt" 2> /dev/null | errcode | tr '\n' ' ' > "$dir/as_lines"
check "--input-format lines: a { line is a bad URL" test "$(cat "$dir/as_lines")" = "invalid_url None "
"$bin" fetch --input-format jsonl --keep-order "$dir/two.txt" 2> /dev/null | errcode | tr '\n' ' ' > "$dir/as_jsonl"
check "--input-format jsonl: a URL line is bad JSON" test "$(cat "$dir/as_jsonl")" = "None invalid_input "
"$bin" fetch --input-format yaml "$dir/two.txt" > /dev/null 2> "$dir/fmt_err.txt"
check "an unknown --input-format is exit 2" test $? -eq 2
report
