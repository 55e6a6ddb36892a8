#!/usr/bin/env bash
# Makes promtool (Prometheus's rule checker, which scripts/check-alerts.sh
# runs) available and prints its path on stdout.
#
#   scripts/install-promtool.sh        (run it; do not source it)
#
# Does nothing when promtool is already on PATH. Otherwise installs Debian's
# `prometheus` package, which ships /usr/bin/promtool, with apt-get (as
# root; `apt-get update` first only when the install fails on a stale or
# empty package index). The package also brings a Prometheus server unit;
# where no init system runs (containers, CI) it is not started.
set -euo pipefail

if command -v promtool > /dev/null 2>&1; then
  command -v promtool
  exit 0
fi

if ! command -v apt-get > /dev/null 2>&1; then
  echo "promtool is not on PATH and there is no apt-get: install Prometheus's promtool yourself" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "promtool is not on PATH: run this as root to apt-get install prometheus" >&2
  exit 1
fi

install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus > /dev/null
}
echo "installing promtool (Debian package prometheus) ..." >&2
if ! install; then
  DEBIAN_FRONTEND=noninteractive apt-get update > /dev/null
  install
fi
command -v promtool
