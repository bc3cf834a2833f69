#!/usr/bin/env bash
# Compiles the Android demo's non-UI layer (android-demo/shared: repository + view models,
# pure Kotlin, no Android imports) with the generated Kotlin bindings, and runs its JUnit 4
# tests on the JVM against the real library and a real fieldsync-server on 127.0.0.1.
# Same toolchain as scripts/test-bindings.sh: kotlinc from the npm package
# `kotlin-compiler`, JNA + JUnit 4 from Debian, kotlinx-coroutines from kotlinc's lib.
# Usage: scripts/test-android-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "no Android imports in the shared layer"
shared=android-demo/shared/src
if grep -rnE '^\s*import\s+(android|androidx|com\.google\.android)\.' "$shared"; then
    echo "android-demo/shared must stay pure Kotlin (it is compiled and tested on the JVM)" >&2
    exit 1
fi

step "bindings and library"
scripts/bindings.sh

step "sync server"
cargo build -p fieldsync-server --bin fieldsync-server
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export FIELDSYNC_SERVER_BIN="$target_dir/debug/fieldsync-server"

step "kotlin toolchain"
kotlin_dir=ffi/tests-kotlin   # shared with scripts/test-bindings.sh
kotlinc="$kotlin_dir/node_modules/kotlin-compiler/bin/kotlinc"
if [[ ! -x "$kotlinc" ]]; then
    (cd "$kotlin_dir" && npm install --no-save --no-audit --no-fund kotlin-compiler)
fi
if [[ ! -f /usr/share/java/jna.jar || ! -f /usr/share/java/junit4.jar ]]; then
    apt-get install -y libjna-java junit4 || { apt-get update && apt-get install -y libjna-java junit4; }
fi
klib="$kotlin_dir/node_modules/kotlin-compiler/lib"
cp="/usr/share/java/jna.jar:/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar:$klib/kotlinx-coroutines-core-jvm.jar"

step "compile android-demo/shared (main + test) with the bindings"
out=android-demo/shared/build/jvm
mkdir -p "$out"
"$kotlinc" -nowarn -jvm-target 17 \
    ffi/bindings/kotlin/fieldsync/ffi/fieldsync_ffi.kt \
    $(find "$shared/main" "$shared/test" -name '*.kt' | sort) \
    -cp "$cp" -d "$out/shared-tests.jar"

step "a rep's day on the JVM"
java -Djna.library.path="$target_dir/debug" \
    -cp "$out/shared-tests.jar:$cp:$klib/kotlin-stdlib.jar" \
    org.junit.runner.JUnitCore fieldsync.demo.core.RepDayTest

echo
echo "android-demo shared layer passed"
