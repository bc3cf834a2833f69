#!/usr/bin/env bash
# Builds the bindings library for this machine the way it ships (profile `release-ffi`:
# opt-level "z", fat LTO, one codegen unit, cdylib only), strips a copy and prints its
# size; fails when the stripped library is larger than the budget of 6,000,000 bytes
# (docs/BENCHMARKS.md "Library size").
#
# `cargo rustc --crate-type cdylib` rather than `cargo build`: the crate also declares the
# `lib` (rlib) type (for its example and doc tests), and cargo skips LTO for a build
# that includes an rlib, which leaves the library ~1.7 MB larger.
# Usage: scripts/lib-size.sh
set -euo pipefail
cd "$(dirname "$0")/.."

budget=6000000
cargo rustc --profile release-ffi -p fieldsync-ffi --lib --crate-type cdylib

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
case "$(uname -s)" in
    Darwin) lib="$target_dir/release-ffi/libfieldsync_ffi.dylib"; strip_args=(-x) ;;
    *) lib="$target_dir/release-ffi/libfieldsync_ffi.so"; strip_args=() ;;
esac
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
cp "$lib" "$stripped"
strip "${strip_args[@]}" "$stripped"
size=$(wc -c <"$stripped" | tr -d ' ')
python3 -c "import sys; s=int(sys.argv[1]); print(f'stripped {sys.argv[2]}: {s:,} bytes ({s/2**20:.2f} MiB); budget {int(sys.argv[3]):,} bytes')" \
    "$size" "$(basename "$lib")" "$budget"
if (( size > budget )); then
    echo "the library is over its size budget" >&2
    exit 1
fi
