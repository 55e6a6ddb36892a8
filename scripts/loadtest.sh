#!/usr/bin/env bash
# Runs one load scenario against a fresh hookfan on 127.0.0.1: generates a
# static-token config (one load token, member of orgs load0..load99), starts
# the daemon (release build), runs the scenario, stops everything (also on
# error or Ctrl-C) and prints the summary.
#
#   scripts/loadtest.sh SCENARIO
#
# Scenarios (sizes can be changed through the environment, see below):
#   smoke            300 clients, 30 webhooks, exact delivery accounting (driver)
#   fanout-10k       1 org, 10,000 subscribers, webhooks 1/s; then the same
#                    against the no-broker ceiling, and the ratios (driver)
#   hold-19k         19,000 subscribed idle connections; daemon memory per
#                    connection (driver)
#   sustained-19k    19,000 subscribers over 100 orgs, 100 webhooks/s for 60 s,
#                    with daemon CPU (driver)
#   intake           signed 27 KB webhooks, no subscribers, 64 keep-alive
#                    connections for 10 s (driver)
#   payload-1mb      [payloads] on; 1,000 subscribers with include_payload, 1
#                    pull_request webhook of 1 MB (WEBHOOKS, RATE 1/s): each
#                    gets the whole body; deliveries/s, latency, daemon peak
#                    RSS (driver)
#   fanout-multi     PROCS driver processes (default 2) of CLIENTS clients
#                    each, from source addresses 127.0.0.1..; one sends the
#                    webhooks, the others only count them (driver)
#   resume           10,000 clients over 10 orgs, webhooks 20/s for 60 s into
#                    a replay window of 10,000 events; 20 s in, every client
#                    drops at once, stays away AWAY_S (5) and all resume at
#                    once: time until all are live again, daemon CPU, exact
#                    accounting over both connections (driver)
#   cluster-3        cluster mode: NATS and three nodes; PROCS (3) driver
#                    processes of CLIENTS (16,667) clients each, process p on
#                    node p from 127.0.0.p, ORGS (100) orgs; process 1 sends
#                    WEBHOOKS (1200) at RATE (20/s) to node 1, the others
#                    count them; per-node CPU and RSS (driver)
#   ws-fanout        k6: subscribers + webhooks, counts events and latency
#   webhook-flood    k6: signed webhooks at a target rate
#   reconnect-storm  k6: every client drops and reconnects at once
# The k6 scenarios run .tools/bin/k6, installed (once) by
# scripts/install-k6.sh.
#
# Environment: CLIENTS, ORGS, WEBHOOKS, RATE, SHARDS, LOG_LEVEL, VUS,
# DURATION_S, CONNECTIONS, PROCS, AWAY_S, REPLAY_EVENTS, CONNECT_S, DRAIN_S,
# HOLD_S override the scenario's defaults; HOOKFAN_BIN runs another hookfan
# binary (e.g. an older build, for a before/after comparison in the same
# sitting). CLUSTER=1 runs the daemon in cluster mode, its events going
# through a NATS JetStream stream (nats-server started here on a free port,
# installed by scripts/install-nats.sh). All are listed in loadtest/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/load-common.sh
SCENARIO=${1:?usage: scripts/loadtest.sh SCENARIO (see the header of this script)}
FIXTURES="$ROOT/tests/fixtures/webhooks"

prepare_load_run load
DAEMON_PID=""
NODE_PIDS=()
NATS_PID_FILE="$WORK/nats.pid"
cleanup() {
  for pid in $DAEMON_PID "${NODE_PIDS[@]}"; do
    stop_process "$pid"
  done
  [ -s "$NATS_PID_FILE" ] && stop_process "$(cat "$NATS_PID_FILE")"
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

write_load_config "$WORK"
[ "$SCENARIO" = cluster-3 ] && CLUSTER=1
if [ "${CLUSTER:-0}" = 1 ]; then
  "$ROOT/scripts/install-nats.sh" > /dev/null
  NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$ROOT/.tools/bin/nats-server" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" -P "$NATS_PID_FILE" \
    > /dev/null 2> "$WORK/nats.log" &
  for _ in $(seq 1 100); do grep -q 'Server is ready' "$WORK/nats.log" 2>/dev/null && break; sleep 0.05; done
  printf '[cluster]\nnats_url = "nats://127.0.0.1:%s"\n' "$NATS_PORT" >> "$WORK/hookfan.toml"
  echo "== cluster mode: nats-server on 127.0.0.1:$NATS_PORT"
fi
if [ "$SCENARIO" = resume ]; then
  printf '[replay]\nmax_events = %s\n' "${REPLAY_EVENTS:-10000}" >> "$WORK/hookfan.toml"
fi
if [ "$SCENARIO" = payload-1mb ]; then
  printf '[payloads]\nenabled = true\n' >> "$WORK/hookfan.toml"
fi

"$HOOKFAN" check-config --config "$WORK/hookfan.toml" > /dev/null
# start_node NAME: a daemon on WORK/hookfan.toml (node NAME in a cluster);
# sets NODE_PID and NODE_ADDR.
start_node() {
  local config="$WORK/hookfan.toml"
  if [ "$1" != hookfan ]; then
    config="$WORK/$1.toml"
    sed "s/^\[cluster\]$/[cluster]\nnode_name = \"$1\"/" "$WORK/hookfan.toml" > "$config"
  fi
  "$HOOKFAN" --config "$config" > "$WORK/$1.stdout" 2> "$WORK/$1.log" &
  NODE_PID=$!
  for _ in $(seq 1 100); do
    grep -q '^listening on ' "$WORK/$1.stdout" 2>/dev/null && break
    sleep 0.05
  done
  NODE_ADDR=$(sed -n 's/^listening on //p' "$WORK/$1.stdout")
  [ -n "$NODE_ADDR" ] || { echo "hookfan ($1) did not start:"; cat "$WORK/$1.log"; exit 1; }
}
start_node hookfan
DAEMON_PID=$NODE_PID
ADDR=$NODE_ADDR
echo "== hookfan pid $DAEMON_PID on $ADDR, scenario $SCENARIO, $(nproc) CPUs, $(date -u +%FT%TZ)"

drive() { "$DRIVER" "$@" --addr "$ADDR" --token "$TOKEN" --secret-file "$WORK/secret" --daemon-pid "$DAEMON_PID"; }

# The k6 scripts default to the dev config; every setting is passed here.
# ORGS=N means orgs load0..load<N-1>, which the generated token belongs to.
k6run() {
  "$ROOT/scripts/install-k6.sh" > /dev/null
  HOOKFAN_ADDR="$ADDR" HOOKFAN_TOKEN="$TOKEN" HOOKFAN_SECRET="$(cat "$WORK/secret")" \
    ORGS="${ORGS:-10}" PAYLOAD="$FIXTURES/pull_request.opened.json" \
    "$ROOT/.tools/bin/k6" run --quiet "$ROOT/loadtest/k6/$1.js"
}

case "$SCENARIO" in
  smoke)
    drive fanout --clients "${CLIENTS:-300}" --orgs "${ORGS:-10}" --webhooks "${WEBHOOKS:-30}" --rate "${RATE:-50}" --hold-s 0.2
    ;;
  fanout-10k)
    N=${CLIENTS:-10000}; M=${WEBHOOKS:-20}; R=${RATE:-1}
    echo "-- hookfan"
    drive fanout --clients "$N" --orgs 1 --webhooks "$M" --rate "$R" --json | tee "$WORK/hookfan.out"
    echo "-- ceiling (no broker, same machine, same sitting)"
    "$DRIVER" ceiling --clients "$N" --orgs 1 --webhooks "$M" --rate "$R" --json | tee "$WORK/ceiling.out"
    python3 - "$WORK/hookfan.out" "$WORK/ceiling.out" <<'PY'
import json, sys
h, c = (json.loads([l for l in open(p) if l.startswith("{")][-1]) for p in sys.argv[1:3])
print(f"ratio: deliveries/s {h['deliveries_per_sec']:.0f} vs ceiling {c['deliveries_per_sec']:.0f} = "
      f"{h['deliveries_per_sec'] / c['deliveries_per_sec']:.2f}; p99 {h['latency_ms']['p99']:.2f} ms vs "
      f"{c['latency_ms']['p99']:.2f} ms = {h['latency_ms']['p99'] / max(c['latency_ms']['p99'], 1e-9):.2f}x")
PY
    ;;
  hold-19k)
    drive fanout --clients "${CLIENTS:-19000}" --orgs "${ORGS:-100}" --webhooks 0 --hold-s 5 --json
    ;;
  sustained-19k)
    drive fanout --clients "${CLIENTS:-19000}" --orgs "${ORGS:-100}" --webhooks "${WEBHOOKS:-6000}" --rate "${RATE:-100}" --json
    ;;
  resume)
    # The window is filled first (REPLAY_EVENTS webhooks to an org nobody
    # subscribes to), so the clients resume over a full window.
    "$DRIVER" intake --addr "$ADDR" --secret-file "$WORK/secret" --connections 8 \
      --count "${REPLAY_EVENTS:-10000}" > /dev/null
    drive resume --clients "${CLIENTS:-10000}" --orgs "${ORGS:-10}" --webhooks "${WEBHOOKS:-1200}" \
      --rate "${RATE:-20}" --away-s "${AWAY_S:-5}" --json
    ;;
  payload-1mb)
    # The opened fixture, padded with a field to PAYLOAD_BYTES (1,000,000).
    python3 - "$FIXTURES/pull_request.opened.json" "$WORK/payload.json" "${PAYLOAD_BYTES:-1000000}" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
v["padding"] = ""
size = int(sys.argv[3])
v["padding"] = "x" * (size - len(json.dumps(v)))
open(sys.argv[2], "w").write(json.dumps(v))
PY
    echo "-- $(wc -c < "$WORK/payload.json") byte webhook, payload clients"
    drive fanout --clients "${CLIENTS:-1000}" --orgs 1 --webhooks "${WEBHOOKS:-1}" --rate "${RATE:-1}" \
      --payload "$WORK/payload.json" --include-payload --json
    ;;
  intake)
    "$DRIVER" intake --addr "$ADDR" --secret-file "$WORK/secret" --daemon-pid "$DAEMON_PID" \
      --connections "${CONNECTIONS:-64}" --duration-s "${DURATION_S:-10}" --json
    ;;
  fanout-multi|cluster-3)
    if [ "$SCENARIO" = cluster-3 ]; then
      P=${PROCS:-3}; N=${CLIENTS:-16667}; K=${ORGS:-100}; M=${WEBHOOKS:-1200}; R=${RATE:-20}
    else
      P=${PROCS:-2}; N=${CLIENTS:-9000}; K=${ORGS:-10}; M=${WEBHOOKS:-200}; R=${RATE:-20}
    fi
    # Driver process p connects to NODE_ADDRS[p-1]: every process to the one
    # daemon, or (cluster-3) process p to node p, nodes 2.. joining node 1's
    # stream.
    NODE_ADDRS=(); PIDS=("$DAEMON_PID")
    for p in $(seq 1 "$P"); do NODE_ADDRS+=("$ADDR"); done
    if [ "$SCENARIO" = cluster-3 ]; then
      for p in $(seq 2 "$P"); do
        start_node "node$p"
        NODE_PIDS+=("$NODE_PID"); NODE_ADDRS[$((p - 1))]=$NODE_ADDR; PIDS+=("$NODE_PID")
      done
      echo "== nodes: ${NODE_ADDRS[*]} (pids ${PIDS[*]})"
    fi
    CPU0=()
    for pid in "${PIDS[@]}"; do CPU0+=("$(awk '{print $14 + $15}' "/proc/$pid/stat")"); done
    LISTENERS=()
    for p in $(seq 2 "$P"); do
      "$DRIVER" fanout --addr "${NODE_ADDRS[$((p - 1))]}" --token "$TOKEN" --secret-file "$WORK/secret" \
        --daemon-pid "${PIDS[$(( ${#PIDS[@]} > 1 ? p - 1 : 0 ))]}" --clients "$N" --orgs "$K" \
        --webhooks "$M" --rate "$R" --no-send --source-ips "127.0.0.$p" \
        --drain-timeout-s $((M / R + 60)) --json > "$WORK/listener-$p.out" 2>&1 &
      LISTENERS+=("$!")
    done
    for p in $(seq 2 "$P"); do
      for _ in $(seq 1 1200); do grep -q '^ready' "$WORK/listener-$p.out" && break; sleep 0.1; done
    done
    echo "-- sender (127.0.0.1, ${NODE_ADDRS[0]})"
    STATUS=0
    drive fanout --clients "$N" --orgs "$K" --webhooks "$M" --rate "$R" --source-ips 127.0.0.1 --json || STATUS=1
    for i in "${!LISTENERS[@]}"; do
      wait "${LISTENERS[$i]}" || STATUS=1
      echo "-- listener process $((i + 2)) (127.0.0.$((i + 2)), ${NODE_ADDRS[$((i + 1))]})"
      grep -v '^ready' "$WORK/listener-$((i + 2)).out"
    done
    TICK=$(getconf CLK_TCK)
    for i in "${!PIDS[@]}"; do
      pid=${PIDS[$i]}
      cpu=$(awk -v t="$TICK" -v c0="${CPU0[$i]}" '{printf "%.2f", ($14 + $15 - c0) / t}' "/proc/$pid/stat")
      rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
      echo "daemon $((i + 1)) (pid $pid): CPU ${cpu} s over the run, RSS $((rss / 1024)) MiB"
    done
    [ "$STATUS" = 0 ] || FAILED="a driver process reported failures"
    ;;
  ws-fanout)
    VUS=${VUS:-200} ORGS=${ORGS:-10} WEBHOOKS=${WEBHOOKS:-100} RATE=${RATE:-20} \
      CONNECT_S=${CONNECT_S:-10} DRAIN_S=${DRAIN_S:-10} k6run ws-fanout
    ;;
  webhook-flood)
    RATE=${RATE:-500} DURATION_S=${DURATION_S:-20} k6run webhook-flood
    ;;
  reconnect-storm)
    VUS=${VUS:-500} HOLD_S=${HOLD_S:-10} k6run reconnect-storm
    ;;
  *)
    echo "unknown scenario: $SCENARIO"; exit 2
    ;;
esac
echo "== daemon log (warnings and errors):"
cat "$WORK"/*.log | grep -E 'WARN|ERROR' | tail -20 || echo "(none)"
if [ -n "${FAILED:-}" ]; then
  echo "$FAILED"
  exit 1
fi
