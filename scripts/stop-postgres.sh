#!/usr/bin/env bash
# Stop a server that scripts/start-postgres.sh started and remove its folder:
#   scripts/stop-postgres.sh "$TUNER_TEST_POSTGRES_DIR"
set -euo pipefail
dir="${1:?usage: stop-postgres.sh DIR (the TUNER_TEST_POSTGRES_DIR that start-postgres.sh printed)}"
if [ ! -e "$dir/.tuner-postgres" ]; then
  echo "stop-postgres: $dir was not made by start-postgres.sh; leaving it alone" >&2
  exit 1
fi
bindir="$(cat "$dir/.bindir")"
if [ -f "$dir/data/postmaster.pid" ]; then
  as_owner=()
  owner="$(stat -c %U "$dir/data")"
  [ "$(id -u)" -ne 0 ] || as_owner=(runuser -u "$owner" --)
  # The data is thrown away: no need for a clean shutdown checkpoint.
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
fi
rm -rf "$dir"
