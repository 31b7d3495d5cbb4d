#!/usr/bin/env bash
# Makes sure a PostgreSQL server can be started for the tests or the demo. The tests take a
# server given by TRIGGER_EVENTS_TEST_DATABASE, a Docker engine, or local server binaries; the
# demo (--binaries) only local server binaries. When none is there, installs PostgreSQL from the
# distribution's packages (Debian/Ubuntu), and says so.
set -euo pipefail

binaries_only=false
if [ "${1:-}" = "--binaries" ]; then
  binaries_only=true
fi

if ! $binaries_only && [ -n "${TRIGGER_EVENTS_TEST_DATABASE:-}" ]; then
  exit 0
fi
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; }; then
  exit 0
fi
if ! $binaries_only && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  exit 0
fi

# Only the binaries are needed; the tests and the demo start throwaway clusters of their own.
"$(dirname "$0")/apt-install.sh" "No PostgreSQL server binaries found" \
  "install PostgreSQL's server binaries, start a Docker engine, or set TRIGGER_EVENTS_TEST_DATABASE" postgresql
