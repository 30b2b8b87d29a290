#!/usr/bin/env bash
# Run CMD with a throwaway PostgreSQL server (scripts/start-postgres.sh) and
# TUNER_TEST_POSTGRES_URL exported; the server is stopped and removed when CMD ends.
#   scripts/with-postgres.sh .venv/bin/pytest tests/store -q
# A TUNER_TEST_POSTGRES_URL already set is used as it is (a server of your own).
# Where no server can be started, CMD runs without one (its PostgreSQL tests are
# skipped), except under CI=true, where that is an error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${TUNER_TEST_POSTGRES_URL:-}" ]; then
  if exports="$("$here/start-postgres.sh")"; then
    eval "$exports"
    trap '"$here/stop-postgres.sh" "$TUNER_TEST_POSTGRES_DIR"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
  elif [ "${CI:-}" = true ]; then
    echo "with-postgres: could not start PostgreSQL, and CI must run the PostgreSQL tests" >&2
    exit 1
  else
    echo "with-postgres: could not start PostgreSQL; its tests will be skipped" >&2
  fi
fi
"$@"
