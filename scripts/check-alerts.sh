#!/usr/bin/env bash
# Checks the Prometheus alerting rules in deploy/prometheus: their syntax
# (`promtool check rules`) and their unit tests (`promtool test rules
# hookfan-rules.test.yml`: each alert fires on the series meant to fire it,
# and only on those). Installs promtool first when it is missing
# (scripts/install-promtool.sh). Exits non-zero when either fails. Run by
# .ci/run; that the rules and the Grafana dashboard name only metrics
# hookfan exports is tests/it/monitoring.rs, part of `cargo test`.
#
#   scripts/check-alerts.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROMTOOL=$(bash "$ROOT/scripts/install-promtool.sh")
cd "$ROOT/deploy/prometheus"
"$PROMTOOL" check rules hookfan-rules.yml
# The tests name the rules file relative to themselves.
"$PROMTOOL" test rules hookfan-rules.test.yml

# The Grafana dashboard's queries parse as PromQL: each becomes a recording
# rule of a throwaway rules file for `promtool check rules`, Grafana's
# variables replaced by values.
QUERIES=$(mktemp /tmp/hookfan-dashboard-rules.XXXXXX.yml)
trap 'rm -f "$QUERIES"' EXIT
python3 - "$ROOT/deploy/grafana/hookfan.json" > "$QUERIES" <<'PY'
import json, sys
def exprs(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "expr" and isinstance(x, str):
                yield x
            else:
                yield from exprs(x)
    elif isinstance(v, list):
        for x in v:
            yield from exprs(x)
subst = {"$__rate_interval": "5m", "$__range": "1h", "$instance": ".*"}
print("groups:\n  - name: dashboard\n    rules:")
for n, e in enumerate(exprs(json.load(open(sys.argv[1])))):
    for k, v in subst.items():
        e = e.replace(k, v)
    print(f"      - record: dashboard:query_{n}\n        expr: {json.dumps(e)}")
PY
echo "Grafana dashboard deploy/grafana/hookfan.json:"
"$PROMTOOL" check rules "$QUERIES"
