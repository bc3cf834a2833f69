#!/usr/bin/env bash
# Builds libfieldsync_ffi.so for Android with cargo-ndk (arm64-v8a, armeabi-v7a, x86_64)
# into android-demo/app/src/main/jniLibs/<abi>/, generates the Kotlin bindings that
# android-demo/shared compiles (ffi/bindings/kotlin, from the unstripped host library),
# and, with --apk, assembles the debug APK with Gradle.
#
# --release builds the shipped library: profile `release-ffi` (opt-level "z", fat LTO, one
# codegen unit), cdylib only (cargo skips LTO when the crate's rlib type is built too);
# see docs/BENCHMARKS.md "Library size". Without it: a debug build.
#
# Needs: the Android NDK (ANDROID_NDK_HOME, r26+; its clang also builds the C parts: ring,
# SQLite, zstd; no cmake), and for --apk the Android SDK (ANDROID_HOME) and a Gradle
# wrapper in android-demo (`gradle wrapper --gradle-version 8.11.1` once).
# Usage: scripts/build-android.sh [--release] [--apk]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
apk=0
for arg in "$@"; do
    case "$arg" in
        --release) profile=release-ffi ;;
        --apk) apk=1 ;;
        *) echo "usage: $0 [--release] [--apk]" >&2; exit 2 ;;
    esac
done

: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK (e.g. \$ANDROID_HOME/ndk/27.2.12479018)}"

# Rust targets for the three ABIs, and cargo-ndk.
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
command -v cargo-ndk >/dev/null || cargo install cargo-ndk --locked

# Kotlin bindings from the host library (uniffi reads its metadata; the API is the same
# on every target).
scripts/bindings.sh

# The Android libraries. -P 26 = the app's minSdk. cargo-ndk (3+) copies them into jniLibs
# as built, symbol tables included (release-ffi has no debug info); the Android Gradle
# plugin strips the copies it packages into the APK (the exported uniffi symbols stay in
# the dynamic symbol table) and keeps the symbols for crash reports.
jni=android-demo/app/src/main/jniLibs
if [[ $profile == release-ffi ]]; then
    cargo_cmd=(rustc --profile release-ffi -p fieldsync-ffi --lib --crate-type cdylib)
else
    cargo_cmd=(build -p fieldsync-ffi --lib)
fi
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -P 26 -o "$jni" "${cargo_cmd[@]}"
for abi in arm64-v8a armeabi-v7a x86_64; do
    test -s "$jni/$abi/libfieldsync_ffi.so" || { echo "missing $jni/$abi/libfieldsync_ffi.so" >&2; exit 1; }
done
echo "libfieldsync_ffi.so written to $jni/{arm64-v8a,armeabi-v7a,x86_64}"
# cargo-ndk also copies libc++_shared.so when a crate links the C++ STL; it is packaged as is.

if [[ $apk == 1 ]]; then
    (cd android-demo && ./gradlew --no-daemon :app:assembleDebug)
    echo "APK: android-demo/app/build/outputs/apk/debug/app-debug.apk"
fi
