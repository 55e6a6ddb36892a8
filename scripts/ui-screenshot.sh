#!/usr/bin/env bash
# Writes docs/ui.png: the live events page (/ui/) at 1280x800 in headless
# Chromium, connected as the dev user alice (config/dev-tokens.toml) to a
# daemon on the shipped development config (config/hookfan.toml, on a free
# port), after a series of fixture webhooks on acme/api#7.
#
#   scripts/ui-screenshot.sh [OUT.png]        (default docs/ui.png)
#
# Builds the release binary first (cargo build --release; HOOKFAN_BIN names
# another binary and skips the build), installs the JavaScript test
# dependencies (scripts/install-js-deps.sh) and a headless Chromium
# (scripts/install-chromium.sh) when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/docs/ui.png}")
cd "$ROOT"

if [ -z "${HOOKFAN_BIN:-}" ]; then
  cargo build --release --quiet --bin hookfan
  HOOKFAN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/hookfan"
fi
bash scripts/install-js-deps.sh
CHROMIUM=$(bash scripts/install-chromium.sh)

PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
LOG=$(mktemp -d)
"$HOOKFAN_BIN" --config config/hookfan.toml --listen "127.0.0.1:$PORT" > "$LOG/stdout" 2> "$LOG/stderr" &
DAEMON=$!
trap 'kill "$DAEMON" 2> /dev/null || true; wait "$DAEMON" 2> /dev/null || true; rm -rf "$LOG"' EXIT
for _ in $(seq 100); do
  grep -q '^listening on ' "$LOG/stdout" && break
  kill -0 "$DAEMON" 2> /dev/null || { echo "hookfan exited:" >&2; cat "$LOG/stderr" >&2; exit 1; }
  sleep 0.1
done
grep -q '^listening on ' "$LOG/stdout" || { echo "hookfan did not start within 10 s:" >&2; cat "$LOG/stderr" >&2; exit 1; }

mkdir -p "$(dirname "$OUT")"
node clients/js/tools/ui-screenshot.mjs \
  --server "http://127.0.0.1:$PORT" \
  --secret-file config/dev-webhook-secret.txt \
  --token "$(sed -n 's/^token = "\(ghp_devAlice[^"]*\)"/\1/p' config/dev-tokens.toml)" \
  --chromium "$CHROMIUM" \
  --out "$OUT"
