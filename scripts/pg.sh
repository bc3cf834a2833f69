#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests and benchmarks.
#
#   scripts/pg.sh start DIR   initdb + pg_ctl start in DIR (created), listening on
#                             127.0.0.1 on a free port; prints the URL (also in DIR/url)
#   scripts/pg.sh stop DIR    stops it (fast shutdown); DIR is left for the caller
#
# PostgreSQL refuses to run as root: as root, the cluster runs as the `postgres` user
# (or `nobody` when there is none). Needs Debian's `postgresql` package (or any
# initdb/pg_ctl on PATH); scripts/test-postgres.sh installs it.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return; fi
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
  die "initdb not found: install Debian's postgresql package (scripts/test-postgres.sh does)"
}

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    local user=postgres
    id -u postgres >/dev/null 2>&1 || user=nobody
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    echo $(( 20000 + RANDOM % 30000 ))
  fi
}

cmd=${1:-}; dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || die "usage: $0 start|stop DIR"
bin=$(bindir)

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    chmod 755 "$dir"
    mkdir -p "$dir/data" "$dir/sock"
    if [[ $(id -u) -eq 0 ]]; then
      user=postgres; id -u postgres >/dev/null 2>&1 || user=nobody
      chown "$user" "$dir/data" "$dir/sock"
      touch "$dir/log"; chown "$user" "$dir/log"
    fi
    chmod 700 "$dir/data"
    as_owner "$bin/initdb" -D "$dir/data" -U fieldsync --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start \
          -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir/sock -c max_connections=300 -c shared_buffers=128MB" \
          >/dev/null; then
        url="postgres://fieldsync@127.0.0.1:$port/postgres"
        echo "$url" > "$dir/url"
        echo "$url"
        exit 0
      fi
      echo "pg.sh: start on port $port failed (attempt $attempt)" >&2
      tail -n 5 "$dir/log" >&2 || true
    done
    die "could not start PostgreSQL"
    ;;
  stop)
    [[ -d "$dir/data" ]] || exit 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
      || as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
  *) die "usage: $0 start|stop DIR" ;;
esac
