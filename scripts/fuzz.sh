#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (libFuzzer, nightly Rust), each for
# SECONDS, one after the other, and prints per target the seconds run, the
# final coverage (libFuzzer's cov: and ft:), the corpus size and the
# executions per second.
#
#   scripts/fuzz.sh [--quick] SECONDS [TARGET...] [-- LIBFUZZER_FLAG...]
#
# .ci/run runs `scripts/fuzz.sh --quick 10`, a smoke: each target from its
# seeds for 10 s, built --quick: unoptimized and without AddressSanitizer
# (debug assertions and overflow checks stay), which builds in ~2 minutes
# instead of ~5.5 on 2 cores and still catches a panic the seeds reach.
# The real run is longer, under ASan, and is run by hand, before a release
# and after a change to a parser:
#   scripts/fuzz.sh 600            # 10 minutes per target, 50 in all
#
# Targets (all when none are named): webhook, subscription, ws_frame,
# config, stream_message (fuzz/fuzz_targets/). Installs what is missing:
# the nightly toolchain (rustup, minimal profile) and cargo-fuzz (cargo
# install --locked). Each target starts from its seeds kept in the
# repository, fuzz/seeds/TARGET/, copied into the git-ignored working corpus
# fuzz/corpus/TARGET/ (which keeps what earlier runs found), with the
# dictionary fuzz/dicts/TARGET.dict (the seeds are written by `cargo
# +nightly run --manifest-path fuzz/Cargo.toml --example seeds`). Builds
# are release with debug assertions and overflow checks, under
# AddressSanitizer (unless --quick); the build lives in fuzz/target.
#
# Exits 1 if any target crashed (or failed an assertion, or timed out), after
# running the others, and prints the input that did it (under
# fuzz/artifacts/TARGET/); reproduce with
#   cargo +nightly fuzz run -a TARGET fuzz/artifacts/TARGET/crash-...
# Logs of the last run: fuzz/artifacts/TARGET.log.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ="$ROOT/fuzz"
ALL=(webhook subscription ws_frame config stream_message)

usage() {
  echo "usage: scripts/fuzz.sh [--quick] SECONDS [TARGET...] [-- LIBFUZZER_FLAG...]" >&2
  echo "targets: ${ALL[*]}" >&2
  exit 2
}
# -a: debug assertions and overflow checks, which release builds lack.
BUILD=(-a)
if [ "${1:-}" = --quick ]; then
  BUILD=(--dev -s none)
  shift
fi
[ $# -ge 1 ] || usage
SECONDS_EACH=$1
shift
[[ "$SECONDS_EACH" =~ ^[1-9][0-9]*$ ]] || usage
TARGETS=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  [[ " ${ALL[*]} " == *" $1 "* ]] || { echo "unknown target: $1" >&2; usage; }
  TARGETS+=("$1")
  shift
done
[ $# -gt 0 ] && shift  # the --
EXTRA=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

if ! rustup run nightly rustc --version > /dev/null 2>&1; then
  echo "installing the nightly toolchain ..." >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version > /dev/null 2>&1; then
  echo "installing cargo-fuzz ..." >&2
  cargo +nightly install cargo-fuzz --locked
fi

cd "$FUZZ"
echo "== building ${TARGETS[*]} (cargo +nightly fuzz build ${BUILD[*]})"
for t in "${TARGETS[@]}"; do
  cargo +nightly fuzz build "${BUILD[@]}" "$t"
done

# field NAME: a field of libFuzzer's last status line ($last); final_stat
# NAME: one of the stat:: lines -print_final_stats=1 writes to $log.
field() { local v; v=$(sed -nE "s/.* $1: ([^ ]+).*/\\1/p" <<< "$last"); echo "${v:-?}"; }
final_stat() { local v; v=$(sed -nE "s/^stat::$1: *([0-9]+).*/\\1/p" "$log" | tail -1); echo "${v:-?}"; }

FAILED=()
SUMMARY=()
mkdir -p "$FUZZ/artifacts"
for t in "${TARGETS[@]}"; do
  corpus="$FUZZ/corpus/$t"
  mkdir -p "$corpus" "$FUZZ/artifacts/$t"
  cp -n "$FUZZ/seeds/$t"/* "$corpus"/ 2> /dev/null || true
  flags=(-max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10)
  [ -f "$FUZZ/dicts/$t.dict" ] && flags+=(-dict="$FUZZ/dicts/$t.dict")
  log="$FUZZ/artifacts/$t.log"
  echo "== $t: $SECONDS_EACH s from $(find "$corpus" -type f | wc -l) inputs, $(date -u +%FT%TZ)"
  start=$(date +%s)
  status=0
  cargo +nightly fuzz run "${BUILD[@]}" "$t" "$corpus" -- "${flags[@]}" "${EXTRA[@]}" > "$log" 2>&1 || status=$?
  took=$(( $(date +%s) - start ))
  # libFuzzer's last status line: "#N DONE cov: C ft: F corp: N/SIZE lim: L exec/s: E rss: R".
  last=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -1 || true)
  line="$t: ${took} s, cov $(field cov) ft $(field ft), corpus $(field corp) (inputs/size in"
  line="$line memory; $(find "$corpus" -type f | wc -l) files), $(final_stat number_of_executed_units) execs,"
  line="$line $(final_stat average_exec_per_sec) exec/s"
  if [ "$status" -ne 0 ]; then
    artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -1)
    line="$line, FAILED (exit $status): ${artifact:-no artifact, see $log}"
    FAILED+=("$t")
    echo "-- $t failed; from its log ($log):"
    grep -E -A2 'panicked at|==ERROR|^SUMMARY:|ERROR: libFuzzer|deadly signal' "$log" | head -20 || true
  fi
  echo "$line"
  SUMMARY+=("$line")
done

echo "== summary ($SECONDS_EACH s each)"
printf '%s\n' "${SUMMARY[@]}"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "crashed: ${FAILED[*]}"
  exit 1
fi
