#!/bin/bash
# Runs examples/scale-out/map-array.sbatch as Slurm would, for each of 3 array tasks (array
# 10-14:2), and the example as a Kubernetes Indexed Job pod; checks that the shards are
# disjoint, cover every item, and hold the right values.
# Usage: check-map-array.sh PATH/TO/example_shard_map
set -euo pipefail
program=$(readlink -f "$1")
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
for task in 10 12 14; do
  COROPOOL_EXAMPLE=$program SLURM_ARRAY_JOB_ID=42 SLURM_ARRAY_TASK_ID=$task SLURM_ARRAY_TASK_MIN=10 \
    SLURM_ARRAY_TASK_STEP=2 SLURM_ARRAY_TASK_COUNT=3 bash "$here/map-array.sbatch" 3000 > /dev/null
done
JOB_COMPLETION_INDEX=1 COROPOOL_SHARDS=3 "$program" 3000 pod-1.tsv > /dev/null
python3 - <<'PY'
def steps(n):
    s = 0
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        s += 1
    return s
seen = []
for k, task in enumerate((10, 12, 14)):
    rows = [tuple(map(int, l.split("\t"))) for l in open(f"results-42-{task}.tsv")]
    assert [n for n, _ in rows] == list(range(k + 1, 3001, 3)), f"task {task}: wrong items, or out of order"
    assert all(s == steps(n) for n, s in rows), f"task {task}: a wrong value"
    seen += [n for n, _ in rows]
assert sorted(seen) == list(range(1, 3001)), "the shards are not disjoint and covering"
assert open("pod-1.tsv").read() == open("results-42-12.tsv").read(), "the Indexed Job pod 1 differs from task 12"
print("ok: 3 array tasks cover 1..3000 once each with the right values; pod 1 = task 12")
PY
test -z "$(ls ./*.part 2>/dev/null)"
