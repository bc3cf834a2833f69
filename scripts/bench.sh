#!/usr/bin/env bash
# Runs every benchmark (release build) and regenerates the generated tables in
# docs/BENCHMARKS.md (between the `<!-- bench:sync|device|bindings:… -->` markers; other
# sections are left as they are; a skipped part leaves its block as it was). Usage:
#
#   scripts/bench.sh                 # everything: sync server, peer, device core, bindings
#   BENCH_SKIP_DEVICE=1 scripts/bench.sh   # skip the device-core benches (about 6 min)
#   BENCH_SKIP_PEER=1 scripts/bench.sh     # skip the Automerge Repo comparison (needs node + npm)
#   BENCH_SKIP_BINDINGS=1 scripts/bench.sh # skip the bindings' call cost (scripts/call-cost.sh)
#   FIELDSYNC_BENCH_DATABASE_URL=postgres://… scripts/bench.sh   # also PostgreSQL
#
# When scripts/pg.sh exists and FIELDSYNC_BENCH_PG=1, a throw-away PostgreSQL cluster is
# started for the PostgreSQL run. Sizes: see the top of tests/benches/sync.rs
# (FIELDSYNC_BENCH_RUNS, visits:devices[:push], default
# "10000:100,1000:100,10000:10,10000:500,10000:100:batch8,10000:100:planned,1000:100:action"; add
# "100000:100" for the long run).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${BENCH_OUT:-target/bench-results}"
mkdir -p "$out"
# Absolute: cargo runs the bench binary in its package directory (tests/).
out="$(cd "$out" && pwd)"
echo "load before: $(cat /proc/loadavg)"
# Results of an earlier run must not be reported as this one's (a skipped part keeps its
# block in docs/BENCHMARKS.md as it was).
rm -f "$out/sync.json" "$out/peer.json" "$out/device.log" "$out/bindings.log"
# The commit measured, for the report (results may be rendered again later).
{ git rev-parse --short HEAD | tr -d '\n'; git diff --quiet HEAD || printf ' plus uncommitted changes'; echo; } > "$out/commit"

cargo build --release -p fieldsync-server

pgdir=""
if [[ "${FIELDSYNC_BENCH_PG:-0}" == 1 && -z "${FIELDSYNC_BENCH_DATABASE_URL:-}" && -x scripts/pg.sh ]]; then
  # A fresh throw-away cluster (scripts/pg.sh prints its URL), stopped on exit.
  pgdir="/tmp/fieldsync-bench-pg.$$"
  FIELDSYNC_BENCH_DATABASE_URL="$(scripts/pg.sh start "$pgdir" | tail -n 1)"
  export FIELDSYNC_BENCH_DATABASE_URL
  trap 'scripts/pg.sh stop "$pgdir" || true' EXIT
fi

# Server: ingest, initial sync, incremental sync, storage, growth; exports the documents.
FIELDSYNC_BENCH_EXPORT="$out/export" FIELDSYNC_BENCH_JSON="$out/sync.json" \
  cargo bench -p fieldsync-tests --bench sync 2>&1 | tee "$out/sync.log"

# Peer: Automerge Repo sync server, same documents.
if [[ "${BENCH_SKIP_PEER:-0}" != 1 ]]; then
  (cd tests/peer && { [[ -d node_modules ]] || npm ci --no-audit --no-fund || npm install --no-audit --no-fund; })
  node tests/peer/bench.mjs "$out/export/visits-1000" "$out/export/visits-10000" > "$out/peer.json"
fi

# Device core: criterion + the report bench (the `device` block).
if [[ "${BENCH_SKIP_DEVICE:-0}" != 1 ]]; then
  cargo bench -p fieldsync-core --bench device 2>&1 | tee "$out/device.log"
fi

# Bindings call cost: Rust, Python and Kotlin in turn, stores on tmpfs (the `bindings`
# block; installs kotlinc from npm and JNA from Debian when missing).
if [[ "${BENCH_SKIP_BINDINGS:-0}" != 1 ]]; then
  TMPDIR=/dev/shm scripts/call-cost.sh 500 3 2>&1 | tee "$out/bindings.log"
fi

python3 scripts/bench_report.py "$out" docs/BENCHMARKS.md
echo "load after: $(cat /proc/loadavg)"
echo "docs/BENCHMARKS.md updated from $out"
