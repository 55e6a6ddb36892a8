#!/usr/bin/env bash
# Runs the criterion benchmarks and prints one line per benchmark with its
# median, for pasting into notes. Extra arguments go to criterion (a filter).
#   scripts/bench.sh            # all
#   scripts/bench.sh fanout     # names containing "fanout"
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench intake --bench fanout -- "$@" >/dev/null
# criterion keeps each benchmark's estimates in target/criterion/<group>/<name>/new/.
find target/criterion -path '*/new/estimates.json' | sort | while read -r f; do
  name=${f#target/criterion/}
  name=${name%/new/estimates.json}
  python3 - "$f" "$name" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
m = e["median"]["point_estimate"]
lo = e["median"]["confidence_interval"]["lower_bound"]
hi = e["median"]["confidence_interval"]["upper_bound"]
def fmt(ns):
    for unit, div in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= div:
            return f"{ns/div:.3f} {unit}"
    return f"{ns:.1f} ns"
print(f"{sys.argv[2]:<90} median {fmt(m)}  [{fmt(lo)} .. {fmt(hi)}]")
PY
done
