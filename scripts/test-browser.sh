#!/usr/bin/env bash
# Browser test of the manager dashboard (issue 9): playwright-core from npm drives Debian's
# headless Chromium (/usr/bin/chromium) against the real fieldsync-server binary, seeded by
# real devices (sync-server/examples/dashboard_device.rs). Installs what is missing:
#   chromium (apt-get), node + npm (apt-get), playwright-core (npm, into tests/browser).
# Never downloads a browser through playwright. Screenshots: test-output/dashboard/.
# Usage: scripts/test-browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*"; }

apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "$@"
}

if [[ ! -x /usr/bin/chromium ]]; then
    step "installing chromium (Debian)"
    apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    step "installing node and npm (Debian)"
    apt_install nodejs npm
fi

step "npm install (tests/browser)"
(
    cd tests/browser
    if [[ -f package-lock.json ]]; then
        npm ci --no-audit --no-fund
    else
        npm install --no-audit --no-fund
    fi
)

step "building fieldsync-server and the scripted device"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# The target dir may be shared with builds of other checkouts, which can replace
# target/debug/fieldsync-server at any moment: test a private copy of this checkout's build
# (cargo re-links its own binary on a fresh build; the copy must contain the dashboard).
bin_dir=$(mktemp -d)
trap 'rm -rf "$bin_dir"' EXIT
for attempt in 1 2 3 4 5; do
    cargo build -p fieldsync-server --bin fieldsync-server --example dashboard_device
    cp "$target_dir/debug/fieldsync-server" "$target_dir/debug/examples/dashboard_device" "$bin_dir/"
    if grep -aq '/v1/dashboard/visits' "$bin_dir/fieldsync-server"; then
        break
    fi
    echo "target/debug/fieldsync-server was replaced by another build; rebuilding (attempt $attempt)" >&2
    touch sync-server/src/dashboard/mod.rs
    if [[ $attempt == 5 ]]; then
        echo "could not get a fieldsync-server binary of this checkout" >&2
        exit 1
    fi
done
export FIELDSYNC_SERVER_BIN="$bin_dir/fieldsync-server"
export FIELDSYNC_DEVICE_BIN="$bin_dir/dashboard_device"

step "browser test"
mkdir -p "$root/test-output/dashboard"
cd tests/browser
node --test --test-concurrency=1 --test-timeout=240000 dashboard.test.mjs
echo "screenshots: $root/test-output/dashboard/"
