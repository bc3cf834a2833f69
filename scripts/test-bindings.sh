#!/usr/bin/env bash
# Builds the bindings and runs their suites against the real library (and a real
# fieldsync-server for the sync tests), installing what is missing:
#   Python: pytest (pip);  Kotlin: kotlinc from the npm package `kotlin-compiler`
#   (into ffi/tests-kotlin/node_modules), JNA and JUnit 4 from Debian.
# Also fails when the committed Swift bindings are out of date with the Rust API.
# Usage: scripts/test-bindings.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*"; }

step "bindings"
swift_before=$(mktemp -d)
trap 'rm -rf "$swift_before"' EXIT
cp -r ffi/bindings/swift/. "$swift_before/" 2>/dev/null || true
scripts/bindings.sh

step "swift bindings up to date"
if ! diff -r "$swift_before" ffi/bindings/swift; then
    echo "ffi/bindings/swift is out of date with the Rust API: run scripts/bindings.sh and commit it" >&2
    exit 1
fi

step "sync server for the sync tests"
cargo build -p fieldsync-server --bin fieldsync-server
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export FIELDSYNC_SERVER_BIN="$target_dir/debug/fieldsync-server"

step "python"
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install --quiet pytest
python3 -m pytest -q ffi/tests-python

step "kotlin"
kotlin_dir=ffi/tests-kotlin
kotlinc="$kotlin_dir/node_modules/kotlin-compiler/bin/kotlinc"
if [[ ! -x "$kotlinc" ]]; then
    (cd "$kotlin_dir" && npm install --no-save --no-audit --no-fund kotlin-compiler)
fi
if [[ ! -f /usr/share/java/jna.jar || ! -f /usr/share/java/junit4.jar ]]; then
    apt-get install -y libjna-java junit4 || { apt-get update && apt-get install -y libjna-java junit4; }
fi
klib="$kotlin_dir/node_modules/kotlin-compiler/lib"
cp="/usr/share/java/jna.jar:/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar:$klib/kotlinx-coroutines-core-jvm.jar"
mkdir -p "$kotlin_dir/build"
"$kotlinc" -nowarn ffi/bindings/kotlin/fieldsync/ffi/fieldsync_ffi.kt "$kotlin_dir"/src/*.kt \
    -cp "$cp" -d "$kotlin_dir/build/tests.jar"
java -Djna.library.path="$target_dir/debug" \
    -cp "$kotlin_dir/build/tests.jar:$cp:$klib/kotlin-stdlib.jar" \
    org.junit.runner.JUnitCore fieldsync.ffi.FieldStoreTest fieldsync.ffi.SyncTest

echo
echo "binding suites passed"
