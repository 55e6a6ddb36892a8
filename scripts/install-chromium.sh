#!/usr/bin/env bash
# Finds a headless Chromium for the browser tests and the UI screenshot, and
# installs Debian's `chromium-headless-shell` (and a font) with apt-get when
# there is none; prints the executable's path on stdout, nothing else.
#
#   scripts/install-chromium.sh        (run it; do not source it)
#
# Looked for, in order: $HOOKFAN_CHROMIUM (when set it must be executable),
# /usr/lib/chromium/chromium-headless-shell, then chromium-headless-shell,
# chromium, google-chrome on PATH. Installing needs root (or sudo without a password) and
# a Debian/Ubuntu apt; `apt-get update` is run first only when apt does not
# know the package yet. Exits 1 with the reason on stderr when no Chromium
# can be had: the browser tests then skip, saying so.
set -euo pipefail

# Debian's /usr/bin/chromium-headless-shell is a shell wrapper that does not
# exec: the binary behind it is preferred, so that killing the browser's
# process kills the browser.
find_chromium() {
  local c
  if [ -x /usr/lib/chromium/chromium-headless-shell ]; then
    echo /usr/lib/chromium/chromium-headless-shell
    return 0
  fi
  for c in chromium-headless-shell chromium google-chrome google-chrome-stable; do
    if command -v "$c" > /dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}

if [ -n "${HOOKFAN_CHROMIUM:-}" ]; then
  if [ -x "$HOOKFAN_CHROMIUM" ]; then echo "$HOOKFAN_CHROMIUM"; exit 0; fi
  echo "HOOKFAN_CHROMIUM=$HOOKFAN_CHROMIUM is not an executable file" >&2
  exit 1
fi
if find_chromium; then exit 0; fi

if ! command -v apt-get > /dev/null 2>&1; then
  echo "no headless Chromium found and no apt-get to install one: install Chromium" \
    "(or chromium-headless-shell) and/or set HOOKFAN_CHROMIUM to its executable" >&2
  exit 1
fi
SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo > /dev/null 2>&1 && sudo -n true 2> /dev/null; then
    SUDO=(sudo -n)
  else
    echo "no headless Chromium found, and installing chromium-headless-shell needs root:" \
      "run 'sudo apt-get install chromium-headless-shell' or set HOOKFAN_CHROMIUM" >&2
    exit 1
  fi
fi

PKGS=(chromium-headless-shell fonts-liberation)
known() { [ -n "$(apt-cache policy chromium-headless-shell 2> /dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; }
echo "installing ${PKGS[*]} with apt-get ..." >&2
if ! known; then
  "${SUDO[@]}" apt-get update -qq >&2 || echo "apt-get update failed" >&2
fi
if ! known; then
  echo "apt knows no chromium-headless-shell package here (not Debian 12 or later?):" \
    "install Chromium and/or set HOOKFAN_CHROMIUM to its executable" >&2
  exit 1
fi
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
if ! DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${PKGS[@]}" > "$LOG" 2>&1; then
  echo "apt-get install ${PKGS[*]} failed:" >&2
  tail -20 "$LOG" >&2
  exit 1
fi
find_chromium || { echo "chromium-headless-shell was installed but no executable was found" >&2; exit 1; }
