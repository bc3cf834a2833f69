//! The uniffi bindings generator, built from the same uniffi version as the library.
//! `scripts/bindings.sh` runs it from `target/`.

fn main() {
    uniffi::uniffi_bindgen_main();
}
