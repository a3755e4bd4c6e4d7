#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the test suite, installing it from Debian's packages if missing.
# Idempotent: a server already answering on the port is reused. On success prints the database URL for
# OPD_TEST_POSTGRES_URL on stdout (progress goes to stderr).
#   OPD_PG_PORT (55432)  OPD_PG_DIR (/tmp/opd-postgres)
set -euo pipefail
port="${OPD_PG_PORT:-55432}"
dir="${OPD_PG_DIR:-/tmp/opd-postgres}"

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-postgres: PostgreSQL is not installed and this is not root; install it (apt-get install postgresql) to run the PostgreSQL tests" >&2
    exit 1
  fi
  echo "ensure-postgres: installing PostgreSQL from Debian's packages" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

as_owner() {  # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  if [ ! -s "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    as_owner "$bindir/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
  fi
  as_owner "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off" start >/dev/null
fi
if ! "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'opd_test'" | grep -q 1; then
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres opd_test
fi
echo "ensure-postgres: PostgreSQL ready on 127.0.0.1:$port (database opd_test)" >&2
echo "postgresql+psycopg://postgres@127.0.0.1:$port/opd_test"
