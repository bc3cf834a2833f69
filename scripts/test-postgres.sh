#!/usr/bin/env bash
# Runs the PostgreSQL test suites of fieldsync-server against a throw-away cluster:
# installs Debian's postgresql when missing, starts a cluster on 127.0.0.1 (initdb +
# pg_ctl as a non-root user, data under /tmp), exports FIELDSYNC_TEST_DATABASE_URL, runs
# the conformance suite (SQLite and PostgreSQL) and the multi-instance test, and stops
# the cluster even on failure.
#
#   scripts/test-postgres.sh                      the PostgreSQL suites
#   scripts/test-postgres.sh cargo test --workspace  any command, with the cluster up and
#                                                  FIELDSYNC_TEST_DATABASE_URL set (how
#                                                  scripts/test.sh should run all tests)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  echo "==> installing postgresql"
  if [[ $(id -u) -ne 0 ]]; then
    echo "postgresql is missing; run as root or: sudo apt-get install postgresql" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
fi

dir=$(mktemp -d /tmp/fieldsync-pg.XXXXXX)
cleanup() { scripts/pg.sh stop "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT
FIELDSYNC_TEST_DATABASE_URL=$(scripts/pg.sh start "$dir")
export FIELDSYNC_TEST_DATABASE_URL
echo "==> PostgreSQL at $FIELDSYNC_TEST_DATABASE_URL"

if [[ $# -gt 0 ]]; then
  "$@"
else
  cargo test -p fieldsync-server --test conformance --test pg_cluster
fi
