#!/usr/bin/env bash
# Runs a three-node hookfan cluster on this machine, to try cluster mode:
# nats-server with JetStream on 127.0.0.1:NATS_PORT (installed into .tools/
# by scripts/install-nats.sh, its store in a temp dir) and three daemons,
# node1, node2 and node3, on 127.0.0.1:BASE_PORT, BASE_PORT+1, BASE_PORT+2.
# Each node's config is generated from config/hookfan.toml (the dev secret,
# the dev tokens of config/dev-tokens.toml) with a [cluster] section naming
# the NATS server and the node. Prints how to subscribe on one node and post
# a signed webhook to another, then waits; Ctrl-C stops all four processes
# and removes the temp dir (so does an error).
#
#   scripts/cluster.sh            (run it; do not source it)
#   scripts/cluster.sh --check    (or CLUSTER_CHECK=1) a self-test instead of
#                                 waiting: a WebSocket client (python3, stdlib
#                                 only) subscribes on node3, a signed webhook
#                                 is posted to node1 (then again, same
#                                 delivery id); passes when node3's client gets
#                                 the event exactly once. Stops everything,
#                                 exits 0 (pass) or 1.
#
# Environment: NATS_PORT (default 4222), BASE_PORT (default 8081).
# HOOKFAN_BIN runs that hookfan binary; without it the daemon is built with
# `cargo build --release` and target/release/hookfan is run. Needs python3,
# curl and openssl. Node logs are in the temp dir while the cluster runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CHECK=${CLUSTER_CHECK:-0}
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/cluster.sh [--check]" >&2; exit 2 ;;
  esac
done
NATS_PORT=${NATS_PORT:-4222}
BASE_PORT=${BASE_PORT:-8081}
NODES=3
ALICE=ghp_devAlice0000000000000000000000000000    # config/dev-tokens.toml: alice, member of acme
FIXTURE=tests/fixtures/webhooks/pull_request.opened.json  # an acme/api pull request

"$ROOT/scripts/install-nats.sh" > /dev/null
NATS="$ROOT/.tools/bin/nats-server"
if [ -n "${HOOKFAN_BIN:-}" ]; then
  HOOKFAN=$HOOKFAN_BIN
else
  cargo build --release --quiet --bin hookfan
  HOOKFAN="$ROOT/target/release/hookfan"
fi

WORK=$(mktemp -d /tmp/hookfan-cluster.XXXXXX)
NATS_PID_FILE="$WORK/nats.pid"
NATS_LAUNCH_PID=""   # $! of the launch; the server's own PID is in NATS_PID_FILE
NODE_PIDS=()
SUB_PID=""

# stop PID SECONDS: SIGTERM, up to SECONDS for it to exit, then SIGKILL.
stop() {
  kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
  trap - EXIT; trap "" INT TERM
  [ -n "$SUB_PID" ] && stop "$SUB_PID" 2
  for pid in "${NODE_PIDS[@]}"; do stop "$pid" 15; done
  [ -s "$NATS_PID_FILE" ] && stop "$(cat "$NATS_PID_FILE")" 5
  [ -n "$NATS_LAUNCH_PID" ] && stop "$NATS_LAUNCH_PID" 2
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "stopping the cluster"; exit 130' INT
trap 'exit 143' TERM

# nats-server, JetStream on.
"$NATS" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" -P "$NATS_PID_FILE" \
  > /dev/null 2> "$WORK/nats.log" &
NATS_LAUNCH_PID=$!
for _ in $(seq 1 200); do
  grep -q 'Server is ready' "$WORK/nats.log" 2>/dev/null && break
  kill -0 "$NATS_LAUNCH_PID" 2>/dev/null || break
  sleep 0.05
done
if ! grep -q 'Server is ready' "$WORK/nats.log" 2>/dev/null || [ ! -s "$NATS_PID_FILE" ]; then
  echo "nats-server did not start on 127.0.0.1:$NATS_PORT (set NATS_PORT for another port):" >&2
  sed 's/^/  /' "$WORK/nats.log" >&2
  exit 1
fi
NATS_PID=$(cat "$NATS_PID_FILE")

# One config per node: config/hookfan.toml with the secret and token file by
# absolute path, and the [cluster] keys at the head of its [cluster] table.
node_config() {
  local cluster
  cluster=$(printf 'nats_url = "nats://127.0.0.1:%s"\nnode_name = "%s"' "$NATS_PORT" "$1")
  CLUSTER_KEYS=$cluster CONFIG_DIR="$ROOT/config" python3 - "$ROOT/config/hookfan.toml" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
conf = os.environ["CONFIG_DIR"]
for key in ("secret_file", "tokens_file"):
    text = re.sub(rf'(?m)^{key} = "([^/"][^"]*)"',
                  lambda m: f'{key} = "{os.path.join(conf, m.group(1))}"', text)
keys = os.environ["CLUSTER_KEYS"]
if re.search(r"(?m)^\[cluster\]$", text):
    text = re.sub(r"(?m)^\[cluster\]$", lambda m: "[cluster]\n" + keys, text, count=1)
else:
    text += "\n[cluster]\n" + keys + "\n"
sys.stdout.write(text)
PY
}

NODE_ADDRS=()
for n in $(seq 1 "$NODES"); do
  name="node$n"
  node_config "$name" > "$WORK/$name.toml"
  if [ "$n" = 1 ]; then
    "$HOOKFAN" check-config --config "$WORK/$name.toml" > /dev/null
  fi
  "$HOOKFAN" --config "$WORK/$name.toml" --listen "127.0.0.1:$((BASE_PORT + n - 1))" \
    > "$WORK/$name.stdout" 2> "$WORK/$name.log" &
  NODE_PIDS+=("$!")
  for _ in $(seq 1 200); do
    grep -q '^listening on ' "$WORK/$name.stdout" 2>/dev/null && break
    kill -0 "${NODE_PIDS[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  addr=$(sed -n 's/^listening on //p' "$WORK/$name.stdout")
  if [ -z "$addr" ]; then
    echo "hookfan $name did not start on 127.0.0.1:$((BASE_PORT + n - 1)) (set BASE_PORT for other ports):" >&2
    sed 's/^/  /' "$WORK/$name.log" >&2
    exit 1
  fi
  NODE_ADDRS+=("$addr")
done

echo "== hookfan cluster: nats-server (JetStream) on 127.0.0.1:$NATS_PORT, pid $NATS_PID"
for i in "${!NODE_ADDRS[@]}"; do
  echo "   node$((i + 1)) on ${NODE_ADDRS[$i]}, pid ${NODE_PIDS[$i]}, log $WORK/node$((i + 1)).log"
done

# post_webhook ADDR DELIVERY_ID: posts FIXTURE, signed with the dev secret,
# as a pull_request event; prints the status code and the body.
post_webhook() {
  local sig
  sig=$(openssl dgst -sha256 -hmac "$(cat config/dev-webhook-secret.txt)" < "$FIXTURE" | sed 's/^.* //')
  curl -sS -o "$WORK/post.body" -w '%{http_code}' "http://$1/webhook" \
    -H "X-GitHub-Event: pull_request" \
    -H "X-GitHub-Delivery: $2" \
    -H "X-Hub-Signature-256: sha256=$sig" \
    -H "Content-Type: application/json" \
    --data-binary @"$FIXTURE" || true
  printf ' %s\n' "$(tr -d '\n' < "$WORK/post.body" 2>/dev/null)"
}

if [ "$CHECK" != 1 ]; then
  FIRST=${NODE_ADDRS[0]}
  LAST=${NODE_ADDRS[$((NODES - 1))]}
  cat <<EOF

Try it (from $ROOT). Subscribe on node$NODES, as alice (a member of acme):

  npx wscat -c ws://$LAST/ws -H "Authorization: Bearer $ALICE"
  > {"organization": "acme"}

  or, reconnecting and resuming on another node when one goes away:
  GITHUB_TOKEN=$ALICE $HOOKFAN subscribe --server ws://$LAST --server ws://$FIRST --org acme

Post a signed webhook to node1; it arrives on every node's clients, with the
same seq everywhere. Posting it again with the same delivery id (to any
node) answers 200 "duplicate: delivery already accepted" and stores nothing
new:

  BODY=$FIXTURE
  SECRET=\$(cat config/dev-webhook-secret.txt)
  SIG=\$(openssl dgst -sha256 -hmac "\$SECRET" < "\$BODY" | sed 's/^.* //')
  curl -i http://$FIRST/webhook \\
    -H "X-GitHub-Event: pull_request" \\
    -H "X-GitHub-Delivery: demo-1" \\
    -H "X-Hub-Signature-256: sha256=\$SIG" \\
    -H "Content-Type: application/json" \\
    --data-binary @"\$BODY"

A node's cluster metrics: curl -s http://${NODE_ADDRS[1]}/metrics | grep hookfan_cluster_

Ctrl-C stops the cluster and removes $WORK.
EOF
  while true; do
    for i in "${!NODE_PIDS[@]}"; do
      if ! kill -0 "${NODE_PIDS[$i]}" 2>/dev/null; then
        echo "node$((i + 1)) exited; the end of its log:" >&2
        tail -20 "$WORK/node$((i + 1)).log" >&2
        exit 1
      fi
    done
    if ! kill -0 "$NATS_PID" 2>/dev/null; then
      echo "nats-server exited; the end of its log:" >&2
      tail -20 "$WORK/nats.log" >&2
      exit 1
    fi
    sleep 1
  done
fi

# --check: a minimal WebSocket client (RFC 6455 over a raw socket). Prints
# "ready ..." once subscribed, then waits for the event with delivery id
# DELIVERY and for QUIET seconds more, failing on a second copy of it.
cat > "$WORK/ws_check.py" <<'PY'
import base64, hashlib, json, os, socket, struct, sys, time

host, port, token, delivery = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
TIMEOUT, QUIET = 15.0, 2.0
deadline = time.monotonic() + TIMEOUT
buf = b""

def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)

def read_exact(n):
    global buf
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            fail("the server closed the connection")
        buf += chunk
    out, buf = buf[:n], buf[n:]
    return out

def send(opcode, payload):
    mask, n = os.urandom(4), len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

def messages():
    """The text messages, as JSON; ping frames are answered."""
    parts = b""
    while True:
        b0, b1 = read_exact(2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", read_exact(8))[0]
        mask = read_exact(4) if b1 & 0x80 else None
        payload = read_exact(n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if opcode == 0x9:
            send(0xA, payload)
        elif opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            fail(f"the server closed the connection: {code} {payload[2:].decode(errors='replace')}")
        elif opcode in (0x0, 0x1):
            parts += payload
            if b0 & 0x80:
                yield json.loads(parts)
                parts = b""

sock = socket.create_connection((host, port), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
              f"Authorization: Bearer {token}\r\n\r\n").encode())
while b"\r\n\r\n" not in buf:
    chunk = sock.recv(4096)
    if not chunk:
        fail("the server closed the connection during the upgrade")
    buf += chunk
head, buf = buf.split(b"\r\n\r\n", 1)
lines = head.decode("latin-1").split("\r\n")
if not lines[0].startswith("HTTP/1.1 101"):
    fail(f"upgrade refused: {lines[0]}")
accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
if f"sec-websocket-accept: {accept}".lower() not in (l.lower() for l in lines[1:]):
    fail("wrong Sec-WebSocket-Accept")
send(0x1, json.dumps({"organization": "acme"}).encode())

got = []
try:
    for m in messages():
        if m.get("type") == "error":
            fail(f"subscription refused: {m}")
        if m.get("type") == "subscription_confirmed":
            s = m["stream"]
            print(f"ready: subscribed on {host}:{port} as {m['username']}, epoch {s['epoch']}, "
                  f"stream seq {s['seq']}", flush=True)
            break
    for m in messages():
        if m.get("delivery_id") == delivery:
            got.append(m)
            print(f"received: seq {m['seq']}, {m['type']} {m['url']}, delivery id {delivery}", flush=True)
            deadline = time.monotonic() + QUIET
except TimeoutError:
    pass
if not got:
    fail(f"no event with delivery id {delivery} within {TIMEOUT:.0f} s")
if len(got) > 1:
    fail(f"delivery {delivery} arrived {len(got)} times: {[m['seq'] for m in got]}")
print(f"ok: exactly one event for delivery {delivery} in the {QUIET:.0f} s after it", flush=True)
PY

SENDER=${NODE_ADDRS[0]}
RECEIVER=${NODE_ADDRS[$((NODES - 1))]}
DELIVERY="cluster-check-$(date +%s)-$$"
echo "== check: subscribe on node$NODES ($RECEIVER), post to node1 ($SENDER)"
python3 "$WORK/ws_check.py" "${RECEIVER%:*}" "${RECEIVER##*:}" "$ALICE" "$DELIVERY" > "$WORK/check.out" 2>&1 &
SUB_PID=$!
for _ in $(seq 1 200); do
  grep -q '^ready' "$WORK/check.out" && break
  kill -0 "$SUB_PID" 2>/dev/null || break
  sleep 0.05
done
RESULT=0
if grep -q '^ready' "$WORK/check.out"; then
  sed -n 's/^ready: /   /p' "$WORK/check.out"
  answer=$(post_webhook "$SENDER" "$DELIVERY")
  echo "   POST $SENDER/webhook (delivery $DELIVERY): $answer"
  [ "${answer%% *}" = 200 ] || RESULT=1
  answer=$(post_webhook "$SENDER" "$DELIVERY")
  echo "   POST $SENDER/webhook again, same delivery id: $answer"
  [ "$answer" = "200 duplicate: delivery already accepted" ] || RESULT=1
fi
wait "$SUB_PID" || RESULT=1
SUB_PID=""
grep -v '^ready' "$WORK/check.out" | sed 's/^/   /'
if [ "$RESULT" = 0 ]; then
  echo "== PASS: an event posted to node1 reached a client on node$NODES, once"
else
  echo "== FAIL; node logs (warnings and errors):"
  cat "$WORK"/node*.log | grep -E 'WARN|ERROR' | tail -20 || echo "   (none)"
fi
exit "$RESULT"
