#!/usr/bin/env bash
# `coropool fetch --robots` against the test server's robots.txt: the URLs it disallows for
# our agent get error robots (naming the file and the rule) and are never requested, each
# origin's robots.txt is fetched once over all workers, Crawl-delay spaces the requests, and
# a robots.txt that answers 503 disallows its origin while one that is missing allows all.
# Usage: fetch_robots_test.sh PATH/TO/coropool PATH/TO/http_server.py
set -u
source "$(dirname "$0")/check.sh"
robots=$(mktemp)
export COROPOOL_TEST_ROBOTS=$robots  # read by the server at each request for /robots.txt
against_curl "$@"
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir" "$robots"' EXIT
other="http://localhost:$port"
count() { curl -s "$base/count/$1"; }

cat > "$robots" <<'TXT'
# for everyone
User-agent: *
Disallow: /seen/everyone

User-agent: coropool
Disallow: /seen/secret
Allow: /seen/secret-but-open
Disallow: /*.private$
TXT
for i in $(seq 1 10); do
  for h in "$base" "$other"; do
    echo "$h/seen/secret-$i"                # disallowed
    echo "$h/seen/secret-but-open-$i"       # allowed: the longer Allow
    echo "$h/seen/ok-$i.private?x"          # allowed: $ ends the pattern
    echo "$h/seen/ok-$i.private"            # disallowed
    echo "$h/seen/everyone-$i"              # allowed: the * group is not ours
  done
done > "$dir/urls.txt"
"$bin" fetch --robots -j2 -c8 --keep-order "$dir/urls.txt" > "$dir/rec.jsonl" 2> "$dir/err.txt"
rc=$?
python3 - "$dir/rec.jsonl" > "$dir/sum.txt" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
bad = [r for r in recs if (r["error"] or {}).get("code") == "robots"]
good = [r for r in recs if r["status"] == 200]
print(len(recs), len(bad), len(good))
print(all("/seen/secret-" in r["url"] and "-but-open" not in r["url"] or r["url"].endswith(".private") for r in bad))
print(all("/robots.txt disallows it (Disallow: /seen/secret)" in r["error"]["message"] for r in bad if "secret" in r["url"]))
print(all("(Disallow: /*.private$)" in r["error"]["message"] for r in bad if r["url"].endswith(".private")))
PY
check "--robots: 100 records, 40 disallowed, 60 answered, exit 1 ($rc)" \
  test "$(head -1 "$dir/sum.txt")" = "100 40 60" -a "$rc" -eq 1
check "the disallowed ones are what the rules say (longest match, \$, our group)" test "$(sed -n 2p "$dir/sum.txt")" = True
check "each record names the robots.txt and the rule" test "$(sed -n 3,4p "$dir/sum.txt" | tr '\n' ' ')" = "True True "
check "robots.txt fetched once per origin over two workers (2 origins)" test "$(count robots)" = 2
# /seen/KEY counts under KEY, its query aside: ok-1.private came twice, with ?x only.
check "a disallowed URL is never requested" \
  test "$(count secret-1)/$(count ok-1.private)/$(count secret-but-open-1)" = 0/2/2
check "the summary counts them by error" grep -q "robots:40" "$dir/err.txt"

# Another agent gets the * group.
"$bin" fetch --robots --user-agent "OtherBot/2.0" --keep-order "$dir/urls.txt" 2> /dev/null | errcode | sort | uniq -c | awk '{print $1, $2}' > "$dir/other.txt"
check "--user-agent OtherBot: the * group's rules (20 disallowed)" test "$(tr '\n' ' ' < "$dir/other.txt")" = "80 None 20 robots "
"$bin" fetch --robots -H "User-Agent: coropool-like/1" "$dir/urls.txt" 2> /dev/null | errcode | grep -c robots > "$dir/h.txt"
check "-H User-Agent names the agent too (coropool-like is not coropool: 20)" test "$(cat "$dir/h.txt")" = 20

# Without --robots, robots.txt is neither fetched nor honoured.
before=$(count robots)
"$bin" fetch "$dir/urls.txt" 2> /dev/null | errcode | sort -u > "$dir/none.txt"
check "without --robots: every URL fetched, robots.txt not asked for" \
  test "$(cat "$dir/none.txt")" = None -a "$(count robots)" = "$before"

# Crawl-delay: requests to the host start that far apart, over all workers.
printf 'User-agent: *\nCrawl-delay: 0.25\n' > "$robots"
for i in 1 2 3 4 5; do echo "$base/seen/delay-$i"; done > "$dir/delay.txt"
start=$(date +%s%N)
"$bin" fetch --robots -j2 -c4 "$dir/delay.txt" > /dev/null 2>&1
ms=$((($(date +%s%N) - start) / 1000000))
check "Crawl-delay 0.25 s: 5 requests over 2 workers take at least 1 s ($ms ms)" test "$ms" -ge 1000

# A robots.txt that answers 503 disallows its origin; a missing one allows all.
echo "status: 503" > "$robots"
"$bin" fetch --robots "$dir/delay.txt" > "$dir/503.jsonl" 2> /dev/null
check "robots.txt answering 503: every URL of the origin gets robots, saying why" \
  test "$(errcode < "$dir/503.jsonl" | sort -u)" = robots -a -n "$(grep -F "could not be had (status 503)" "$dir/503.jsonl")"
rm -f "$robots"
"$bin" fetch --robots "$dir/delay.txt" 2> /dev/null | errcode | sort -u > "$dir/404.txt"
check "no robots.txt (404): every URL fetched" test "$(cat "$dir/404.txt")" = None
check "no robots dir is left behind" test -z "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'coropool-robots-*' -newer "$dir/urls.txt" 2> /dev/null)"
report
