#!/usr/bin/env bash
# The reliability suites (docs/RELIABILITY.md). CI runs this short version; every knob
# below scales it up to the documented long runs.
#
#   scripts/test-reliability.sh            # CI: ~200 simulation seeds, short crash/load runs
#   scripts/test-reliability.sh --long     # the long runs (hours): 10,000 seeds, 1,000 kills,
#                                          # 200 devices × 60 s on the release server, fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
long=0
[ "${1:-}" = "--long" ] && long=1

if [ $long = 1 ]; then
  export FIELDSYNC_SIM_SEEDS="${FIELDSYNC_SIM_SEEDS:-10000}"
  export FIELDSYNC_CRASH_ITERATIONS="${FIELDSYNC_CRASH_ITERATIONS:-1000}"
  export FIELDSYNC_CRASH_SYNC_ITERATIONS="${FIELDSYNC_CRASH_SYNC_ITERATIONS:-1000}"
fi

echo "== deterministic simulation (${FIELDSYNC_SIM_SEEDS:-200} seeds)"
cargo test -p fieldsync-tests --test simulation -- --nocapture 2>&1 | grep -E '^simulation|FAILED|replay|test result'

echo "== fuzz regressions"
cargo test -p fieldsync-tests --test fuzz_regressions

echo "== authorization matrix, bad input"
cargo test -p fieldsync-server --test authz_matrix --test bad_input -- --nocapture 2>&1 | grep -E 'matrix|bad input|test result|panicked'

echo "== crash tests with real processes"
cargo test -p fieldsync-core --test crash
cargo test -p fieldsync-server --test crash_sync -- --nocapture 2>&1 | grep -E 'crash while|test result|panicked'

if [ $long = 1 ]; then
  echo "== load: 200 devices × 60 s, release server"
  FIELDSYNC_LOAD_DEVICES=200 FIELDSYNC_LOAD_SECONDS=60 \
    cargo test --release -p fieldsync-server --test load -- --nocapture 2>&1 | grep -E '^load|test result|panicked'
  echo "== fuzzing, 1 h per target"
  FUZZ_SECONDS="${FUZZ_SECONDS:-3600}" scripts/fuzz.sh
else
  echo "== load (short)"
  cargo test -p fieldsync-server --test load -- --nocapture 2>&1 | grep -E '^load|test result|panicked'
fi
