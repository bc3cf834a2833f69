#!/usr/bin/env bash
# Builds libfieldsync_ffi (debug, unstripped: uniffi reads its metadata from the library)
# and writes the Kotlin, Swift and Python bindings into ffi/bindings/{kotlin,swift,python}.
# The Python folder also gets a copy of the library so `import fieldsync_ffi` works there.
# Usage: scripts/bindings.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
cargo_flags=()
if [[ "${1:-}" == "--release" ]]; then
    profile=release
    cargo_flags=(--release)
fi

# The generator needs uniffi's `cli` feature; it is kept out of the library's own build.
cargo build "${cargo_flags[@]}" -p fieldsync-ffi --lib
cargo build "${cargo_flags[@]}" -p fieldsync-ffi --features cli --bin uniffi-bindgen

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
case "$(uname -s)" in
    Darwin) lib="$target_dir/$profile/libfieldsync_ffi.dylib" ;;
    *) lib="$target_dir/$profile/libfieldsync_ffi.so" ;;
esac
bindgen="$target_dir/$profile/uniffi-bindgen"

out=ffi/bindings
for language in kotlin swift python; do
    rm -rf "${out:?}/$language"
    "$bindgen" generate --library "$lib" --language "$language" --out-dir "$out/$language" --no-format
done
ln -sf "$lib" "$out/python/"
echo "bindings written to $out (library: $lib)"
