#!/usr/bin/env bash
# Builds the fieldsync library for iOS and packages it for the demo's Swift package:
#   static libraries for device (aarch64-apple-ios) and simulator (aarch64-apple-ios-sim +
#   x86_64-apple-ios, merged with lipo) → `xcodebuild -create-xcframework` →
#   ios-demo/FieldsyncFFI/fieldsync_ffiFFI.xcframework, and the Swift bindings
#   (ffi/bindings/swift, committed) → ios-demo/FieldsyncFFI/Sources/FieldsyncFFI/.
# The libraries are built with profile `release-ffi` (opt-level "z", fat LTO, one codegen
# unit) as staticlib only: cargo skips LTO when the crate's rlib type is built too (see
# docs/BENCHMARKS.md "Library size"); --debug builds a debug library instead.
# Needs macOS with Xcode (xcodebuild, lipo; no cmake). With --app it also generates the
# Xcode project (xcodegen) and builds the app for the simulator.
# Usage: scripts/build-ios.sh [--debug] [--app]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release-ffi
app=0
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        --app) app=1 ;;
        *) echo "usage: $0 [--debug] [--app]" >&2; exit 2 ;;
    esac
done
[[ "$(uname -s)" == Darwin ]] || { echo "build-ios.sh needs macOS with Xcode" >&2; exit 1; }
command -v xcodebuild >/dev/null || { echo "xcodebuild not found: install Xcode" >&2; exit 1; }

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
rustup target add "${targets[@]}"

export IPHONEOS_DEPLOYMENT_TARGET=16.0
for t in "${targets[@]}"; do
    if [[ $profile == release-ffi ]]; then
        cargo rustc --profile release-ffi -p fieldsync-ffi --lib --crate-type staticlib --target "$t"
    else
        cargo build -p fieldsync-ffi --lib --target "$t"
    fi
done

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
lib=libfieldsync_ffi.a
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One simulator library for both simulator architectures.
mkdir -p "$work/sim"
lipo -create \
    "$target_dir/aarch64-apple-ios-sim/$profile/$lib" \
    "$target_dir/x86_64-apple-ios/$profile/$lib" \
    -output "$work/sim/$lib"

# Headers + a module map named module.modulemap, so Swift can `import fieldsync_ffiFFI`.
mkdir -p "$work/headers"
cp ffi/bindings/swift/fieldsync_ffiFFI.h "$work/headers/"
cp ffi/bindings/swift/fieldsync_ffiFFI.modulemap "$work/headers/module.modulemap"

pkg=ios-demo/FieldsyncFFI
rm -rf "$pkg/fieldsync_ffiFFI.xcframework"
xcodebuild -create-xcframework \
    -library "$target_dir/aarch64-apple-ios/$profile/$lib" -headers "$work/headers" \
    -library "$work/sim/$lib" -headers "$work/headers" \
    -output "$pkg/fieldsync_ffiFFI.xcframework"

mkdir -p "$pkg/Sources/FieldsyncFFI"
cp ffi/bindings/swift/fieldsync_ffi.swift "$pkg/Sources/FieldsyncFFI/"
echo "Swift package ready: $pkg (xcframework + bindings)"

if [[ $app == 1 ]]; then
    command -v xcodegen >/dev/null || { echo "xcodegen not found: brew install xcodegen" >&2; exit 1; }
    (cd ios-demo && xcodegen generate)
    xcodebuild -project ios-demo/FieldsyncDemo.xcodeproj -scheme FieldsyncDemo \
        -destination 'generic/platform=iOS Simulator' -derivedDataPath ios-demo/build build
fi
