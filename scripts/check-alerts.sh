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
