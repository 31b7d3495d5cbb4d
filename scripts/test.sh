#!/usr/bin/env bash
# The test command: sets up what the tests need on a fresh Debian/Ubuntu machine with the .NET
# SDK, then runs every test project. Each test process starts its own throwaway PostgreSQL
# unless TRIGGER_EVENTS_TEST_DATABASE names a server. The tests that start the executable as a
# process start the published native one (artifacts/publish/triggerevents), the one that ships.
# The console's browser tests keep their screenshots in artifacts/test-results/console-screenshots
# (TRIGGER_EVENTS_TEST_ARTIFACTS moves artifacts/test-results elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/ensure-postgres.sh
# A headless Chromium for the web console's browser tests.
./scripts/ensure-chromium.sh
# Node packages the tests use: the Standard Webhooks library (receivers) and the offline
# validators of deploy/ (manifests).
if command -v npm >/dev/null 2>&1; then
  for dir in tests/receivers tests/manifests; do
    (cd "$dir" && npm ci --silent --no-audit --no-fund)
  done
fi

dotnet build TriggerEvents.sln -c Release -warnaserror -nologo -clp:NoSummary
./scripts/publish.sh artifacts/publish
export TRIGGER_EVENTS_TEST_EXECUTABLE="$PWD/artifacts/publish/triggerevents"
# What the tests leave to look at after a run: the console's screenshots, in console-screenshots/.
export TRIGGER_EVENTS_TEST_ARTIFACTS="${TRIGGER_EVENTS_TEST_ARTIFACTS:-$PWD/artifacts/test-results}"
echo "Test artifacts: $TRIGGER_EVENTS_TEST_ARTIFACTS (console screenshots in console-screenshots/)"
dotnet test TriggerEvents.sln -c Release --no-build --nologo "$@"
