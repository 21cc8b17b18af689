#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for SECONDS_PER_TARGET (default 20) over a
# temporary copy of its committed corpus (fuzz/corpus/<target>, not changed), with its
# dictionary (fuzz/dicts/<target>.dict). Prints per target the executions, exec/s and
# coverage libFuzzer reports; exits non-zero, naming the crashing input, if one crashes.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Needs the nightly toolchain (`cargo +nightly`; without it the stable one is used with
# RUSTC_BOOTSTRAP=1) and cargo-fuzz, installed from crates.io when missing. Built without
# a sanitizer (warden has no unsafe code; the build and the runs are much faster) but
# with debug assertions and overflow checks. WARDEN_FUZZ_TARGET_DIR puts the build
# elsewhere than fuzz/target (CI keeps it between runs: a build from scratch takes ~10 min
# on 2 cores, a rebuild after a change to warden ~2).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-20}"
targets=(request_reader sse audit_record config)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
if cargo +nightly --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
flags=(--sanitizer none --debug-assertions --target-dir "${WARDEN_FUZZ_TARGET_DIR:-$PWD/fuzz/target}")

"${fuzz[@]}" build "${flags[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" fuzz/artifacts/"$t"
  cp -r fuzz/corpus/"$t"/. "$work/$t"/
  log="$work/$t.log"
  status=0
  "${fuzz[@]}" run "${flags[@]}" "$t" "$work/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
    -dict=fuzz/dicts/"$t".dict -artifact_prefix=fuzz/artifacts/"$t"/ >"$log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)"
  if [ "$status" -ne 0 ]; then
    failed=1
    artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)"
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED (exit $status) after ${execs:-?} executions; input: ${artifact:-none written}" >&2
  else
    echo "fuzz: $t: ${execs:-?} executions in ${secs}s, ${rate:-?} exec/s, ${cov:-no coverage line}"
  fi
done
exit "$failed"
