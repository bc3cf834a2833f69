#!/usr/bin/env bash
# Runs every benchmark (release build) and regenerates the generated tables in
# docs/BENCHMARKS.md (between the `<!-- bench:… -->` markers; other sections are left as
# they are). Usage:
#
#   scripts/bench.sh                 # everything: device core, sync server, peer comparison
#   BENCH_SKIP_DEVICE=1 scripts/bench.sh   # skip the device-core benches (about 6 min)
#   BENCH_SKIP_PEER=1 scripts/bench.sh     # skip the Automerge Repo comparison (needs node + npm)
#   FIELDSYNC_BENCH_DATABASE_URL=postgres://… scripts/bench.sh   # also PostgreSQL
#
# When scripts/pg.sh exists and FIELDSYNC_BENCH_PG=1, a throw-away PostgreSQL cluster is
# started for the PostgreSQL run. Sizes: see the top of tests/benches/sync.rs
# (FIELDSYNC_BENCH_RUNS, default "10000:100,1000:100,10000:10,10000:500"; add
# "100000:100" for the long run).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${BENCH_OUT:-target/bench-results}"
mkdir -p "$out"
# Absolute: cargo runs the bench binary in its package directory (tests/).
out="$(cd "$out" && pwd)"
echo "load before: $(cat /proc/loadavg)"

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

# Device core (existing criterion + report bench; its tables are maintained by hand).
if [[ "${BENCH_SKIP_DEVICE:-0}" != 1 ]]; then
  cargo bench -p fieldsync-core --bench device 2>&1 | tee "$out/device.log"
fi

python3 scripts/bench_report.py "$out" docs/BENCHMARKS.md
echo "load after: $(cat /proc/loadavg)"
echo "docs/BENCHMARKS.md updated from $out"
