#!/usr/bin/env bash
# Builds libfieldsync_ffi.so for Android with cargo-ndk (arm64-v8a, armeabi-v7a, x86_64)
# into android-demo/app/src/main/jniLibs/<abi>/, generates the Kotlin bindings that
# android-demo/shared compiles (ffi/bindings/kotlin, from the unstripped host library),
# and, with --apk, assembles the debug APK with Gradle.
#
# Needs: the Android NDK (ANDROID_NDK_HOME, r26+), cmake + ninja (aws-lc-sys, the TLS
# crypto backend, builds with cmake), and for --apk the Android SDK (ANDROID_HOME) and a
# Gradle wrapper in android-demo (`gradle wrapper --gradle-version 8.11.1` once).
# Usage: scripts/build-android.sh [--release] [--apk]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
apk=0
for arg in "$@"; do
    case "$arg" in
        --release) profile=release ;;
        --apk) apk=1 ;;
        *) echo "usage: $0 [--release] [--apk]" >&2; exit 2 ;;
    esac
done

: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK (e.g. \$ANDROID_HOME/ndk/27.2.12479018)}"
command -v cmake >/dev/null || { echo "cmake is required (aws-lc-sys)" >&2; exit 1; }

# Rust targets for the three ABIs, and cargo-ndk.
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
command -v cargo-ndk >/dev/null || cargo install cargo-ndk --locked

# Kotlin bindings from the host library (uniffi reads its metadata; the API is the same
# on every target).
scripts/bindings.sh

# The Android libraries. -P 26 = the app's minSdk; cargo-ndk strips the copies it puts in
# jniLibs (the exported uniffi symbols stay in the dynamic symbol table).
jni=android-demo/app/src/main/jniLibs
cargo_flags=()
[[ $profile == release ]] && cargo_flags=(--release)
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -P 26 -o "$jni" \
    build "${cargo_flags[@]}" -p fieldsync-ffi --lib
for abi in arm64-v8a armeabi-v7a x86_64; do
    test -s "$jni/$abi/libfieldsync_ffi.so" || { echo "missing $jni/$abi/libfieldsync_ffi.so" >&2; exit 1; }
done
echo "libfieldsync_ffi.so written to $jni/{arm64-v8a,armeabi-v7a,x86_64}"
# cargo-ndk also copies libc++_shared.so when a crate links the C++ STL; it is packaged as is.

if [[ $apk == 1 ]]; then
    (cd android-demo && ./gradlew --no-daemon :app:assembleDebug)
    echo "APK: android-demo/app/build/outputs/apk/debug/app-debug.apk"
fi
