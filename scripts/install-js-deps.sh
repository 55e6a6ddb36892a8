#!/usr/bin/env bash
# Installs the JavaScript client's test dependencies (clients/js: the npm
# packages `ws` and `playwright-core`, exact versions from its committed
# package-lock.json) into clients/js/node_modules with `npm ci`.
#
#   scripts/install-js-deps.sh        (run it; do not source it)
#
# Does nothing (fast) when node_modules was installed from the current
# package-lock.json: npm ci leaves a copy of the lock it installed in
# node_modules/.package-lock.json, and the two are compared. hookfan.js
# itself has no dependencies; these are for its tests (node --test).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JS="$ROOT/clients/js"

command -v npm > /dev/null || { echo "npm is not installed: install Node.js (20 or later) and npm" >&2; exit 1; }

# npm writes node_modules/.package-lock.json with the lock's "packages"
# entries (the root entry left out): equal entries mean an up-to-date tree.
current() {
  [ -f "$JS/node_modules/.package-lock.json" ] || return 1
  node -e '
    const fs = require("fs");
    const pick = (f, root) => {
      const p = JSON.parse(fs.readFileSync(f, "utf8")).packages || {};
      const out = {};
      for (const [k, v] of Object.entries(p)) if (k !== "" || !root) out[k] = v.version + " " + (v.integrity || "");
      return JSON.stringify(Object.keys(out).sort().map((k) => [k, out[k]]));
    };
    const want = pick(process.argv[1], true);
    const have = pick(process.argv[2], true);
    process.exit(want === have ? 0 : 1);
  ' "$JS/package-lock.json" "$JS/node_modules/.package-lock.json"
}

if current; then
  exit 0
fi
echo "installing the JavaScript test dependencies into $JS/node_modules (npm ci) ..." >&2
(cd "$JS" && npm ci --no-audit --no-fund --loglevel=error) >&2
current || { echo "npm ci ran, but $JS/node_modules does not match package-lock.json" >&2; exit 1; }
