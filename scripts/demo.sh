#!/usr/bin/env bash
# The demo command: sets up what the demo needs on a fresh Debian/Ubuntu machine with the .NET
# SDK (PostgreSQL's server binaries), then runs
# `triggerevents demo`. Extra arguments go to the demo (for example --no-wait).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/ensure-postgres.sh --binaries
dotnet build src/TriggerEvents.Cli -c Release -nologo -v quiet -clp:NoSummary
exec dotnet src/TriggerEvents.Cli/bin/Release/net10.0/triggerevents.dll demo "$@"
