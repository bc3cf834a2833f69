#!/usr/bin/env bash
# The bindings' cost per call over Rust: the same workload (one durable inventory line
# into a checked-in visit, then `now()`) in Rust, Python and Kotlin, against the release
# library, each harness run ROUNDS times in turn so disk and load drift hit all three.
#   scripts/call-cost.sh [calls] [rounds]      (default 500 calls, 3 rounds)
#   TMPDIR=/dev/shm scripts/call-cost.sh       stores on tmpfs: fsync costs nothing, so
#                                              what is left is CPU
# Needs what scripts/test-bindings.sh installs (kotlinc from npm, JNA from Debian).
# Prints one line per harness and round; docs/BENCHMARKS.md "Bindings call cost".
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-500}
rounds=${2:-3}

scripts/bindings.sh --release >/dev/null
cargo build --release -p fieldsync-ffi --example call_cost
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

kotlin_dir=ffi/tests-kotlin
kotlinc="$kotlin_dir/node_modules/kotlin-compiler/bin/kotlinc"
if [[ ! -x "$kotlinc" ]]; then
    (cd "$kotlin_dir" && npm install --no-save --no-audit --no-fund kotlin-compiler)
fi
if [[ ! -f /usr/share/java/jna.jar ]]; then
    apt-get install -y libjna-java || { apt-get update && apt-get install -y libjna-java; }
fi
klib="$kotlin_dir/node_modules/kotlin-compiler/lib"
cp="/usr/share/java/jna.jar:$klib/kotlinx-coroutines-core-jvm.jar"
mkdir -p "$kotlin_dir/build"
"$kotlinc" -nowarn ffi/bindings/kotlin/fieldsync/ffi/fieldsync_ffi.kt "$kotlin_dir"/bench/*.kt \
    -cp "$cp" -d "$kotlin_dir/build/call-cost.jar"

echo "calls=$calls rounds=$rounds tmp=${TMPDIR:-/tmp} commit=$(git rev-parse --short HEAD) load=$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
    echo "-- round $round"
    "$target_dir/release/examples/call_cost" "$calls"
    python3 ffi/tests-python/call_cost.py "$calls"
    java -Djna.library.path="$target_dir/release" -Djava.io.tmpdir="${TMPDIR:-/tmp}" \
        -cp "$kotlin_dir/build/call-cost.jar:$cp:$klib/kotlin-stdlib.jar" \
        fieldsync.ffi.CallCostKt "$calls"
done
