#!/usr/bin/env bash
# Soak: a long run against a fresh hookfan on 127.0.0.1. CLIENTS clients over
# ORGS orgs keep churning (connect, subscribe, read for a random lifetime,
# disconnect, stay away briefly, come back with resume from their last seq,
# or now and then with a fresh subscription) while signed webhooks arrive at
# RATE/s. Every client checks that it got each event it was owed exactly
# once (zero missing, duplicated or unexpected); every SAMPLE_S seconds the
# daemon's RSS, fds, threads, /metrics gauges and the socket backlog go to
# OUT/samples.csv; at the end the RSS and fd slopes after a warm-up. Exits
# non-zero on any loss, duplicate, unexplained refused resume, or if the
# daemon died. Builds the release binaries, writes its own config, always
# stops the daemon (also on error or Ctrl-C), and is bounded in time
# (DURATION + DRAIN_S + 10 min).
#
#   scripts/soak.sh [DURATION]     e.g. 60m (the default), 10m, 90s, 1h, 300
#
# Environment (defaults in parentheses; all in loadtest/README.md):
#   CLIENTS (10000)      WebSocket clients, one driver process
#   ORGS (100)           orgs load0..; client i is on org i % ORGS, webhook j
#                        for org j % ORGS (at most 100: the token's orgs)
#   RATE (50)            webhooks per second
#   LIFE_MIN_S, LIFE_MAX_S (10, 110)   a connection's random lifetime
#   AWAY_MIN_S, AWAY_MAX_S (0.5, 5)    a client's random absence
#   FRESH (0.1)          fraction of reconnects with a fresh subscription
#   REPLAY_EVENTS (RATE x 60)  the daemon's replay.max_events: a minute of
#                        events, far more than a client's absence, and full
#                        within the warm-up so it does not count as growth
#   SAMPLE_S (10)        seconds between samples
#   WARMUP_S (10 % of DURATION, at least 60 s, at most half)
#   DRAIN_S (180)        seconds the clients have to catch up at the end
#   SHARDS (0: one per CPU), LOG_LEVEL (warn)   daemon settings
#   SOURCE_IPS (none)    e.g. 127.0.0.1,127.0.0.2: spread the clients
#   SEED (random)        the clients' lifetimes and choices
#   OUT (target/soak/<UTC time>)  samples.csv, summary.txt, hookfan.log
#   HOOKFAN_BIN (target/release/hookfan)   the daemon binary to soak
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/load-common.sh

# DURATION -> seconds.
to_seconds() {
  case "$1" in
    *h) echo $(( ${1%h} * 3600 )) ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}
DURATION=$(to_seconds "${1:-60m}")
[[ "$DURATION" =~ ^[0-9]+$ ]] && [ "$DURATION" -gt 0 ] \
  || { echo "usage: scripts/soak.sh [DURATION: 60m, 10m, 90s, 1h or seconds]"; exit 2; }
RATE=${RATE:-50}
CLIENTS=${CLIENTS:-10000}
ORGS=${ORGS:-100}
REPLAY_EVENTS=${REPLAY_EVENTS:-$(python3 -c "print(max(1, round(float('$RATE') * 60)))")}
DRAIN_S=${DRAIN_S:-180}
OUT=${OUT:-$ROOT/target/soak/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

prepare_load_run soak
DAEMON_PID=""
# Running and not a zombie (kill -0 succeeds on an unreaped child).
daemon_alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$DAEMON_PID/stat" 2>/dev/null | cut -c1)
  [ -n "$state" ] && [ "$state" != Z ]
}
cleanup() {
  if [ -n "$DAEMON_PID" ] && daemon_alive; then
    stop_process "$DAEMON_PID"
  fi
  [ -f "$WORK/hookfan.log" ] && cp "$WORK/hookfan.log" "$OUT/hookfan.log"
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

write_load_config "$WORK"
printf '[replay]\nmax_events = %s\n' "$REPLAY_EVENTS" >> "$WORK/hookfan.toml"
"$HOOKFAN" check-config --config "$WORK/hookfan.toml" > /dev/null

"$HOOKFAN" --config "$WORK/hookfan.toml" > "$WORK/hookfan.stdout" 2> "$WORK/hookfan.log" &
DAEMON_PID=$!
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$WORK/hookfan.stdout" 2>/dev/null && break
  sleep 0.05
done
ADDR=$(sed -n 's/^listening on //p' "$WORK/hookfan.stdout")
[ -n "$ADDR" ] || { echo "hookfan did not start:"; cat "$WORK/hookfan.log"; exit 1; }
cp "$WORK/hookfan.toml" "$OUT/hookfan.toml"
echo "== soak: hookfan pid $DAEMON_PID on $ADDR, ${DURATION} s, $CLIENTS clients, $ORGS orgs, $RATE webhooks/s, replay window $REPLAY_EVENTS events; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ); output in $OUT"

ARGS=(soak --addr "$ADDR" --token "$TOKEN" --secret-file "$WORK/secret" --daemon-pid "$DAEMON_PID"
  --clients "$CLIENTS" --orgs "$ORGS" --rate "$RATE" --duration-s "$DURATION"
  --life-min-s "${LIFE_MIN_S:-10}" --life-max-s "${LIFE_MAX_S:-110}"
  --away-min-s "${AWAY_MIN_S:-0.5}" --away-max-s "${AWAY_MAX_S:-5}" --fresh "${FRESH:-0.1}"
  --sample-s "${SAMPLE_S:-10}" --drain-timeout-s "$DRAIN_S" --out "$OUT" --json)
[ -n "${WARMUP_S:-}" ] && ARGS+=(--warmup-s "$WARMUP_S")
[ -n "${SOURCE_IPS:-}" ] && ARGS+=(--source-ips "$SOURCE_IPS")
[ -n "${SEED:-}" ] && ARGS+=(--seed "$SEED")
# The driver bounds its own phases (300 s to connect, DRAIN_S to drain);
# this is the backstop.
STATUS=0
timeout --kill-after=30 $((DURATION + 600 + DRAIN_S)) "$DRIVER" "${ARGS[@]}" 2>&1 \
  | tee "$OUT/summary.txt" || STATUS=1

if ! daemon_alive; then
  echo "the daemon is gone:"
  tail -20 "$WORK/hookfan.log"
  STATUS=1
fi
echo "== daemon log (warnings and errors, last 20 of $(grep -cE 'WARN|ERROR' "$WORK/hookfan.log" || true)):"
grep -E 'WARN|ERROR' "$WORK/hookfan.log" | tail -20 || echo "(none)"
echo "== samples: $OUT/samples.csv"
exit "$STATUS"
