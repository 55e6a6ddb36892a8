# Sourced by scripts/loadtest.sh and scripts/soak.sh: what every load run
# against a local daemon shares.

# prepare_load_run NAME: builds the release daemon and driver, sets HOOKFAN
# (HOOKFAN_BIN when given, e.g. an older build for a before/after) and
# DRIVER, raises the fd limit (the daemon and the driver each hold one socket
# per client) and makes the run's directory WORK=/tmp/hookfan-NAME.XXXXXX.
prepare_load_run() {
  cargo build --release --quiet --bin hookfan --bin hookfan-load
  HOOKFAN="${HOOKFAN_BIN:-$ROOT/target/release/hookfan}"
  DRIVER="$ROOT/target/release/hookfan-load"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  WORK=$(mktemp -d "/tmp/hookfan-$1.XXXXXX")
}

# write_load_config DIR: writes DIR/secret, DIR/tokens.toml and
# DIR/hookfan.toml and sets TOKEN. One static token, member of orgs
# load0..load99 (tier pro); the per-IP and total connection limits are
# raised so that tens of thousands of clients from 127.0.0.1 fit. SHARDS and
# LOG_LEVEL, when set, are the daemon's broker.shards and log.level.
write_load_config() {
  local dir=$1 orgs
  TOKEN="ghp_loadtest$(printf '0%.0s' $(seq 1 28))"
  python3 -c 'import secrets; print(secrets.token_hex(32))' > "$dir/secret"
  orgs=$(python3 -c 'print(", ".join(f"\"load{i}\"" for i in range(100)))')
  cat > "$dir/tokens.toml" <<TOKENS
[[token]]
token = "$TOKEN"
login = "loadtest"
orgs = [$orgs]
tier = "pro"
TOKENS
  cat > "$dir/hookfan.toml" <<CONFIG
[server]
listen = "127.0.0.1:0"
[webhook]
secret_file = "secret"
[broker]
shards = ${SHARDS:-0}
[auth]
provider = "static"
tokens_file = "tokens.toml"
[limits]
max_conns_per_ip = 100000
max_conns_total = 100000
[log]
level = "${LOG_LEVEL:-warn}"
CONFIG
}

# stop_process PID: SIGTERM (the daemon drains), SIGKILL after 15 s.
stop_process() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
