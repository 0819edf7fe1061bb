#!/usr/bin/env bash
# `coropool fetch` request bodies (-d/--data, --data-binary, --json, with -X and -H) against
# curl itself: the same options through both to the test server's /echo, which answers with
# the method, Content-Type, Accept and body it received; the answers must be byte for byte
# the same. Bodies from files, and the errors for an unreadable one. --compressed against
# curl --compressed: the same decoded body, with bytes and wire_bytes in the record.
# Usage: fetch_body_test.sh PATH/TO/coropool PATH/TO/http_server.py
set -u
source "$(dirname "$0")/check.sh"
against_curl "$@"

printf 'a=1\nb=2\r\n' > "$dir/form.txt"
printf '{"k": [1, 2],\n "v": "\xc3\xa9"}\n' > "$dir/doc.json"
head -c 3000 /dev/urandom > "$dir/blob.bin"
cases=(
  "-d x=1"
  "-d x=1 -d y=2"
  "--data a%20b --data c"
  "-d @$dir/form.txt"
  "--data-binary @$dir/form.txt"
  "--data-binary @$dir/blob.bin"
  "-d first --data-binary @$dir/form.txt -d last"
  "--json {\"a\":1}"
  "--json [1, --json 2]"
  "--json @$dir/doc.json"
  "-X PUT -d z"
  "-X PATCH --json {}"
  "-d q -X DELETE"
  "-H Content-Type:text/plain -d q"
  "-H Accept:text/csv --json 1"
  "-b a=1;b=2"
  "--cookie a=1 -d x"
)
for args in "${cases[@]}"; do
  n=${#args}
  # shellcheck disable=SC2086  # word splitting is the point: the options as a user types them
  curl -s $args "$base/echo/$n" > "$dir/curl.out"
  echo "$base/echo/$n" > "$dir/url.txt"
  rm -rf "$dir/saved"
  # shellcheck disable=SC2086
  "$bin" fetch --save-dir "$dir/saved" $args "$dir/url.txt" > "$dir/rec.jsonl" 2> "$dir/err.txt"
  rc=$?
  cat "$dir"/saved/* > "$dir/ours.out" 2> /dev/null
  check "as curl: fetch $args (exit $rc)" cmp -s "$dir/curl.out" "$dir/ours.out"
done
# The same body goes with every URL of the list.
for i in 1 2 3; do echo "$base/echo/many$i"; done > "$dir/three.txt"
"$bin" fetch --save-dir "$dir/three" --json '{"n":3}' "$dir/three.txt" > /dev/null 2>&1
check "every URL gets the body" test "$(cat "$dir"/three/* | grep -o '{"n":3}' | wc -l)" = 3

# --compressed: asks for gzip and decodes it as curl --compressed does.
echo "$base/gzip/100000" > "$dir/gz.txt"
curl -s --compressed "$base/gzip/100000" > "$dir/gz_curl.out"
"$bin" fetch --compressed --save-dir "$dir/gz" "$dir/gz.txt" > "$dir/gz.jsonl" 2> /dev/null
check "--compressed: the body decoded as curl decodes it" cmp -s "$dir/gz_curl.out" "$dir"/gz/*
record() { python3 -c 'import json,sys; r = json.loads(sys.stdin.readline()); print(r["bytes"], r["wire_bytes"] < r["bytes"])'; }
check "--compressed: bytes is the decoded size, wire_bytes the smaller one on the wire" \
  test "$(record < "$dir/gz.jsonl")" = "100000 True"
"$bin" fetch "$dir/gz.txt" 2> /dev/null | python3 -c 'import json,sys; r = json.loads(sys.stdin.readline()); print(r["bytes"], r["wire_bytes"])' > "$dir/plain"
check "without it nothing is compressed: bytes = wire_bytes" test "$(cat "$dir/plain")" = "100000 100000"

# -x/--proxy: the test server answers proxy requests (an absolute URL in the request line),
# so a host that does not exist answers through it, as with curl -x; and http_proxy is
# honoured without -x.
echo "http://coropool.invalid/echo/proxied" > "$dir/px.txt"
curl -s -x "$base" -d via "http://coropool.invalid/echo/proxied" > "$dir/px_curl.out"
"$bin" fetch -x "$base" -d via --save-dir "$dir/px" "$dir/px.txt" > /dev/null 2>&1
check "-x/--proxy: through the proxy as curl -x" cmp -s "$dir/px_curl.out" "$dir"/px/*
http_proxy=$base "$bin" fetch "$dir/px.txt" 2> /dev/null | field status > "$dir/px_env"
check "http_proxy is honoured" test "$(cat "$dir/px_env")" = 200
"$bin" fetch "$dir/px.txt" 2> /dev/null | errcode > "$dir/px_none"
check "and without either the host does not resolve" test "$(cat "$dir/px_none")" = dns

# --hash: the digest of the body as curl receives it (decoded with --compressed), as
# sha256sum and md5sum print it; with --save-dir too, of the file saved.
printf '%s\n' "$base/bytes/100000" "$base/text/h" "$base/gzip/5000" > "$dir/h.txt"
want=$(for u in "$base/bytes/100000" "$base/text/h"; do curl -s "$u" | sha256sum | cut -d' ' -f1; done
  curl -s --compressed "$base/gzip/5000" | sha256sum | cut -d' ' -f1)
"$bin" fetch --keep-order --compressed --hash sha256 --save-dir "$dir/h" "$dir/h.txt" > "$dir/h.jsonl" 2> /dev/null
check "--hash sha256: as sha256sum of curl's body" test "$(field hash < "$dir/h.jsonl")" = "$want"
check "and of the file saved" \
  test "$(python3 -c 'import json,sys; [print(json.loads(l)["file"]) for l in sys.stdin]' < "$dir/h.jsonl" | xargs sha256sum | cut -d' ' -f1)" = "$want"
"$bin" fetch --hash md5 "$dir/gz.txt" 2> /dev/null | field hash > "$dir/md5"
check "--hash md5" test "$(cat "$dir/md5")" = "$(curl -s "$base/gzip/100000" | md5sum | cut -d' ' -f1)"
"$bin" fetch "$dir/gz.txt" 2> /dev/null | field hash > "$dir/nohash"
check "no hash without --hash" test "$(cat "$dir/nohash")" = None
"$bin" fetch --keep-order --hash xxh64 "$dir/h.txt" 2> /dev/null | field hash > "$dir/xxh"
check "--hash xxh64: as xxhsum of curl's body" test "$(cat "$dir/xxh")" = \
  "$(for u in "$base/bytes/100000" "$base/text/h" "$base/gzip/5000"; do curl -s "$u" | xxhsum -H1 | cut -d' ' -f1; done)"
"$bin" fetch --hash crc32 "$dir/gz.txt" > /dev/null 2>&1
check "an unknown --hash is exit 2" test $? -eq 2

# --body: the body in the record, as curl receives it: text as "body", other bytes as
# "body_base64", cut at --max-body-inline with "body_truncated".
printf '%s\n' "$base/text/b" "$base/gzip/3000" "$base/bytes/100" > "$dir/b.txt"
"$bin" fetch --keep-order --body -H 'Accept-Encoding: gzip' "$dir/b.txt" > "$dir/b.jsonl" 2> /dev/null
curl -s "$base/text/b" > "$dir/b1.curl"
curl -s -H 'Accept-Encoding: gzip' "$base/gzip/3000" > "$dir/b2.curl"
python3 - "$dir" << 'PY' > "$dir/b.check"
import base64, json, sys
d = sys.argv[1]
recs = [json.loads(l) for l in open(d + "/b.jsonl")]
print(recs[0].get("body", "").encode() == open(d + "/b1.curl", "rb").read())
print(base64.b64decode(recs[1].get("body_base64", "")) == open(d + "/b2.curl", "rb").read() and "body" not in recs[1])
print(recs[2].get("body") == "x" * 100 and "body_truncated" not in recs[2])
PY
check "--body: text as curl gets it" test "$(sed -n 1p "$dir/b.check")" = True
check "--body: other bytes as body_base64, as curl gets them" test "$(sed -n 2p "$dir/b.check")" = True
check "--body: a whole body is not truncated" test "$(sed -n 3p "$dir/b.check")" = True
echo "$base/bytes/100" | "$bin" fetch --body --max-body-inline 5 > "$dir/bt.jsonl" 2> /dev/null
check "--max-body-inline 5: five bytes and body_truncated" \
  test "$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["body"], r["body_truncated"])' < "$dir/bt.jsonl")" = "xxxxx True"

# --header-field: the response's headers asked for, null when it has none; "redirects": the
# URLs followed, as curl follows them.
echo "$base/redirect/3" | "$bin" fetch --header-field Content-Type --header-field X-None > "$dir/hf.jsonl" 2> /dev/null
check "--header-field: the last response's value, as curl reports it" \
  test "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["headers"])' < "$dir/hf.jsonl")" = \
  "{'Content-Type': '$(curl -sL -o /dev/null -w '%{content_type}' "$base/redirect/3")', 'X-None': None}"
curl -sL -o /dev/null -D - "$base/redirect/3" | tr -d '\r' | sed -n 's/^Location: //p' |
  sed "s|^/|$base/|" > "$dir/chain.curl"
python3 -c 'import json,sys; [print(u) for u in json.load(sys.stdin)["redirects"]]' < "$dir/hf.jsonl" > "$dir/chain.ours"
check "redirects: the chain curl follows (3 URLs)" \
  test "$(cat "$dir/chain.ours")" = "$(cat "$dir/chain.curl")" -a "$(wc -l < "$dir/chain.ours")" -eq 3
echo "$base/text/nr" | "$bin" fetch 2> /dev/null | field redirects > "$dir/nochain"
check "no redirects field without a redirect" test "$(cat "$dir/nochain")" = None

# --format csv: the same fields as the JSON records, in a header and a row per URL that a CSV
# reader gives back whole (a body's line ends included); --resume-failed on it keeps one
# header and fetches only the failed line again.
printf '%s\n' "$base/text/c" "$base/redirect/2" "$base/status/404" "http://127.0.0.1:1/x" "nope" > "$dir/c.txt"
"$bin" fetch --keep-order --body --header-field Content-Type "$dir/c.txt" > "$dir/c.jsonl" 2> /dev/null
"$bin" fetch --keep-order --body --header-field Content-Type --format csv -o "$dir/c.csv" "$dir/c.txt" 2> /dev/null
python3 - "$dir" << 'PY' > "$dir/c.check"
import csv, json, re, sys
d = sys.argv[1]
digits = lambda m: re.sub(r"[0-9]+", "#", m)  # curl's "after N ms" differs from run to run
js = [json.loads(l) for l in open(d + "/c.jsonl")]
rows = list(csv.DictReader(open(d + "/c.csv", newline="")))
def same(j, r):
    err = j["error"] or {}
    return (str(j["line"]) == r["line"] and j["url"] == r["url"] and (j["final_url"] or "") == r["final_url"]
            and str(j["status"] or "") == r["status"] and str(j["bytes"]) == r["bytes"]
            and (j["content_type"] or "") == r["content_type"] and " ".join(j.get("redirects", [])) == r["redirects"]
            and (j.get("headers", {}).get("Content-Type") or "") == r["header:Content-Type"]
            and j.get("body", "") == r["body"] and err.get("code", "") == r["error"]
            and digits(err.get("message", "")) == digits(r["message"]) and str(j["attempts"]) == r["attempts"])
print(len(rows) == len(js) == 5 and all(same(j, r) for j, r in zip(js, rows)))
PY
check "--format csv: every field as the JSON record has it" test "$(cat "$dir/c.check")" = True
"$bin" fetch --keep-order --format csv --resume-failed -o "$dir/c.csv" "$dir/c.txt" > /dev/null 2> "$dir/c.err"
python3 -c 'import csv,sys; r=list(csv.reader(open(sys.argv[1], newline=""))); print(len(r), sum(x[0] == "line" for x in r), sorted(int(x[0]) for x in r[1:]))' \
  "$dir/c.csv" > "$dir/c.resume"
check "--format csv --resume-failed: one header, each line once" test "$(cat "$dir/c.resume")" = "6 1 [1, 2, 3, 4, 5]"
check "and only the failed lines fetched again" grep -q "3 recorded before" "$dir/c.err"

# --save-as path: files named HOST:PORT/PATH as wget -x names them, the bytes curl gets, and
# no URL can put one outside --save-dir.
printf '%s\n' "$base/text/a" "$base/text/" "$base/text/../../../../etc/evil" "$base/text/%2e%2e/x?q=1&r=/2" \
  "$base/bytes/5" > "$dir/sa.txt"
"$bin" fetch --save-dir "$dir/sa" --save-as path "$dir/sa.txt" > /dev/null 2>&1
(cd "$dir/sa" && find . -type f | sort) > "$dir/sa.files"
h="127.0.0.1:$port"
check "--save-as path: HOST:PORT/PATH, index.html for a directory, ?QUERY on the name, .. resolved inside" \
  test "$(tr '\n' ' ' < "$dir/sa.files")" = "./$h/bytes/5 ./$h/etc/evil ./$h/text/%2e%2e/x?q=1&r=%2F2 ./$h/text/a ./$h/text/index.html "
check "and each file holds what curl gets" cmp -s "$dir/sa/$h/bytes/5" <(curl -s "$base/bytes/5")
"$bin" fetch --save-as name "$dir/sa.txt" > /dev/null 2>&1
check "an unknown --save-as is exit 2" test $? -eq 2

"$bin" fetch -d @"$dir/missing.txt" "$dir/url.txt" > /dev/null 2> "$dir/e1.txt"
check "an unreadable @FILE is exit 2" test $? -eq 2
check "naming the file and the option" grep -q "missing.txt for -d" "$dir/e1.txt"
"$bin" fetch --data-binary @- - < "$dir/url.txt" > /dev/null 2> "$dir/e2.txt"
check "@- while the URLs come from stdin is exit 2" test $? -eq 2
check "saying why" grep -q "stdin" "$dir/e2.txt"
report
