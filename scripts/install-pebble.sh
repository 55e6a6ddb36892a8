#!/usr/bin/env bash
# Installs pebble, Let's Encrypt's ACME test server, and its companion
# pebble-challtestsrv (a DNS server the ACME test points pebble at) from the
# Debian package `pebble` into the project's git-ignored .tools/ directory,
# as .tools/bin/pebble and .tools/bin/pebble-challtestsrv. The ACME test
# uses them by that path, never from PATH.
#
#   scripts/install-pebble.sh        (run it; do not source it)
#
# Does nothing when both already run. When pebble is installed system-wide
# (apt-get install pebble), links to it. Otherwise downloads the .deb with
# `apt-get download` (no root needed; when the package lists are missing
# and this runs as root, `apt-get update` first) and unpacks it with
# `dpkg -x`: nothing is installed outside .tools/. Remove .tools/pebble and
# .tools/bin/pebble* to reinstall.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"

# The usage text is read whole before it is searched: `pebble -help | grep
# -q` under pipefail fails whenever grep exits before pebble's last write
# (SIGPIPE), which happened on a loaded machine.
installed() {
  [ -x "$BIN/pebble" ] && [ -x "$BIN/pebble-challtestsrv" ] || return 1
  local usage
  usage=$("$BIN/pebble" -help 2>&1) || true
  [[ "$usage" == *-config* ]]
}

if installed; then
  echo "pebble: $BIN/pebble"
  exit 0
fi
mkdir -p "$BIN"
rm -f "$BIN/pebble" "$BIN/pebble-challtestsrv"

if command -v pebble > /dev/null && command -v pebble-challtestsrv > /dev/null; then
  ln -s "$(command -v pebble)" "$BIN/pebble"
  ln -s "$(command -v pebble-challtestsrv)" "$BIN/pebble-challtestsrv"
else
  echo "installing pebble (Debian package) into $TOOLS ..." >&2
  command -v apt-get > /dev/null && command -v dpkg > /dev/null || {
    echo "apt-get and dpkg are needed to fetch the Debian package pebble;" >&2
    echo "or put pebble and pebble-challtestsrv binaries in $BIN" >&2
    exit 1
  }
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  if ! (cd "$WORK" && apt-get download pebble > "$WORK/apt.log" 2>&1); then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq > "$WORK/update.log" 2>&1 || { cat "$WORK/update.log" >&2; exit 1; }
      (cd "$WORK" && apt-get download pebble > "$WORK/apt.log" 2>&1) || { cat "$WORK/apt.log" >&2; exit 1; }
    else
      cat "$WORK/apt.log" >&2
      echo "apt-get download pebble failed; run 'sudo apt-get update' and try again" >&2
      exit 1
    fi
  fi
  rm -rf "$TOOLS/pebble"
  dpkg -x "$WORK"/pebble_*.deb "$TOOLS/pebble"
  ln -s ../pebble/usr/bin/pebble "$BIN/pebble"
  ln -s ../pebble/usr/bin/pebble-challtestsrv "$BIN/pebble-challtestsrv"
fi

installed || { echo "$BIN/pebble does not run" >&2; exit 1; }
echo "pebble: $BIN/pebble"
