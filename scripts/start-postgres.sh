#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: Debian's postgresql (installed when
# missing), a new cluster in a temporary folder owned by an unprivileged user (root
# runs it as `postgres`), TCP on 127.0.0.1 only (no Unix socket), a free port, a
# random password, and one empty database `tuner`.
#
#   eval "$(scripts/start-postgres.sh)"   # exports TUNER_TEST_POSTGRES_URL and TUNER_TEST_POSTGRES_DIR
#   .venv/bin/pytest tests/store
#   scripts/stop-postgres.sh "$TUNER_TEST_POSTGRES_DIR"
#
# scripts/with-postgres.sh CMD ... does both around CMD (that is what `make test` runs).
# stdout carries only the export lines; everything else goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

find_bindir() {
  local d
  # Debian keeps each major version's server programs out of PATH.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

if ! bindir="$(find_bindir)"; then
  "$here/install-system-packages.sh" postgresql >&2
  bindir="$(find_bindir)" || { echo "start-postgres: postgresql installed but initdb not found" >&2; exit 1; }
fi

# initdb and the server refuse to run as root.
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$owner"
  as_owner=(runuser -u "$owner" --)
  # The owner must reach the folder: a root-only $TMPDIR would not do.
  dir="$(mktemp -d /tmp/tuner-postgres.XXXXXX)"
  chown "$owner" "$dir"
else
  dir="$(mktemp -d "${TMPDIR:-/tmp}/tuner-postgres.XXXXXX")"
fi
touch "$dir/.tuner-postgres"  # stop-postgres.sh removes only folders carrying this mark
echo "$bindir" >"$dir/.bindir"

started=""
cleanup_on_error() {
  [ -n "$started" ] && "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup_on_error ERR

password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$password" >"$dir/pwfile"
[ ${#as_owner[@]} -eq 0 ] || chown "$owner" "$dir/pwfile"
if ! "${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U tuner --pwfile="$dir/pwfile" --auth=scram-sha-256 \
     -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1; then
  cat "$dir/initdb.log" >&2
  false
fi
rm -f "$dir/pwfile"

# A test server: durability off (the data is thrown away), loopback TCP only.
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
CONF

# A free port now may be taken before the server binds it: try a few.
for attempt in 1 2 3 4 5; do
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  if "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "-p $port" start >/dev/null; then
    started=1
    break
  fi
  if [ "$attempt" -eq 5 ] || ! grep -q "could not bind" "$dir/server.log" 2>/dev/null; then
    tail -n 20 "$dir/server.log" >&2 || true
    false
  fi
done

PGPASSWORD="$password" "$bindir/psql" -h 127.0.0.1 -p "$port" -U tuner -d postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE DATABASE tuner" >&2
echo "start-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir" >&2
echo "export TUNER_TEST_POSTGRES_URL='postgresql+psycopg://tuner:$password@127.0.0.1:$port/tuner'"
echo "export TUNER_TEST_POSTGRES_DIR='$dir'"
