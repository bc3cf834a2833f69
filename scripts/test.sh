#!/usr/bin/env bash
# Runs every fieldsync test suite on a fresh machine, installing what is missing.
# Usage: scripts/test.sh            (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
cargo --version

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "rust tests (SQLite and PostgreSQL backends; a throw-away PostgreSQL cluster is started)"
scripts/test-postgres.sh cargo test --workspace

step "bindings (Python, Kotlin, Swift up to date)"
scripts/test-bindings.sh

step "Android demo: the app's non-UI layer on the JVM against the real library and server"
scripts/test-android-demo.sh

step "dashboard in a real browser (headless Chromium driven by playwright-core)"
scripts/test-browser.sh

echo
echo "all suites passed"
